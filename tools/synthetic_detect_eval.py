#!/usr/bin/env python
"""Instance AP and SAM voting on held-out synthetic world v2 scenes (SYNTHETIC figures).

    python tools/synthetic_detect_eval.py --scenes 100 --out /tmp/detect_eval

For each head (the tiny CLIP v2 fixture, ``configs/synthetic/sam_detect_world_v2.py``):

* COCO segm and bbox AP (class-aware, and class-agnostic: every class one category) of
  (a) connected components of the semantic map, (b) SAM automatic masks (the tiny SAM, the
  config's thresholds) classified by the head's pooled features and ranked by class
  probability x SAM's predicted IoU, (c) the same ranked by the class probability alone;
* semantic mIoU without and with the ``sam_vote`` refiner (labels voted in SAM regions).

Scenes: ``WorldV2(seed).indices("eval", n, start)`` (the evaluation range: never used to
train the fixtures). Prints a Markdown table; ``--out`` also writes JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "sam_detect_world_v2.py")


def _coco_results(dets, image_id):
    from ovdense.ops.masks import encode_mask

    out = []
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(c) for c in dets.xyxy[i])
        out.append({"image_id": int(image_id), "category_id": int(dets.class_id[i]) + 1,
                    "score": float(dets.confidence[i]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "segmentation": encode_mask(dets.mask[i])})
    return out


def _agnostic(gt, results):
    gt = copy.deepcopy(gt)
    gt.dataset["categories"] = [{"id": 1, "name": "object"}]
    for a in gt.dataset["annotations"]:
        a["category_id"] = 1
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, [dict(r, category_id=1) for r in results]


def evaluate(heads, n=100, start=0, seed=0, work_dir=None, progress=True):
    import torch
    from pycocotools.coco import COCO
    from tqdm import tqdm

    import ovdense
    from ovdense.evaluation import SemanticEvaluator
    from ovdense.evaluation.coco import run_cocoeval
    from ovdense.synthetic import WorldV2
    from synthetic_eval import synthetic_providers

    world = WorldV2(seed=seed)
    work_dir = work_dir or tempfile.mkdtemp(prefix="detect_eval_")
    ann = world.write_coco(work_dir, n, "eval", start)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
    indices = list(world.indices("eval", n, start))
    out = {}
    for head in heads:
        t0 = time.time()
        cfg = ovdense.config.load_config(CONFIG)
        features = dict(cfg.features.to_dict(), **synthetic_providers(head))
        seg = ovdense.OVSegmenter.from_config(cfg, head=dict(type=head), features=features, device="cpu")
        knobs = {k: v for k, v in cfg.detector.proposals.to_dict().items() if k != "type"}
        voter = ovdense.OVSegmenter.from_config(cfg, head=dict(type=head), features=features, device="cpu",
                                                refiners=[dict(type="sam_vote", masks=knobs)])
        sam_det = ovdense.Detector.from_config(cfg, segmenter=seg)
        prob_det = ovdense.Detector.from_config(cfg, segmenter=seg,
                                                scorer=dict(type="mask_pooling", confidence="probability"))
        cc_det = ovdense.Detector(seg, "connected_components")
        plain, voted = SemanticEvaluator(world.num_classes), SemanticEvaluator(world.num_classes)
        results = {"cc": [], "sam": [], "sam_prob": []}
        for index in tqdm(indices, desc=head, disable=not progress):
            scene = world.sample(index)
            with torch.no_grad():
                ctx = seg.encode_image(scene.image)
                res = seg.predict(ctx, return_scores=True)
                plain.update(res.label_map, scene.label_map)
                voted.update(voter.predict(ctx).label_map, scene.label_map)
                for key, det in (("cc", cc_det), ("sam", sam_det), ("sam_prob", prob_det)):
                    results[key] += _coco_results(det.detect(ctx), index)
        row = {"mIoU": plain.compute().mIoU / 100, "mIoU_sam_vote": voted.compute().mIoU / 100}
        for key, res in results.items():
            for iou_type in ("segm", "bbox"):
                row[f"{key}_{iou_type}_AP"] = run_cocoeval(gt, res, iou_type, verbose=False).AP
            row[f"{key}_segm_AP_agnostic"] = run_cocoeval(*_agnostic(gt, res), "segm", verbose=False).AP
            row[f"{key}_per_image"] = len(res) / n
        row["seconds"] = time.time() - t0
        out[head] = row
    return out


def markdown(results, n, seed, start):
    lines = [f"World v2 (seed {seed}), {n} eval-range scenes from {start}, tiny CLIP v2 + tiny SAM "
             f"(configs/synthetic/sam_detect_world_v2.py). SYNTHETIC.", "",
             "| head | CC segm AP | CC bbox AP | SAM segm AP | SAM bbox AP | SAM segm AP (agnostic) | "
             "SAM, prob. only, segm AP | mIoU | mIoU + sam_vote | SAM dets/img |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for head, r in results.items():
        lines.append(f"| {head} | {r['cc_segm_AP']:.3f} | {r['cc_bbox_AP']:.3f} | {r['sam_segm_AP']:.3f} | "
                     f"{r['sam_bbox_AP']:.3f} | {r['sam_segm_AP_agnostic']:.3f} | {r['sam_prob_segm_AP']:.3f} | "
                     f"{r['mIoU']:.3f} | {r['mIoU_sam_vote']:.3f} | {r['sam_per_image']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", type=int, default=0,
                   help="WorldV2 seed (the fixtures were trained on seed 0 train-range scenes)")
    p.add_argument("--heads", nargs="+", default=["maskclip", "sclip", "clearclip", "naclip"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = evaluate(args.heads, args.scenes, args.start, args.seed)
    md = markdown(results, args.scenes, args.seed, args.start)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "detect_eval.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "detect_eval.json"), "w") as f:
            json.dump({"scenes": args.scenes, "start": args.start, "seed": args.seed, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
