#!/usr/bin/env python
"""CorrCLIP beside the other heads on held-out synthetic world v2 scenes (SYNTHETIC figures).

    python tools/synthetic_corrclip_eval.py --scenes 40 --out /tmp/corrclip_eval

Tiny CLIP v2 + tiny DINO + tiny SAM fixtures, sliding 64 px windows with stride 32, one template,
scale 40 (the setting of ``tools/synthetic_eval.py --world v2``). Rows:

* ``maskclip``, ``naclip``, ``proxyclip`` (tiny DINO): the heads already there;
* ``corrclip``: regions from the tiny SAM's automatic masks (16 points per side, thresholds 0,
  painted as CorrCLIP does), DINO's last-block ``q+k``, map correction on;
* ``corrclip, no correction``: the same without the ``region_mode`` rule;
* ``corrclip, random regions``: a control, the regions replaced by random rectangles (the
  scope and the correction then follow nothing in the image);
* ``corrclip, random DINO``: a control, a random-init DINO of the same shape;
* ``ovstitcher`` (and ``ovstitcher, random DINO``): the same regions, DINO and correction, the three
  branches computed on the stitched image (``stitched_vit``).

Prints a Markdown table of mIoU and pixel accuracy; ``--out`` writes it with the JSON.
``--dino-bootstrap`` compares corrclip with the trained tiny DINO and with a random-init one, scene by
scene, with a paired bootstrap of the mIoU difference (the DINO instrument of the DINO-side issue).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

SAM = dict(type="sam", model_config=os.path.join(ROOT, "tests", "fixtures", "synth_sam", "model.json"),
           checkpoint=os.path.join(ROOT, "tests", "fixtures", "synth_sam", "synth_sam.pt"))
SAM_MASKS = dict(type="sam_automatic", provider="sam", points_per_side=16, pred_iou_thresh=0.0,
                 stability_score_thresh=0.0)
ROWS = ("maskclip", "naclip", "proxyclip", "corrclip", "corrclip, no correction", "corrclip, random regions",
        "corrclip, random DINO", "ovstitcher", "ovstitcher, random DINO")


class RandomRegions:
    """A stand-in region source: random rectangles per image (the broken control)."""

    requires = ()
    needs_result = False

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, context, vocabulary=None, result=None):
        from ovdense.structures import Detections

        h, w = context.original_size
        masks = np.zeros((12, h, w), dtype=bool)
        for m in masks:
            y, x = self.rng.integers(0, h - 8), self.rng.integers(0, w - 8)
            m[y:y + self.rng.integers(8, h // 2), x:x + self.rng.integers(8, w // 2)] = True
        return Detections.from_masks(masks)


def build(row: str):
    import ovdense
    from synthetic_eval import fixture_v2, make_world, synthetic_dino

    config, weights = fixture_v2()
    head = row.split(",")[0]
    dino = synthetic_dino()
    features, rules = {}, []
    if head == "proxyclip":
        features = dict(vfm=dino)
    elif head == "corrclip":
        dino = dict(dino, output="q+k")
        if row.endswith("random DINO"):
            dino.pop("weights")
        features = dict(dino=dino, sam=SAM, regions=dict(type="regions", proposals=SAM_MASKS))
        if not row.endswith("no correction"):
            rules = [dict(type="region_mode")]
    elif head == "ovstitcher":  # the same regions and correction; DINO's last block over the stitched image
        dino = dict(dino, type="stitched_vit")
        if row.endswith("random DINO"):
            dino.pop("weights")
        features = dict(stitched_dino=dino, sam=SAM, regions=dict(type="regions", proposals=SAM_MASKS))
        rules = [dict(type="region_mode")]
    import torch

    torch.manual_seed(0)
    seg = ovdense.OVSegmenter(backbone=dict(clip_model=config, pretrained=weights, weights_format="open_clip"),
                              head=head, preprocess=dict(short_side=None), windows=dict(crop=64, stride=32),
                              features=features, decode=dict(logit_scale=40.0, rules=rules),
                              text_encoder=dict(templates=["a photo of a {}."]), device="cpu")
    if row.endswith("random regions"):
        seg.features["regions"].source = RandomRegions()
    seg.set_classes(make_world("v2").names_file_text().strip().split("\n"))
    return seg


def per_scene_counts(row: str, n: int, start: int = 0, progress: bool = True) -> np.ndarray:
    """``[n, C, C + 1]`` confusion counts of ``row`` per held-out scene."""
    import torch
    from tqdm import tqdm

    from ovdense.evaluation import SemanticEvaluator
    from ovdense.synthetic import WorldV2

    world = WorldV2(seed=0)
    seg = build(row)
    ev = SemanticEvaluator(world.num_classes)
    out = []
    for index in tqdm(list(world.indices("eval", n, start)), desc=row, disable=not progress):
        scene = world.sample(index)
        with torch.no_grad():
            out.append(ev.update(seg.predict(scene.image).label_map, scene.label_map))
    return np.stack(out)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0):
    """mIoU(a) - mIoU(b) over all scenes, and its bootstrap 5th percentile (scenes resampled with
    replacement, the same scenes for both): ``(difference, p5, miou_a, miou_b)``."""
    from ovdense.evaluation.miou import metrics_from_confusion

    def miou(counts):
        return metrics_from_confusion(counts.sum(0)).mIoU / 100

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        diffs.append(miou(a[pick]) - miou(b[pick]))
    return miou(a) - miou(b), float(np.percentile(diffs, 5)), miou(a), miou(b)


def evaluate(rows=ROWS, n: int = 40, start: int = 0, progress: bool = True):
    import torch
    from tqdm import tqdm

    from ovdense.evaluation import SemanticEvaluator
    from ovdense.synthetic import WorldV2

    world = WorldV2(seed=0)
    indices = list(world.indices("eval", n, start))
    out = {}
    for row in rows:
        t0 = time.time()
        seg = build(row)
        ev = SemanticEvaluator(world.num_classes)
        for index in tqdm(indices, desc=row, disable=not progress):
            scene = world.sample(index)
            with torch.no_grad():
                ev.update(seg.predict(scene.image).label_map, scene.label_map)
        m = ev.compute()
        out[row] = dict(mIoU=m.mIoU / 100, pixel_acc=m.aAcc / 100, seconds=time.time() - t0)
    return out


def markdown(results, n: int) -> str:
    lines = [f"World v2 (seed 0), {n} eval-range scenes, tiny CLIP v2 + tiny DINO + tiny SAM. SYNTHETIC.", "",
             "| head | mIoU | pixel acc | s / image |", "|---|---|---|---|"]
    for row, r in results.items():
        lines.append(f"| {row} | {r['mIoU']:.3f} | {r['pixel_acc']:.3f} | {r['seconds'] / n:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--rows", nargs="*", default=list(ROWS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--dino-bootstrap", action="store_true",
                   help="instead of the table: corrclip with the trained tiny DINO against a random-init one, "
                        "per-scene paired bootstrap of the mIoU difference")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.dino_bootstrap:
        trained = per_scene_counts("corrclip", args.scenes, args.start)
        random_init = per_scene_counts("corrclip, random DINO", args.scenes, args.start)
        diff, p5, a, b = paired_bootstrap(trained, random_init)
        line = (f"world v2, {args.scenes} eval scenes (SYNTHETIC): corrclip trained tiny DINO {a:.4f}, random-init "
                f"DINO {b:.4f}; difference {diff:+.4f}, bootstrap 5th percentile {p5:+.4f}")
        print(line)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "dino_bootstrap.json"), "w") as fh:
                json.dump(dict(scenes=args.scenes, trained=a, random_init=b, difference=diff, p5=p5), fh, indent=2)
        return
    results = evaluate(args.rows, args.scenes, args.start)
    table = markdown(results, args.scenes)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "corrclip_eval.md"), "w") as fh:
            fh.write(table + "\n")
        with open(os.path.join(args.out, "corrclip_eval.json"), "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
