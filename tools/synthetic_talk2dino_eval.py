#!/usr/bin/env python
"""SYNTHETIC mIoU of the talk2dino head with a trained projection (tools/train_head.py on
configs/train/talk2dino_world_v2.py) against the same head with a random projection and the training-free heads.

    python tools/synthetic_talk2dino_eval.py --checkpoint work_dirs/talk2dino_world_v2/talk2dino_last.pth --scenes 50

World v2 evaluation-range scenes (never used in training), the tiny CLIP v2 fixture (its text tower for every row,
its vision tower for maskclip / naclip), the tiny DINO fixture as talk2dino's visual side, sliding 64 px windows
(stride 32), template 'a photo of a {}.', the raw (unnormalised) text embedding as in training
(``text_encoder.average='raw'``), logit scale 40 (argmax decoding: the scale does not change a label). All figures
are SYNTHETIC.
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


def heads(checkpoint: str, seed: int = 0) -> dict:
    """Row name -> head spec (the random projection: the trainer's initialisation under ``seed``)."""
    import torch

    from ovdense.heads.talk2dino import TextProjection

    random_path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), f"talk2dino_random_seed{seed}.pth")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        dino_dim, clip_dim = state["linear_layer.weight"].shape
        torch.save(TextProjection(int(clip_dim), int(dino_dim)).state_dict(), random_path)
    return {"maskclip": "maskclip", "naclip": "naclip",
            f"talk2dino (random projection, seed {seed})": dict(type="talk2dino", checkpoint=random_path),
            "talk2dino (trained projection)": dict(type="talk2dino", checkpoint=checkpoint)}


def build(spec):
    import ovdense
    from synthetic_eval import LOGIT_SCALE, TEMPLATE, WINDOW_V2, fixture_v2, make_world, synthetic_providers

    config, weights = fixture_v2()
    seg = ovdense.OVSegmenter(backbone=dict(clip_model=config, pretrained=weights, weights_format="open_clip"),
                              head=spec, preprocess=dict(short_side=None), windows=dict(WINDOW_V2),
                              features=synthetic_providers(spec), decode=dict(logit_scale=LOGIT_SCALE),
                              text_encoder=dict(templates=[TEMPLATE], average="raw", cache_dir=""), device="cpu")
    seg.set_classes(make_world("v2").names_file_text().strip().split("\n"))
    return seg


def evaluate(specs: dict, n: int = 50, start: int = 0) -> dict:
    from synthetic_eval import make_world, semantic_metrics

    world = make_world("v2")
    scenes = [world.sample(i) for i in world.indices("eval", n, start)]
    out = {}
    for name, spec in specs.items():
        t0 = time.time()
        seg = build(spec)
        m = semantic_metrics(seg, scenes, world.num_classes)
        out[name] = {"mIoU": m.mIoU / 100, "pixel_acc": m.aAcc / 100, "seconds": time.time() - t0}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the exported projection (talk2dino_last.pth)")
    p.add_argument("--scenes", type=int, default=50)
    p.add_argument("--start", type=int, default=0, help="offset into the eval range")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-projection control")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = evaluate(heads(args.checkpoint, args.seed), args.scenes, args.start)
    print(f"SYNTHETIC world v2, {args.scenes} eval scenes from offset {args.start}, tiny CLIP v2 + tiny DINO, "
          f"64/32 windows")
    print("| head | mIoU | pixel acc |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['mIoU']:.3f} | {r['pixel_acc']:.3f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(scenes=args.scenes, start=args.start, checkpoint=args.checkpoint, results=results), fh,
                      indent=2)


if __name__ == "__main__":
    main()
