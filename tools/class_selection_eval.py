#!/usr/bin/env python
"""Per-image class selection (``select_classes``) on synthetic world v2 with the tiny CLIP v2 fixture.

    python tools/class_selection_eval.py --scenes 48 --out /tmp/select_eval
    python tools/class_selection_eval.py --select "dict(type='presence', peak_threshold=None)"

For each head the held-out scenes are encoded once (``encode_images``); the same contexts are
then decoded four ways, so the rows differ only in which classes each image keeps:

* ``none``: no selection (the default);
* ``presence``: the ``--select`` spec (default ``dict(type='presence')``, the shipped defaults);
* ``global``: ``presence`` with the global test alone (``global_threshold=0.1``, no local test);
* ``area_rule``: no selection but SCLIP's area rule (``decode.area_threshold=0.05``), which is
  what the local area test alone amounts to without a background class;
* ``oracle``: keep exactly the classes present in the scene's ground truth (an upper bound:
  what a perfect selector would give);
* ``random``: keep a random subset of the same size as the oracle's (a broken selector; it
  must score far below ``none``, or the instrument cannot tell selectors apart).

Per row: mIoU and pixel accuracy (``SemanticEvaluator``), the mean number of kept classes, the
recall of the ground-truth classes among the kept ones, and the precision of the kept ones.
The setup is ``tools/synthetic_eval.py --world v2``'s (160 x 224 scenes, sliding 64 px windows
with stride 32, template "a photo of a {}.", logit scale 40, 20 classes, no background).
All figures are SYNTHETIC.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HEADS = ("maskclip", "sclip", "clearclip", "naclip")
VARIANTS = ("none", "presence", "global", "area_rule", "oracle", "random")


def _synthetic_eval():
    spec = importlib.util.spec_from_file_location("synthetic_eval", os.path.join(ROOT, "tools", "synthetic_eval.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _PerImage:
    """A selector that returns a precomputed keep vector per context (oracle / random controls)."""

    def __init__(self, keeps: Dict[int, Any]) -> None:
        self.keeps = keeps

    def __call__(self, context, logits, encoded, backbone):
        return self.keeps[id(context)]


def evaluate(heads: Sequence[str] = HEADS, n: int = 48, start: int = 0, select: Optional[dict] = None,
             seed: int = 0) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{head: {variant: metrics}}`` on world v2 eval scenes ``start .. start + n``."""
    import torch

    from ovdense.decode import Decoder
    from ovdense.evaluation import SemanticEvaluator
    from ovdense.registry import CLASS_SELECTORS, build

    se = _synthetic_eval()
    world = se.make_world("v2")
    config, weights = se.fixture_v2()
    scenes = [world.sample(i) for i in world.indices("eval", n, start)]
    num_classes = world.num_classes
    present = [np.bincount(s.label_map.ravel(), minlength=num_classes)[:num_classes] > 0 for s in scenes]
    rng = np.random.default_rng(seed)
    random_sets = [rng.choice(num_classes, int(p.sum()), replace=False) for p in present]
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for head in heads:
        t0 = time.time()
        seg = se.build(head, config, weights, world="v2")
        contexts = seg.encode_images([s.image for s in scenes])
        oracle = {id(c): torch.tensor(p, dtype=torch.float32) for c, p in zip(contexts, present)}
        random = {}
        for c, chosen in zip(contexts, random_sets):
            keep = torch.zeros(num_classes)
            keep[torch.as_tensor(chosen, dtype=torch.long)] = 1
            random[id(c)] = keep
        selectors = {"none": None, "presence": build(CLASS_SELECTORS, select or dict(type="presence")),
                     "global": build(CLASS_SELECTORS, dict(type="presence", global_threshold=0.1, area_threshold=0.0,
                                                          peak_threshold=None)),
                     "area_rule": None, "oracle": _PerImage(oracle), "random": _PerImage(random)}
        results[head] = {}
        decoder = seg.decoder
        for variant, selector in selectors.items():
            seg.decoder = Decoder(decoder.logit_scale, decoder.background_threshold, 0.05, decoder.renormalize) \
                if variant == "area_rule" else decoder
            kept: List[np.ndarray] = []
            if selector is not None:
                def recording(context, logits, encoded, backbone, _selector=selector):
                    keep = _selector(context, logits, encoded, backbone)
                    kept.append(keep.cpu().numpy() > 0)
                    return keep
                seg.class_selector = recording
            else:
                seg.class_selector = None
            t1 = time.time()
            evaluator = SemanticEvaluator(num_classes)
            for result, scene in zip(seg.predict(contexts), scenes):
                evaluator.update(result.label_map, scene.label_map)
            m = evaluator.compute()
            kept = kept or [np.ones(num_classes, bool) for _ in scenes]
            results[head][variant] = {
                "mIoU": m.mIoU / 100, "pixel_acc": m.aAcc / 100,
                "kept": float(np.mean([k.sum() for k in kept])),
                "recall": float(np.mean([(k & p).sum() / p.sum() for k, p in zip(kept, present)])),
                "precision": float(np.mean([(k & p).sum() / max(1, k.sum()) for k, p in zip(kept, present)])),
                "seconds": time.time() - t1}
        results[head]["_seconds"] = {"total": time.time() - t0}
        seg.class_selector, seg.decoder = None, decoder
    return results


def markdown(results: Dict[str, Dict[str, Dict[str, float]]], n: int, start: int, select: dict) -> str:
    lines = [f"Synthetic world v2, {n} held-out 160x224 scenes (eval range offset {start}), tiny CLIP v2 fixture, "
             f"sliding 64 px windows (stride 32), 20 classes, no background; presence = `{select}`. SYNTHETIC.", "",
             "| head | none mIoU | presence mIoU (Δ) | global only (Δ) | area rule (Δ) | oracle mIoU (Δ) | "
             "random mIoU (Δ) | presence: kept / recall / precision | global only: kept / recall | oracle kept |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    others = ("presence", "global", "area_rule", "oracle", "random")
    for head, r in results.items():
        base = r["none"]["mIoU"]
        cells = [f"{r[v]['mIoU']:.3f} ({r[v]['mIoU'] - base:+.3f})" for v in others]
        p, g = r["presence"], r["global"]
        lines.append(f"| {head} | {base:.3f} | " + " | ".join(cells)
                     + f" | {p['kept']:.1f} / {p['recall']:.2f} / {p['precision']:.2f} | {g['kept']:.1f} / "
                     f"{g['recall']:.2f} | {r['oracle']['kept']:.1f} |")
    mean = {v: float(np.mean([r[v]["mIoU"] for r in results.values()])) for v in VARIANTS}
    lines.append(f"| mean | {mean['none']:.3f} | " + " | ".join(
        f"{mean[v]:.3f} ({mean[v] - mean['none']:+.3f})" for v in others) + " | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=48)
    p.add_argument("--start", type=int, default=0, help="offset into world v2's eval range")
    p.add_argument("--heads", nargs="+", default=list(HEADS))
    p.add_argument("--select", default="dict(type='presence')",
                   help="the presence row's select_classes spec, a Python dict literal or dict(...) call")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for class_selection.md / .json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    text = args.select.strip()
    select = eval(text, {"__builtins__": {}}, {"dict": dict, "None": None}) if text.startswith("dict(") \
        else ast.literal_eval(text)
    results = evaluate(args.heads, args.scenes, args.start, select)
    md = markdown(results, args.scenes, args.start, select)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "class_selection.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "class_selection.json"), "w") as f:
            json.dump({"scenes": args.scenes, "start": args.start, "select": select, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
