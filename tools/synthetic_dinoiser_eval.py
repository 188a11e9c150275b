#!/usr/bin/env python
"""SYNTHETIC mIoU of the dinoiser head with trained convolutions (tools/train_head.py on
configs/train/dinoiser_world_v2.py) against the training-free heads and against random convolutions.

    python tools/synthetic_dinoiser_eval.py --checkpoint tests/fixtures/synth_dinoiser/last.pt --scenes 50

World v2 evaluation-range scenes (never used in training), the tiny CLIP v2 fixture, sliding 64 px windows
(stride 32), template 'a photo of a {}.', logit scale 40, as tools/synthetic_eval.py. The dinoiser heads
score windows with ``window_scores='cosine'`` (plain cosines, averaged like the other heads' logits), so the
four rows differ only in the head. All figures are SYNTHETIC.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))


def heads(checkpoint: str, in_dim: int = 128) -> dict:
    """Row name -> head spec."""
    return {"maskclip": "maskclip", "naclip": "naclip",
            "dinoiser (random convs, seed 0)": dict(type="dinoiser", window_scores="cosine", in_dim=in_dim, seed=0),
            "dinoiser (trained convs)": dict(type="dinoiser", window_scores="cosine", checkpoint=checkpoint)}


def evaluate(specs: dict, n: int = 50, start: int = 0) -> dict:
    from synthetic_eval import build, fixture_v2, make_world, semantic_metrics

    world = make_world("v2")
    scenes = [world.sample(i) for i in world.indices("eval", n, start)]
    config, weights = fixture_v2()
    out = {}
    for name, spec in specs.items():
        t0 = time.time()
        seg = build(spec, config, weights, world="v2")
        m = semantic_metrics(seg, scenes, world.num_classes)
        out[name] = {"mIoU": m.mIoU / 100, "pixel_acc": m.aAcc / 100, "seconds": time.time() - t0}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the exported head (dinoiser_last.pt / last.pt)")
    p.add_argument("--scenes", type=int, default=50)
    p.add_argument("--start", type=int, default=0, help="offset into the eval range")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = evaluate(heads(args.checkpoint), args.scenes, args.start)
    print(f"SYNTHETIC world v2, {args.scenes} eval scenes from offset {args.start}, tiny CLIP v2, 64/32 windows")
    print("| head | mIoU | pixel acc |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['mIoU']:.3f} | {r['pixel_acc']:.3f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(scenes=args.scenes, start=args.start, checkpoint=args.checkpoint, results=results), fh,
                      indent=2)


if __name__ == "__main__":
    main()
