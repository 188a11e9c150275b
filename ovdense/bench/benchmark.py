"""Time each head under its default protocol, against a plain reference-style baseline.

The protocols are the shipped base configs (``configs/_base_/<head>.py``, read with the
loader of ``OVSegmenter.from_config``); only the backbone weights, device, dtype and window
batch come from the command line. Protocols share the backbone's weights, never its settings
(MaskCLIP's ``pos_interp='size'`` is set on a view of its own).

For every head and dtype:

* batch-1 latency of ovdense (windows of an image in one batch, text embeddings cached) and
  of a plain baseline that runs the same computation the way the official implementations
  do (one window at a time, fp32, explicit attention, text encoded on every run), on the
  same image; their outputs are compared (max logit difference, label maps);
* latency per stage (windows, backbone, head, logits, refine, decode; text once);
* images/s over batches of already decoded images (``--batch-sizes``), with peak memory;
* the backbone's FLOPs, its achieved throughput and the measured matmul peak of the device
  on the backbone's shapes (and the datasheet bf16 peak of known GPUs).

Every time is the best of ``--repeats`` runs (fast path and baseline alternating), the least
disturbed run on a shared machine. Writes ``benchmark.json`` and ``benchmark.md``::

    ovdense benchmark --clip-model ViT-B-16 --pretrained none --heads sclip naclip \
        --size 500x375 --repeats 3 --out runs/bench      # or: python tools/benchmark.py ...
    ovdense benchmark --device cuda --dtype bf16 fp16 --heads sclip \
        --batch-sizes 1 16 64 128 256 --out runs/bench-gpu

Random weights are fine for timing (``--pretrained none``); pass a tag or a file for real ones.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import ovdense
from ovdense.bench import roofline
from ovdense.config import configs_dir, find_config, list_configs, load_config, segmenter_kwargs
from ovdense.io.writers import atomic_path, write_json
from ovdense.ops.bilinear import resize_rows
from ovdense.ops.windows import centred_padding, crop_windows, window_boxes
from ovdense.refine import pamr_stacked
from ovdense.runtime import resolve_device, resolve_dtype, synchronize
from ovdense.text import TextEmbedder, read_name_file

#: The heads timed by default, in table order. Each runs under its default protocol, read from
#: the shipped config ``configs/_base_/<head>.py`` (see :func:`protocol`), not from a copy here.
HEADS = ("vanilla", "maskclip", "sclip", "clearclip", "naclip")
#: OVSegmenter options the benchmark sets itself, whatever the config says.
_BENCH_OPTIONS = ("device", "dtype", "batch_size", "compile")


def available_heads() -> List[str]:
    """Heads with a shipped base protocol (``configs/_base_/<head>.py``), :data:`HEADS` first."""
    shipped = [n[len("_base_/"):] for n in list_configs() if n.startswith("_base_/")]
    return [h for h in HEADS if h in shipped] + sorted(h for h in shipped if h not in HEADS)


def protocol(head: str) -> Dict[str, object]:
    """The default protocol of ``head``: the OVSegmenter keyword arguments of the shipped config
    ``configs/_base_/<head>.py``, read with :func:`ovdense.config.load_config` (the loader of
    ``OVSegmenter.from_config``). The backbone section is replaced by its ``pos_interp`` (the
    benchmark's backbone comes from ``--clip-model`` / ``--pretrained``), and the options the
    benchmark sets itself (device, dtype, window batch) are dropped. A new dict on every call."""
    cfg = load_config(find_config(f"_base_/{head}"))
    kwargs = segmenter_kwargs(cfg)
    backbone = dict(kwargs.pop("backbone", None) or {})
    for option in _BENCH_OPTIONS:
        kwargs.pop(option, None)
    kwargs["pos_interp"] = backbone.get("pos_interp", "scale_factor")
    return copy.deepcopy(kwargs)


def describe_protocol(proto: Dict[str, object]) -> Dict[str, object]:
    """``proto`` for the report: template lists are given by their length."""
    out = copy.deepcopy(dict(proto))
    text = dict(out.get("text_encoder") or {})
    templates = text.get("templates")
    if templates is not None and not isinstance(templates, str):
        text["templates"] = f"{len(templates)} templates"
        out["text_encoder"] = text
    return out


def backbone_view(backbone: ovdense.CLIPBackbone, pos_interp: str) -> ovdense.CLIPBackbone:
    """A new backbone object with its own settings (``pos_interp``, positional-embedding cache)
    over the same weights as ``backbone`` (not copied): one per segmenter, so that no protocol
    changes a backbone that another protocol uses."""
    return type(backbone)(backbone.model, pos_interp=pos_interp, name=backbone.name,
                          pretrained=backbone.pretrained)


def build_segmenter(head: str, backbone: ovdense.CLIPBackbone, device, dtype: torch.dtype,
                    text: Dict[tuple, TextEmbedder], window_batch: int = 0,
                    text_backbone: Optional[ovdense.CLIPBackbone] = None) -> ovdense.OVSegmenter:
    """A segmenter for ``head`` under its shipped protocol (:func:`protocol`) on ``backbone``
    (already in ``dtype``): the weights are shared, the backbone's settings are left as they
    are. ``text`` maps template tuples to text embedders and is filled as needed, so that
    protocols with the same templates share one in-memory cache; a new embedder encodes with
    ``text_backbone`` (default ``backbone``)."""
    proto = protocol(head)
    bb = backbone_view(backbone, proto.pop("pos_interp"))
    text_cfg = dict(proto.pop("text_encoder", None) or {})
    seg = ovdense.OVSegmenter(backbone=bb, head=proto.pop("head", head), device=device, dtype=dtype,
                              text_encoder=dict(text_cfg, cache_dir=""), batch_size=window_batch or 1024, **proto)
    key = tuple(seg.text.templates)
    if key not in text:
        text[key] = TextEmbedder(text_backbone or backbone, **dict(text_cfg, cache_dir=""))
    seg.text = text[key]  # shared in-memory text cache
    return seg


#: The class list timed: the shipped VOC21 name file (background line first), as the configs use it.
VOC21_NAMES = "names/cls_voc21.txt"


def voc21_classes() -> List[List[str]]:
    """The synonym lists of ``configs/names/cls_voc21.txt`` (read once, before any timing)."""
    return read_name_file(os.path.join(configs_dir(), VOC21_NAMES))


@contextmanager
def _mha_fast_path(enabled: bool):
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@torch.no_grad()
def reference_features(seg: ovdense.OVSegmenter, crop: torch.Tensor) -> torch.Tensor:
    """Dense features computed as the official code does: the blocks before the last run
    through ``nn.MultiheadAttention(need_weights=False)`` outside PyTorch's batch-first fast
    path (OpenAI CLIP's sequence-first blocks reach ``F.multi_head_attention_forward`` and its
    fused attention that way), and the last block builds its attention matrix explicitly
    (bmm + softmax) instead of the heads' fused kernels."""
    with _mha_fast_path(False):
        view = seg.backbone.prefix(crop, fused=False)
    tokens = seg.head.finish(view, seg.backbone, seg.head.attention(view) @ view.v)
    feats = F.normalize(seg.backbone.project(tokens[:, 1:]).float(), dim=-1)
    h, w = view.grid
    return feats.reshape(feats.shape[0], h, w, -1).permute(0, 3, 1, 2)


def plain_baseline(seg: ovdense.OVSegmenter, image: np.ndarray, classes) -> Dict[str, object]:
    """The official implementations' image side, in fp32: one window per forward pass
    (:func:`reference_features`), pad-to-canvas stitching, stacked PAMR. The text embeddings
    are the segmenter's (the baseline's per-image text cost is the measured cold encoding
    time, added in ``run``)."""
    timings = {}
    t0 = time.perf_counter()
    vocab = ovdense.build_vocabulary(classes, background="first")
    text = seg.encoded_vocabulary.text
    t1 = time.perf_counter()
    x = seg.preprocess(image)
    h, w = x.shape[-2:]
    crop_size, whole = seg.windows.crop, seg.windows.whole
    boxes = window_boxes(h, w, crop_size, seg.windows.stride)
    preds = torch.zeros(len(vocab.queries), h, w, device=seg.device)
    count = torch.zeros(1, h, w, device=seg.device)
    ori = image.shape[:2]
    for y1, y2, x1, x2 in boxes:
        crop = x[None, :, y1:y2, x1:x2]
        pad = (0, 0, 0, 0) if whole else centred_padding(y2 - y1, x2 - x1, seg.windows.pad_to)
        if any(pad):
            crop = F.pad(crop, pad)
        feats = reference_features(seg, crop)
        logit = torch.einsum("bdhw,qd->bqhw", feats, text)
        if whole:
            preds = F.interpolate(logit, size=ori, mode="bilinear")[0]
            break
        logit = F.interpolate(logit, size=crop.shape[-2:], mode="bilinear")
        left, right, top, bottom = pad
        logit = logit[:, :, top:top + y2 - y1, left:left + x2 - x1]
        preds += F.pad(logit, (x1, w - x2, y1, h - y2))[0]
        count[:, y1:y2, x1:x2] += 1
    if not whole:
        preds = F.interpolate((preds / count)[None], size=ori, mode="bilinear")[0]
    synchronize(seg.device)
    t2 = time.perf_counter()
    logits = preds
    for refiner in seg.refiners:  # the protocols' only refiner is PAMR
        guide = F.interpolate(x[None], size=ori, mode="bilinear")
        logits = pamr_stacked(guide, logits[None], refiner.steps, refiner.dilations)[0]
    _, labels = seg.decoder(logits, torch.tensor(vocab.query_to_class, device=seg.device), vocab.num_classes,
                            has_background=True)
    synchronize(seg.device)
    t3 = time.perf_counter()
    timings.update(text=(t1 - t0) * 1e3, image=(t2 - t1) * 1e3, refine_decode=(t3 - t2) * 1e3)
    return {"logits": preds, "labels": labels.cpu().numpy(), "timings": timings}


def _best_ms(fn, repeats: int, device: torch.device):
    """Shortest wall time of ``fn()`` over ``repeats`` runs in ms (device synchronised), the
    least disturbed run on a shared machine; returns (ms, last output)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(min(times)), out


@torch.no_grad()
def stage_times(seg: ovdense.OVSegmenter, image: np.ndarray, feats, repeats: int) -> Dict[str, float]:
    """Latency of each stage of one image, run one stage at a time (all windows in one batch);
    ``feats`` are the image's encoded features (for the stages after the backbone)."""
    dev = seg.device

    def windows():
        x = seg.preprocess(image)
        boxes, pad = seg.windows.plan(tuple(x.shape[-2:]))
        return crop_windows(x, boxes, pad)

    crops = windows()
    out: Dict[str, float] = {}
    out["windows"], crops = _best_ms(windows, repeats, dev)
    out["backbone"], view = _best_ms(lambda: seg.backbone.prefix(crops), repeats, dev)
    out["head"], _ = _best_ms(lambda: seg.head(view, seg.backbone), repeats, dev)
    out["logits"], logits = _best_ms(lambda: seg.query_logits(feats), repeats, dev)

    def refine():
        refined = logits
        if not seg.refiners:  # predict resizes the guide only for a refiner that asks for it
            return refined
        guide = resize_rows(feats.guide, tuple(logits.shape[-2:]), 0, logits.shape[-2])
        for refiner in seg.refiners:
            refined = refiner(refined, guide)
        return refined

    out["refine"], refined = _best_ms(refine, repeats, dev)
    enc = seg.encoded_vocabulary
    out["decode"], _ = _best_ms(
        lambda: seg.decoder(refined, enc.query_to_class, enc.vocabulary.num_classes, True)[1].cpu(), repeats, dev)
    return out


@torch.no_grad()
def throughput(seg: ovdense.OVSegmenter, size, batch_sizes: Sequence[int], windows: int, repeats: int,
               window_batch: int = 0) -> List[Dict[str, float]]:
    """images/s of ``predict`` on lists of already decoded images; all windows of a list share
    forward passes (``window_batch`` caps a pass, 0 = no cap)."""
    w, h = size
    rng = np.random.default_rng(1)
    rows = []
    for n in batch_sizes:
        images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]
        seg.batch_size = window_batch or n * windows
        try:
            seg.predict(images)  # warm-up (and cuDNN / allocator settling)
            roofline.reset_peak_memory(seg.device)
            ms, _ = _best_ms(lambda: seg.predict(images), repeats, seg.device)
        except torch.cuda.OutOfMemoryError as exc:
            print(f"  batch {n}: out of memory ({str(exc).splitlines()[0]}); larger batches skipped", flush=True)
            torch.cuda.empty_cache()
            break
        rows.append({"batch": n, "ms_per_batch": ms, "images_per_s": n * 1e3 / ms,
                     "peak_memory_mb": roofline.peak_memory_mb(seg.device)})
        print(f"  batch {n:4d}: {n * 1e3 / ms:9.2f} images/s  peak {rows[-1]['peak_memory_mb']:.0f} MB", flush=True)
    return rows


@torch.no_grad()
def backbone_roofline(seg: ovdense.OVSegmenter, windows: int, window_size, images: int,
                      repeats: int) -> Dict[str, object]:
    """Time the backbone (:meth:`CLIPBackbone.prefix`) on ``windows`` windows in one pass and
    compare its FLOP rate with the device's measured matmul peak on the same shapes (best
    observed time and best observed peak)."""
    crops = torch.randn(windows, 3, *window_size, device=seg.device)
    flops = roofline.backbone_flops(seg.backbone, tuple(window_size), windows)
    tokens, width, mlp = roofline.backbone_matmul_shape(seg.backbone, tuple(window_size), windows)
    seg.backbone.prefix(crops)  # warm-up
    # Best of alternating runs for both, so that a shared machine's drift does not favour one.
    times, peak = [], 0.0
    for _ in range(max(1, repeats)):
        times.append(_best_ms(lambda: seg.backbone.prefix(crops), 1, seg.device)[0])
        peak = max(peak, roofline.matmul_peak_gflops(seg.device, seg.dtype, tokens, width, mlp, repeats=3))
    ms = min(times)
    achieved = flops / (ms / 1e3) / 1e9
    nominal = roofline.nominal_bf16_tflops(seg.device)
    return {"windows_per_pass": windows, "images_per_pass": images, "backbone_ms": ms,
            "backbone_gflop_per_image": flops / images / 1e9, "backbone_gflops_per_s": achieved,
            "matmul_peak_gflops_per_s": peak, "fraction_of_matmul_peak": achieved / peak,
            "nominal_bf16_tflops": nominal,
            "fraction_of_nominal_bf16": None if nominal is None else achieved / (nominal * 1e3)}


def run(args) -> Dict[str, object]:
    torch.manual_seed(0)
    device = resolve_device(args.device)
    size = tuple(int(v) for v in args.size.split("x"))
    image = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    backbone = ovdense.CLIPBackbone.load(args.clip_model, pretrained, device=device)
    dtypes = list(dict.fromkeys(resolve_dtype(d, device) for d in args.dtype))
    backbones = {dt: backbone if dt == torch.float32 else copy.deepcopy(backbone).to(dtype=dt) for dt in dtypes}
    voc21 = voc21_classes()
    # Text encoding does not depend on the head: time it once, cold (no cache) and cached.
    probe = ovdense.OVSegmenter(backbone=backbone, head="vanilla", device=device, dtype="fp32",
                                text_encoder=dict(cache_dir=""))
    t0 = time.perf_counter()
    probe.set_classes(voc21, background="first")
    text_cold = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    probe.set_classes(voc21, background="first")
    text_warm = (time.perf_counter() - t0) * 1e3
    n_queries, n_templates = probe.vocabulary.num_queries, len(probe.text.templates)
    classes = f"VOC21 ({probe.vocabulary.num_classes} classes, {n_queries} queries x {n_templates} templates)"
    print(f"text: {text_cold:.0f} ms cold ({n_queries} queries x {n_templates} templates), {text_warm:.2f} ms cached",
          flush=True)

    text = {tuple(probe.text.templates): probe.text}  # one text cache per template set

    def make(head: str, dt: torch.dtype) -> ovdense.OVSegmenter:
        seg = build_segmenter(head, backbones[dt], device, dt, text, args.window_batch, text_backbone=backbone)
        seg.set_classes(voc21, background="first")
        return seg

    rows: List[Dict[str, object]] = []
    for head in args.heads:
        # The plain baseline runs in fp32, whatever the fast path's dtype.
        ref = make(head, torch.float32)
        ref.predict(image)  # warm-up
        for dt in dtypes:
            seg = make(head, dt)
            seg.predict(image)  # warm-up
            # Fast path and baseline alternate, so that drifts of a shared machine hit both alike.
            fast_ms, base_runs = [], []
            for r in range(max(args.repeats, args.baseline_repeats)):
                if r < args.repeats:
                    ms, res = _best_ms(lambda: seg.predict(image), 1, device)
                    fast_ms.append(ms)
                if r < args.baseline_repeats:
                    base_runs.append(plain_baseline(ref, image, voc21))
            latency = min(fast_ms)
            base = min(base_runs, key=lambda b: b["timings"]["image"] + b["timings"]["refine_decode"])
            image_base = base["timings"]["image"] + base["timings"]["refine_decode"]
            feats = seg.encode_image(image)
            diff = float((base["logits"] - seg.query_logits(feats)).abs().max())
            agree = float(np.mean(base["labels"] == res.label_map))
            stages = stage_times(seg, image, feats, args.repeats)
            thr = throughput(seg, size, args.batch_sizes, len(feats.boxes), args.repeats, args.window_batch)
            best = _best(thr)["batch"] if thr else 1
            roof = backbone_roofline(seg, best * len(feats.boxes), feats.window_size, best, args.repeats)
            # What the image side could reach: the backbone at the matmul peak and every other
            # stage as measured (bound), or the backbone's matrix products alone (ceiling).
            at_peak = roof["backbone_gflop_per_image"] / roof["matmul_peak_gflops_per_s"] * 1e3
            others = sum(v for k, v in stages.items() if k != "backbone")
            folder_base = image_base + text_cold  # the baseline encodes the text again for every image
            row = {
                "head": head, "dtype": str(dt).replace("torch.", ""),
                "protocol": describe_protocol(protocol(head)), "config": f"configs/_base_/{head}.py",
                "templates": len(seg.text.templates), "windows": len(feats.boxes),
                "ms_per_image": latency, "images_per_s": 1e3 / latency,
                "stages_ms": dict(stages, text_cached=text_warm),
                "text_ms_cold": text_cold, "text_ms_cached": text_warm,
                "baseline_image_ms": image_base, "baseline_with_text_ms": folder_base,
                "baseline_stages_ms": base["timings"],
                "speedup_image": image_base / latency, "speedup_folder": folder_base / latency,
                "speedup_bound_backbone_at_peak": image_base / (others + at_peak),
                "speedup_ceiling_matmuls_only": image_base / at_peak,
                "max_logit_diff": diff, "labels_identical": agree == 1.0, "label_agreement": agree,
                "roofline": roof, "throughput": thr,
            }
            rows.append(row)
            print(f"{head:10s} {row['dtype']:8s} {row['windows']:2d} win {latency:8.1f} ms/img  baseline "
                  f"{image_base:8.1f}  x{row['speedup_image']:.2f} image  x{row['speedup_folder']:.1f} folder  "
                  f"backbone {roof['fraction_of_matmul_peak']:.0%} of matmul peak  diff {diff:.1e}  "
                  f"labels {agree:.2%} equal", flush=True)
    return {"device": str(device), "device_name": roofline.device_name(device),
            "dtypes": [str(d).replace("torch.", "") for d in dtypes], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "model": args.clip_model, "pretrained": args.pretrained, "image": args.size,
            "classes": classes, "rows": rows}


def _best(throughput_rows) -> Dict[str, float]:
    """The throughput row with the most images/s ({} when none)."""
    return max(throughput_rows, key=lambda t: t["images_per_s"]) if throughput_rows else {}


def markdown(info) -> str:
    lines = [f"{info['device_name']} ({info['device']}, {info['threads']} threads), torch {info['torch']}, "
             f"{info['model']} weights={info['pretrained']}, image {info['image']}, {info['classes']}", "",
             "| head | dtype | windows | batch-1 ms | best images/s (batch) | peak MB | baseline ms | "
             "speed-up (text cached in both) | vs baseline encoding text | bound: backbone at matmul peak | "
             "ceiling: backbone matmuls only | max logit diff | labels |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        best = _best(r["throughput"])
        thr = f"{best['images_per_s']:.2f} ({best['batch']})" if best else "-"
        mem = f"{best['peak_memory_mb']:.0f}" if best else "-"
        labels = "identical" if r["labels_identical"] else f"{r['label_agreement']:.2%} equal"
        lines.append(f"| {r['head']} | {r['dtype']} | {r['windows']} | {r['ms_per_image']:.1f} | {thr} | {mem} | "
                     f"{r['baseline_image_ms']:.0f} | {r['speedup_image']:.2f}x | {r['speedup_folder']:.1f}x | "
                     f"{r['speedup_bound_backbone_at_peak']:.2f}x | {r['speedup_ceiling_matmuls_only']:.2f}x | "
                     f"{r['max_logit_diff']:.1e} | {labels} |")
    lines += ["", "Stages (ms, one image, all windows in one batch):", "",
              "| head | dtype | windows | backbone | head | logits | refine | decode | text (cached) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        s = r["stages_ms"]
        lines.append(f"| {r['head']} | {r['dtype']} | {s['windows']:.1f} | {s['backbone']:.1f} | {s['head']:.1f} | "
                     f"{s['logits']:.1f} | {s['refine']:.1f} | {s['decode']:.1f} | {s['text_cached']:.2f} |")
    lines += ["", "Backbone roofline at the best batch (matrix products only; peak measured with the "
              "backbone's own shapes):", "",
              "| head | dtype | windows per pass | backbone ms | GFLOP / image | achieved GFLOP/s | "
              "matmul peak GFLOP/s | of peak | of datasheet bf16 peak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        f = r["roofline"]
        nominal = "-" if f["fraction_of_nominal_bf16"] is None else f"{f['fraction_of_nominal_bf16']:.0%}"
        lines.append(f"| {r['head']} | {r['dtype']} | {f['windows_per_pass']} | {f['backbone_ms']:.1f} | "
                     f"{f['backbone_gflop_per_image']:.1f} | {f['backbone_gflops_per_s']:.0f} | "
                     f"{f['matmul_peak_gflops_per_s']:.0f} | {f['fraction_of_matmul_peak']:.0%} | {nominal} |")
    if any(r["throughput"] for r in info["rows"]):
        lines += ["", "Throughput (already decoded images; all windows of a batch in shared forward passes):", "",
                  "| head | dtype | images per batch | images/s | peak MB |", "|---|---|---|---|---|"]
        for r in info["rows"]:
            for t in r["throughput"]:
                lines.append(f"| {r['head']} | {r['dtype']} | {t['batch']} | {t['images_per_s']:.2f} | "
                             f"{t['peak_memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip-model", default="ViT-B-16")
    p.add_argument("--pretrained", default="none", help="open_clip tag, local file, or none (random weights)")
    heads = available_heads()
    p.add_argument("--heads", nargs="+", default=[h for h in HEADS if h in heads], choices=heads,
                   help="heads to time, each under its shipped protocol configs/_base_/HEAD.py")
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the test images")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", nargs="+", default=["fp32"],
                   help="one or more of fp32, fp16, bf16 (the baseline is fp32)")
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[1],
                   help="images per predict call for the throughput table (e.g. 1 16 64 256 on a GPU)")
    p.add_argument("--window-batch", type=int, default=0,
                   help="cap on windows per forward pass (default 0: all windows of a batch together)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-repeats", type=int, default=None, help="default: --repeats")
    p.add_argument("--out", default=None, help="folder for benchmark.json and benchmark.md")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", args.size):
        p.error(f"--size must be WIDTHxHEIGHT in pixels, e.g. 500x375 (got {args.size!r})")
    if any(b < 1 for b in args.batch_sizes):
        p.error("--batch-sizes must be positive")
    if args.repeats < 1 or (args.baseline_repeats is not None and args.baseline_repeats < 1):
        p.error("--repeats and --baseline-repeats must be positive")
    if args.baseline_repeats is None:
        args.baseline_repeats = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    info = run(args)
    table = markdown(info)
    print(table)
    if args.out:
        write_json(os.path.join(args.out, "benchmark.json"), info)
        with atomic_path(os.path.join(args.out, "benchmark.md")) as tmp, open(tmp, "w") as fh:
            fh.write(table)
        print(f"wrote {os.path.join(args.out, 'benchmark.json')} and benchmark.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
