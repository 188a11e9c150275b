#!/usr/bin/env python
"""Per-head mIoU and COCO AP of ovdense on held-out synthetic scenes with the tiny CLIP fixture.

    python tools/synthetic_eval.py --scenes 100 --out /tmp/synth_eval

Prints a Markdown table (mIoU, pixel accuracy, foreground-object mIoU per head) and, with
``--out``, writes ``synthetic_eval.md`` and ``synthetic_eval.json`` there.  Scenes are
``SyntheticWorld(64, seed=0).sample(i)`` for ``i >= 1_000_000`` (never used in training).
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


def build(head: str, config: str = CONFIG_PATH, weights: str = WEIGHTS_PATH, templates=(TEMPLATE,),
          logit_scale: float = LOGIT_SCALE):
    import ovdense
    from ovdense.synthetic import SyntheticWorld

    seg = ovdense.OVSegmenter(backbone=dict(clip_model=config, pretrained=weights), head=head,
                              preprocess=dict(short_side=None), windows=dict(crop=0),
                              decode=dict(logit_scale=logit_scale), text_encoder=dict(templates=list(templates)),
                              device="cpu")
    seg.set_classes(SyntheticWorld().names_file_text().strip().split("\n"))
    return seg


def evaluate(heads: Optional[Sequence[str]] = None, n: int = 100, start: int = HELDOUT_START,
             config: str = CONFIG_PATH, weights: str = WEIGHTS_PATH, work_dir: Optional[str] = None
             ) -> Dict[str, Dict[str, float]]:
    """mIoU / pixel accuracy (ovdense.evaluation.SemanticEvaluator) and COCO AP (evaluate_coco) per head."""
    import tempfile

    import ovdense
    from ovdense.evaluation import SemanticEvaluator, evaluate_coco
    from ovdense.synthetic import SyntheticWorld

    world = SyntheticWorld(image_size=64, seed=0)
    work_dir = work_dir or tempfile.mkdtemp(prefix="synth_eval_")
    ann = world.write_coco(work_dir, n, start)
    scenes = [world.sample(start + i) for i in range(n)]
    results = {}
    for head in heads or ovdense.list_heads():
        t0 = time.time()
        seg = build(head, config, weights)
        evaluator = SemanticEvaluator(world.num_classes)
        for r, s in zip(seg.predict([s.image for s in scenes]), scenes):
            evaluator.update(r.label_map, s.label_map)
        m = evaluator.compute()
        coco = evaluate_coco(seg, ann, os.path.join(work_dir, "images"), background=False, progress=False,
                             classes_file=os.path.join(work_dir, "names.txt"))
        iou = np.asarray(m.iou, dtype=np.float64) / 100
        results[head] = {"mIoU": m.mIoU / 100, "pixel_acc": m.aAcc / 100,
                         "things_mIoU": float(np.nanmean(iou[list(world.thing_ids)])),
                         "segm_AP": coco.metrics["segm"].AP, "segm_AP50": coco.metrics["segm"].AP50,
                         "bbox_AP": coco.metrics["bbox"].AP, "bbox_AP50": coco.metrics["bbox"].AP50,
                         "per_class_iou": [float(x) for x in iou], "seconds": time.time() - t0}
    return results


def markdown(results: Dict[str, Dict[str, float]], n: int, class_names: List[str]) -> str:
    lines = [f"Synthetic world, {n} held-out 64x64 scenes, tiny CLIP fixture, whole image, "
             f"template '{TEMPLATE}', logit scale {LOGIT_SCALE:g}, no background threshold.", "",
             "| head | mIoU | pixel acc | objects mIoU | segm AP | segm AP50 | bbox AP | bbox AP50 | "
             + " | ".join(class_names) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(class_names)]
    for head, r in results.items():
        lines.append(f"| {head} | {r['mIoU']:.3f} | {r['pixel_acc']:.3f} | {r['things_mIoU']:.3f} | "
                     f"{r['segm_AP']:.3f} | {r['segm_AP50']:.3f} | {r['bbox_AP']:.3f} | {r['bbox_AP50']:.3f} | "
                     + " | ".join(f"{x:.2f}" for x in r["per_class_iou"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--start", type=int, default=HELDOUT_START)
    p.add_argument("--heads", nargs="*", default=None, help="default: ovdense.list_heads()")
    p.add_argument("--config", default=CONFIG_PATH)
    p.add_argument("--weights", default=WEIGHTS_PATH)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for synthetic_eval.md / .json")
    args = p.parse_args(argv)

    import torch
    from ovdense.synthetic import CLASS_NAMES

    torch.set_num_threads(args.threads)
    results = evaluate(args.heads, args.scenes, args.start, args.config, args.weights)
    md = markdown(results, args.scenes, CLASS_NAMES)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "synthetic_eval.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "synthetic_eval.json"), "w") as f:
            json.dump({"scenes": args.scenes, "start": args.start, "weights": os.path.relpath(args.weights, ROOT)
                       if args.weights.startswith(ROOT) else args.weights, "class_names": CLASS_NAMES,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
