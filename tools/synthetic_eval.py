#!/usr/bin/env python
"""Per-head mIoU and COCO AP of ovdense on held-out synthetic scenes with a tiny CLIP fixture.

    python tools/synthetic_eval.py --world v2 --scenes 100 --out /tmp/synth_eval_v2
    python tools/synthetic_eval.py --scenes 100            # world v1 (64 x 64 scenes)

Prints a Markdown table (mIoU, pixel accuracy, stuff and thing mIoU, novel-composition mIoU for v2,
COCO segm/bbox AP of connected-component instances, per-class IoU) and, with ``--out``,
writes ``synthetic_eval.md`` and ``synthetic_eval.json`` there.  All figures are SYNTHETIC.

* ``--world v1``: ``SyntheticWorld(64, seed=0).sample(i)`` for ``i >= 1_000_000``, the v1
  tiny CLIP (``tests/fixtures/synth_clip``), one 64 px window per scene.
* ``--world v2``: ``WorldV2(seed=0)`` eval-range scenes (160 x 224; never used in training),
  the v2 tiny CLIP (``tests/fixtures/synth_clip_v2``), sliding 64 px windows with stride 32.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_clip")
CONFIG_PATH = os.path.join(FIXTURE_DIR, "synth-vit-tiny.json")
WEIGHTS_PATH = os.path.join(FIXTURE_DIR, "synth_clip.pt")
HELDOUT_START = 1_000_000
TEMPLATE = "a photo of a {}."
LOGIT_SCALE = 40.0

# world v2: the v2 tiny CLIP fixture and sliding 64 px windows over 160 x 224 scenes
FIXTURE_DIR_V2 = os.path.join(ROOT, "tests", "fixtures", "synth_clip_v2")
WINDOW_V2 = dict(crop=64, stride=32)


def fixture_v2():
    """(config json, weights) of the v2 tiny CLIP fixture."""
    return os.path.join(FIXTURE_DIR_V2, "synth-vit-tiny-v2.json"), os.path.join(FIXTURE_DIR_V2, "synth_clip.pt")


# the tiny DINO fixture (tests/fixtures/synth_dino): what a stage that requires a provider reads
FIXTURE_DIR_DINO = os.path.join(ROOT, "tests", "fixtures", "synth_dino")


def synthetic_dino() -> dict:
    """``features=`` spec of the tiny DINO fixture as a ``timm_vit`` provider (patch 8)."""
    with open(os.path.join(FIXTURE_DIR_DINO, "model.json")) as fh:
        meta = json.load(fh)
    return dict(type="timm_vit", model_name=meta["model_name"], model_kwargs=meta["model_kwargs"],
                weights=os.path.join(FIXTURE_DIR_DINO, meta["weights"]))


def synthetic_providers(*stages) -> dict:
    """A provider for every name the stages (heads, refiners, decoder rules, proposal sources;
    built objects or registry specs) ``require``: the tiny SAM fixture for ``sam``, its automatic
    masks for ``regions`` (CorrCLIP), the tiny DINO fixture for any other name (as ``stitched_vit``
    for ``stitched_dino``, OV-Stitcher's)."""
    from ovdense.registry import DECODE_RULES, HEADS, PROPOSALS, REFINERS, SCORERS, build

    wanted = set()
    for stage in stages:
        if isinstance(stage, (str, dict)):  # built, since a stage may set `requires` per instance
            name = stage if isinstance(stage, str) else stage["type"]
            for registry in (HEADS, REFINERS, DECODE_RULES, PROPOSALS, SCORERS):
                registry.import_from_location()
                if name in registry.module_dict:
                    stage = build(registry, stage)
                    break
        wanted.update((*getattr(stage, "requires", ()), *getattr(stage, "context_requires", ())))
    out = {}
    for name in sorted(wanted):
        if name == "sam":  # SAM stages read the tiny SAM fixture
            out[name] = synthetic_sam()
        elif name == "regions":  # CorrCLIP's regions: the tiny SAM's automatic masks
            out["sam"] = synthetic_sam()
            out[name] = dict(type="regions", proposals=dict(type="sam_automatic", provider="sam", points_per_side=16,
                                                          pred_iou_thresh=0.0, stability_score_thresh=0.0))
        elif name == "stitched_dino":  # OV-Stitcher's DINO: the same tiny DINO, its last block over the image
            out[name] = dict(synthetic_dino(), type="stitched_vit")
        else:
            out[name] = synthetic_dino()
    return out


def synthetic_sam() -> dict:
    """``features=`` spec of the tiny SAM fixture (tests/fixtures/synth_sam)."""
    folder = os.path.join(ROOT, "tests", "fixtures", "synth_sam")
    return dict(type="sam", model_config=os.path.join(folder, "model.json"),
                checkpoint=os.path.join(folder, "synth_sam.pt"))


def make_world(world: str):
    from ovdense.synthetic import SyntheticWorld, WorldV2

    if world == "v1":
        return SyntheticWorld(image_size=64, seed=0)
    if world == "v2":
        return WorldV2(seed=0)
    raise ValueError(f"world must be 'v1' or 'v2', got {world!r}")


def semantic_metrics(seg, scenes, num_classes: int):
    """``SemanticMetrics`` of ``seg`` on synthetic ``scenes`` (one batched ``predict``)."""
    from ovdense.evaluation import SemanticEvaluator

    evaluator = SemanticEvaluator(num_classes)
    for r, s in zip(seg.predict([s.image for s in scenes]), scenes):
        evaluator.update(r.label_map, s.label_map)
    return evaluator.compute()


def build(head: str, config: str = CONFIG_PATH, weights: str = WEIGHTS_PATH, templates=(TEMPLATE,),
          logit_scale: float = LOGIT_SCALE, world: str = "v1", refiners=()):
    """A CPU segmenter on the tiny CLIP fixture of ``world``; every provider the head or the
    refiners require is the tiny DINO fixture (:func:`synthetic_providers`)."""
    import ovdense

    windows = dict(crop=0) if world == "v1" else dict(WINDOW_V2)
    seg = ovdense.OVSegmenter(backbone=dict(clip_model=config, pretrained=weights, weights_format="open_clip"),
                              head=head, preprocess=dict(short_side=None), windows=windows, refiners=list(refiners),
                              features=synthetic_providers(head, *refiners),
                              decode=dict(logit_scale=logit_scale), text_encoder=dict(templates=list(templates)),
                              device="cpu")
    seg.set_classes(make_world(world).names_file_text().strip().split("\n"))
    return seg


def evaluate(heads: Optional[Sequence[str]] = None, n: int = 100, start: int = HELDOUT_START,
             config: str = CONFIG_PATH, weights: str = WEIGHTS_PATH, work_dir: Optional[str] = None,
             world: str = "v1") -> Dict[str, Dict[str, float]]:
    """mIoU / pixel accuracy (ovdense.evaluation.SemanticEvaluator) and COCO AP (evaluate_coco) per head.

    A head name may carry ``+pamr`` (e.g. ``naclip+pamr``): the head with PAMR (10 steps,
    dilations 1 and 2) as refiner.  ``start`` is a scene index (v1) or an offset into the
    eval range (v2).
    """
    import tempfile

    import ovdense
    from ovdense.evaluation import evaluate_coco

    w = make_world(world)
    work_dir = work_dir or tempfile.mkdtemp(prefix="synth_eval_")
    if world == "v1":
        ann = w.write_coco(work_dir, n, start)
        scenes = [w.sample(start + i) for i in range(n)]
    else:
        ann = w.write_coco(work_dir, n, "eval", start)
        scenes = [w.sample(i) for i in w.indices("eval", n, start)]
    novel = list(getattr(w, "novel_ids", []))
    results = {}
    for name in heads or ovdense.list_heads():
        head, _, refiner = name.partition("+")
        refiners = [dict(type="pamr", steps=10, dilations=(1, 2))] if refiner == "pamr" else []
        if refiner not in ("", "pamr"):
            raise SystemExit(f"error: unknown refiner suffix in {name!r} (only +pamr)")
        t0 = time.time()
        seg = build(head, config, weights, world=world, refiners=refiners)
        m = semantic_metrics(seg, scenes, w.num_classes)
        coco = evaluate_coco(seg, ann, os.path.join(work_dir, "images"), background=False, progress=False,
                             classes_file=os.path.join(work_dir, "names.txt"))
        iou = np.asarray(m.iou, dtype=np.float64) / 100
        results[name] = {"mIoU": m.mIoU / 100, "pixel_acc": m.aAcc / 100,
                         "stuff_mIoU": float(np.nanmean(np.delete(iou, list(w.thing_ids)))),
                         "things_mIoU": float(np.nanmean(iou[list(w.thing_ids)])),
                         "novel_mIoU": float(np.nanmean(iou[novel])) if novel else float("nan"),
                         "segm_AP": coco.metrics["segm"].AP, "segm_AP50": coco.metrics["segm"].AP50,
                         "bbox_AP": coco.metrics["bbox"].AP, "bbox_AP50": coco.metrics["bbox"].AP50,
                         "per_class_iou": [float(x) for x in iou], "seconds": time.time() - t0}
    return results


def markdown(results: Dict[str, Dict[str, float]], n: int, class_names: List[str], world: str = "v1") -> str:
    if world == "v1":
        what = f"Synthetic world v1, {n} held-out 64x64 scenes, tiny CLIP fixture, whole image"
    else:
        what = (f"Synthetic world v2, {n} held-out 160x224 scenes, tiny CLIP v2 fixture, sliding "
                f"{WINDOW_V2['crop']} px windows (stride {WINDOW_V2['stride']}); novel = the 4 held-out compositions")
    novel = world != "v1"
    lines = [f"{what}, template '{TEMPLATE}', logit scale {LOGIT_SCALE:g}, no background threshold. SYNTHETIC.", "",
             "| head | mIoU | pixel acc | stuff mIoU | things mIoU | " + ("novel mIoU | " if novel else "")
             + "segm AP | segm AP50 | bbox AP | bbox AP50 | " + " | ".join(class_names) + " |",
             "|---|---|---|---|---|" + ("---|" if novel else "") + "---|---|---|---|" + "---|" * len(class_names)]
    for head, r in results.items():
        lines.append(f"| {head} | {r['mIoU']:.3f} | {r['pixel_acc']:.3f} | "
                     f"{r['stuff_mIoU']:.3f} | {r['things_mIoU']:.3f} | "
                     + (f"{r['novel_mIoU']:.3f} | " if novel else "")
                     + f"{r['segm_AP']:.3f} | {r['segm_AP50']:.3f} | {r['bbox_AP']:.3f} | {r['bbox_AP50']:.3f} | "
                     + " | ".join(f"{x:.2f}" for x in r["per_class_iou"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=("v1", "v2"), default="v1")
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--start", type=int, default=None,
                   help=f"v1: first scene index (default {HELDOUT_START}); v2: offset into the eval range (default 0)")
    p.add_argument("--heads", nargs="*", default=None, help="default: ovdense.list_heads()")
    p.add_argument("--config", default=None, help="tiny CLIP json (default: the world's fixture)")
    p.add_argument("--weights", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for synthetic_eval.md / .json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.world == "v1":
        config, weights, start = CONFIG_PATH, WEIGHTS_PATH, HELDOUT_START
    else:
        (config, weights), start = fixture_v2(), 0
    args.config, args.weights = args.config or config, args.weights or weights
    args.start = start if args.start is None else args.start
    results = evaluate(args.heads, args.scenes, args.start, args.config, args.weights, world=args.world)
    class_names = make_world(args.world).class_names
    md = markdown(results, args.scenes, class_names, args.world)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "synthetic_eval.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "synthetic_eval.json"), "w") as f:
            json.dump({"scenes": args.scenes, "start": args.start, "world": args.world,
                       "weights": os.path.relpath(args.weights, ROOT)
                       if args.weights.startswith(ROOT) else args.weights, "class_names": class_names,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
