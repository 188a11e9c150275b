"""Time each head under its default protocol, against a plain reference-style baseline.

For every head: images/s and per-stage latency of ovdense (windows of an image in one
batch, text embeddings cached) and of a plain baseline that runs the same computation the
way the official implementations do (one window at a time, text encoded on every run, no
caching), on the same inputs; the outputs of the two are compared (max logit difference,
identical label maps). Writes JSON and a Markdown table.

    ovdense benchmark --clip-model ViT-B-16 --pretrained none --heads sclip naclip \
        --size 500x375 --repeats 3 --out runs/bench      # or: python tools/benchmark.py ...

Random weights are fine for timing (``--pretrained none``); pass a tag or a file for real ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

import ovdense
from ovdense.postprocess import decode
from ovdense.refine import pamr_stacked
from ovdense.windows import window_boxes

# Each head's default protocol (SCLIP/NACLIP/ClearCLIP/MaskCLIP papers; see configs/).
PROTOCOLS: Dict[str, dict] = {
    "vanilla": dict(short_side=336, slide_crop=224, slide_stride=112),
    "maskclip": dict(short_side=512, slide_crop=0, pos_interp="size"),
    "sclip": dict(short_side=336, slide_crop=224, slide_stride=112),
    "clearclip": dict(short_side=448, slide_crop=448, slide_stride=224, pad_to=16, logit_scale=50.0),
    "naclip": dict(short_side=336, slide_crop=224, slide_stride=112, pamr_steps=10, renormalize=True),
}
VOC21 = ["sky, wall, tree, wood, grass, road, sea, river, mountain, sands, desk, bed, building, cloud, lamp, door, "
         "window, wardrobe, ceiling, shelf, curtain, stair, floor, hill, rail, fence", "aeroplane", "bicycle", "bird",
         "ship", "bottle", "bus", "car", "cat", "chair", "cow", "table", "dog", "horse", "motorbike",
         "person, person in shirt, person in jeans, person in dress, person in sweater, person in skirt, "
         "person in jacket", "pottedplant", "sheep", "sofa", "train", "television monitor, tv monitor, monitor, "
         "television, screen"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def reference_features(seg: ovdense.OVSegmenter, crop: torch.Tensor) -> torch.Tensor:
    """Dense features with the attention matrix built explicitly (bmm + softmax), as the
    official code does, instead of the fused scaled-dot-product kernels."""
    view = seg.backbone.prefix(crop)
    tokens = seg.head.finish(view, seg.backbone, seg.head.attention(view) @ view.v)
    feats = F.normalize(seg.backbone.project(tokens[:, 1:]).float(), dim=-1)
    h, w = view.grid
    return feats.reshape(feats.shape[0], h, w, -1).permute(0, 3, 1, 2)


def plain_baseline(seg: ovdense.OVSegmenter, image: np.ndarray, classes) -> Dict[str, object]:
    """The official implementations' image side: one window per forward pass, explicit
    attention, pad-to-canvas stitching, stacked PAMR. The text embeddings are the segmenter's
    (the baseline's per-image text cost is the measured cold encoding time, added in ``run``)."""
    timings = {}
    t0 = time.perf_counter()
    vocab = ovdense.build_vocabulary(classes, background="first")
    text = seg._text_features
    t1 = time.perf_counter()
    x = seg.preprocess(image)
    h, w = x.shape[-2:]
    boxes = window_boxes(h, w, seg.slide_crop, seg.slide_stride)
    preds = torch.zeros(len(vocab.queries), h, w, device=seg.device)
    count = torch.zeros(1, h, w, device=seg.device)
    ori = image.shape[:2]
    for y1, y2, x1, x2 in boxes:
        crop = x[None, :, y1:y2, x1:x2]
        pad = seg._windows((y2 - y1, x2 - x1))[1] if seg.slide_crop > 0 else (0, 0, 0, 0)
        if any(pad):
            crop = F.pad(crop, pad)
        feats = reference_features(seg, crop)
        logit = torch.einsum("bdhw,qd->bqhw", feats, text)
        if seg.slide_crop <= 0:
            preds = F.interpolate(logit, size=ori, mode="bilinear")[0]
            break
        logit = F.interpolate(logit, size=crop.shape[-2:], mode="bilinear")
        l, r, t, b = pad
        logit = logit[:, :, t:t + y2 - y1, l:l + x2 - x1]
        preds += F.pad(logit, (x1, w - x2, y1, h - y2))[0]
        count[:, y1:y2, x1:x2] += 1
    if seg.slide_crop > 0:
        preds = F.interpolate((preds / count)[None], size=ori, mode="bilinear")[0]
    _sync(seg.device)
    t2 = time.perf_counter()
    logits = preds
    if seg.pamr_steps > 0:
        guide = F.interpolate(x[None], size=ori, mode="bilinear")
        logits = pamr_stacked(guide, preds[None], seg.pamr_steps, seg.pamr_dilations)[0]
    _, labels = decode(logits, torch.tensor(vocab.query_to_class, device=seg.device), vocab.num_classes,
                       seg.logit_scale, seg.background_threshold, seg.area_threshold, seg.renormalize)
    _sync(seg.device)
    t3 = time.perf_counter()
    timings.update(text=(t1 - t0) * 1e3, image=(t2 - t1) * 1e3, refine_decode=(t3 - t2) * 1e3)
    return {"logits": preds, "labels": labels.cpu().numpy(), "timings": timings}


def run(args) -> Dict[str, object]:
    torch.manual_seed(0)
    device = ovdense.predictor.resolve_device(args.device)
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    backbone = ovdense.CLIPBackbone.load(args.clip_model, pretrained, device=device)
    rows: List[Dict[str, object]] = []
    # Text encoding does not depend on the head: time it once, cold (no cache) and cached.
    probe = ovdense.OVSegmenter(backbone=backbone, head="vanilla", device=device, dtype=args.dtype, text_cache_dir="")
    t0 = time.perf_counter()
    probe.set_classes(VOC21, background="first")
    text_cold = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    probe.set_classes(VOC21, background="first")
    text_warm = (time.perf_counter() - t0) * 1e3
    print(f"text: {text_cold:.0f} ms cold (51 queries x 80 templates), {text_warm:.2f} ms cached", flush=True)
    for head in args.heads:
        proto = dict(PROTOCOLS[head])
        backbone.pos_interp = proto.pop("pos_interp", "scale_factor")
        backbone._pe_cache.clear()
        seg = ovdense.OVSegmenter(backbone=backbone, head=head, device=device, dtype=args.dtype,
                                  text_cache_dir="", batch_size=args.batch_size, **proto)
        seg.text = probe.text  # share the in-memory text cache
        seg.set_classes(VOC21, background="first")
        seg.predict(image)  # warm-up
        fast_ms, stages = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = seg.predict(image)
            _sync(device)
            fast_ms.append((time.perf_counter() - t0) * 1e3)
            stages.append(res.timings)
        feats = seg.encode_image(image)
        fast_logits = seg.query_logits(feats)
        base_stages = []
        for _ in range(args.baseline_repeats):
            base = plain_baseline(seg, image, VOC21)
            base_stages.append(base["timings"])
        diff = float((base["logits"] - fast_logits).abs().max())
        same_labels = bool(np.array_equal(base["labels"], res.label_map))
        image_fast = float(np.median(fast_ms))
        image_base = float(np.median([s["image"] + s["refine_decode"] for s in base_stages]))
        folder_base = image_base + text_cold  # the baseline encodes the text again for every image
        row = {
            "head": head, "protocol": {k: v for k, v in PROTOCOLS[head].items()},
            "windows": len(feats.boxes), "ms_per_image": image_fast, "images_per_s": 1e3 / image_fast,
            "stages_ms": {k: float(np.median([s.get(k, 0.0) for s in stages])) for k in stages[0]},
            "text_ms_cold": text_cold, "text_ms_cached": text_warm,
            "baseline_image_ms": image_base, "baseline_with_text_ms": folder_base,
            "speedup_image": image_base / image_fast, "speedup_folder": folder_base / image_fast,
            "max_logit_diff": diff, "labels_identical": same_labels,
        }
        rows.append(row)
        print(f"{head:10s} {row['windows']:2d} win  {image_fast:8.1f} ms/img  baseline {image_base:8.1f}  "
              f"x{row['speedup_image']:.2f} image  x{row['speedup_folder']:.1f} folder  diff {diff:.1e}  "
              f"labels {'same' if same_labels else 'DIFFER'}", flush=True)
    info = {"device": str(device), "dtype": args.dtype, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "model": args.clip_model,
            "pretrained": args.pretrained, "image": args.size, "classes": "VOC21 (21 classes, 51 queries)",
            "rows": rows}
    return info


def markdown(info) -> str:
    lines = [f"Device {info['device']} ({info['threads']} threads), {info['dtype']}, {info['model']} "
             f"weights={info['pretrained']}, image {info['image']}, {info['classes']}", "",
             "| head | windows | ms/image | images/s | baseline ms | speed-up (text cached in both) | "
             "speed-up vs baseline encoding text | text cold ms | text cached ms | max logit diff | labels |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        lines.append(f"| {r['head']} | {r['windows']} | {r['ms_per_image']:.0f} | {r['images_per_s']:.2f} | "
                     f"{r['baseline_image_ms']:.0f} | {r['speedup_image']:.2f}x | {r['speedup_folder']:.1f}x | "
                     f"{r['text_ms_cold']:.0f} | {r['text_ms_cached']:.2f} | {r['max_logit_diff']:.1e} | "
                     f"{'identical' if r['labels_identical'] else 'differ'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip-model", default="ViT-B-16")
    p.add_argument("--pretrained", default="none", help="open_clip tag, local file, or none (random weights)")
    p.add_argument("--heads", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the test image")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-repeats", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for benchmark.json and benchmark.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = run(args)
    table = markdown(info)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "benchmark.json"), "w") as fh:
            json.dump(info, fh, indent=2)
        with open(os.path.join(args.out, "benchmark.md"), "w") as fh:
            fh.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
