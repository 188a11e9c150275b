"""Per-frame latency of one shipped config on camera-sized frames (``benchmark --latency``).

The segmenter is built from the config (default ``configs/latency/latency_640x480.py``): every
section as the config gives it, except the backbone's weights (``--clip-model`` /
``--pretrained``: random weights of the config's architecture by default), device and dtype.
The vocabulary is encoded once and passed to every ``predict`` call, as a robot would. With
random weights the text embeddings are random unit vectors of the vocabulary's shape (encoding
text with a random text tower only costs time; the per-frame cost depends on the number of
queries, not on their values); with ``--pretrained`` the text encoder runs and is timed once.

After ``warmup(size)``, each of ``--frames`` synthetic frames (random uint8, a few distinct
ones cycled, all made before timing) is timed as one ``predict`` call, wall clock, device
synchronised. Reported: p50 / p90 / max ms per frame and per stage (the result's
``timings``: load, features, logits, refine, decode), frames per second (1000 / mean ms),
the device and torch's CPU threads.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

import ovdense
from ovdense.bench import roofline
from ovdense.config import configs_dir, find_config, load_config, resolve_names_path, segmenter_kwargs
from ovdense.runtime import resolve_device, resolve_dtype, synchronize

#: The class list benchmarks use when a config names none (inside the shipped configs folder).
VOC21_NAMES = "names/cls_voc21.txt"

#: The config timed by default.
DEFAULT_CONFIG = "latency/latency_640x480"
#: Stages of ``SegmentationResult.timings``, in pipeline order.
STAGES = ("load", "features", "logits", "refine", "decode")
#: Distinct synthetic frames cycled through the timed calls.
DISTINCT_FRAMES = 4


def percentiles(values: Sequence[float]) -> Dict[str, float]:
    """p50, p90 (linear interpolation), max and mean of ``values`` (ms)."""
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "max": float(a.max()),
            "mean": float(a.mean())}


def frame_size(cfg, size: Optional[str]) -> tuple:
    """(height, width) of the frames: ``size`` (``WIDTHxHEIGHT``, as the benchmark's ``--size``),
    else the config's ``_frame_size`` (H, W), else 480x640."""
    if size:
        w, h = (int(v) for v in size.split("x"))
        return h, w
    fs = cfg.get("_frame_size") if hasattr(cfg, "get") else None
    return tuple(int(v) for v in fs) if fs else (480, 640)


def build(config: str, clip_model: Optional[str], pretrained: Optional[str], device, dtype):
    """(segmenter, config, kwargs as run) for ``config`` with the benchmark's backbone."""
    path = find_config(config) if not os.path.isfile(config) else config
    cfg = load_config(path)
    kwargs = segmenter_kwargs(cfg)
    spec = dict(kwargs.pop("backbone", None) or {})
    model = clip_model or spec.get("clip_model", "ViT-B-16")
    kwargs.update(device=device, dtype=dtype)
    backbone = ovdense.CLIPBackbone.load(model, pretrained, pos_interp=spec.get("pos_interp", "scale_factor"),
                                         device=device)
    seg = ovdense.OVSegmenter(backbone=backbone, **dict(kwargs, text_encoder=dict(
        kwargs.get("text_encoder") or {}, cache_dir="" if pretrained is None else None)))
    return seg, cfg, path, kwargs


def encode_classes(seg: ovdense.OVSegmenter, cfg, random_text: bool):
    """The config's classes (VOC21's name file when it names none), encoded once; returns
    (EncodedVocabulary, ms spent encoding, how)."""

    spec = cfg.get("classes") or {}
    if spec.get("names"):
        names, background = resolve_names_path(spec.get("names"), cfg), spec.get("background", "first")
    else:
        names, background = os.path.join(configs_dir(), VOC21_NAMES), "first"
    vocab = ovdense.build_vocabulary(names, background)
    t0 = time.perf_counter()
    if random_text:
        gen = torch.Generator().manual_seed(0)
        emb = torch.randn(vocab.num_queries, seg.backbone.embed_dim, generator=gen)
        encoded = seg.encode_vocabulary(vocab, embeddings=emb)
        how = "random embeddings (random weights)"
    else:
        encoded = seg.encode_vocabulary(vocab)
        how = f"text encoder, {len(seg.text.templates)} templates"
    return encoded, (time.perf_counter() - t0) * 1e3, how


def run(args) -> Dict[str, object]:
    torch.manual_seed(0)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype[0], device)
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    config = args.config or DEFAULT_CONFIG
    seg, cfg, path, kwargs = build(config, args.clip_model, pretrained, device, dtype)
    height, width = frame_size(cfg, args.size)
    encoded, vocab_ms, how = encode_classes(seg, cfg, random_text=pretrained is None)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(DISTINCT_FRAMES)]
    warm_ms = [seg.warmup((height, width)) for _ in range(args.warmup)]
    totals: List[float] = []
    stages: Dict[str, List[float]] = {s: [] for s in STAGES}
    out_shape = None
    with torch.no_grad():
        for i in range(args.frames):
            frame = frames[i % len(frames)]
            synchronize(device)
            t0 = time.perf_counter()
            res = seg.predict(frame, vocabulary=encoded, resolution=args.resolution)
            synchronize(device)
            totals.append((time.perf_counter() - t0) * 1e3)
            for s in STAGES:
                stages[s].append(float(res.timings.get(s, 0.0)))
            out_shape = list(np.asarray(res.label_map).shape)
    total = percentiles(totals)
    fixed = time_fixed_size(seg, encoded, frames, args) if getattr(args, "fixed_size", False) else None
    feats = seg.encode_image(frames[0])
    root = os.path.abspath(configs_dir())
    config_name = os.path.abspath(path)
    if config_name.startswith(root + os.sep):
        config_name = "configs/" + os.path.relpath(config_name, root)
    info = {
        "mode": "latency", "config": config_name.replace(os.sep, "/"),
        "device": str(device), "device_name": roofline.device_name(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "model": args.clip_model, "pretrained": args.pretrained,
        "dtype": str(dtype).replace("torch.", ""),
        "head": seg.head.__class__.__name__, "short_side": kwargs.get("preprocess", {}).get("short_side"),
        "windows": len(feats.boxes), "model_input": list(feats.resized_size),
        "tokens": [int(v) for v in feats.features.shape[-2:]],
        "frame": [height, width], "resolution": args.resolution, "output": out_shape,
        "classes": encoded.vocabulary.num_classes, "queries": encoded.vocabulary.num_queries,
        "vocabulary": how, "vocabulary_ms": vocab_ms, "warmup_ms": warm_ms,
        "frames": args.frames, "ms_per_frame": total,
        "stages_ms": {s: percentiles(v) for s, v in stages.items()},
        "frames_per_s": 1e3 / total["mean"], "frames_per_s_p50": 1e3 / total["p50"],
        "per_frame_ms": totals,
    }
    if fixed is not None:
        info["fixed_size"] = dict(fixed, speedup_p50=total["p50"] / fixed["ms_per_frame"]["p50"],
                                  speedup_mean=total["mean"] / fixed["ms_per_frame"]["mean"])
    if fixed is not None:
        f = info["fixed_size"]
        print(f"fixed-size step{' (CUDA graph)' if f['cuda_graph'] else ''}: p50 {f['ms_per_frame']['p50']:.1f} ms, "
              f"{f['speedup_p50']:.2f}x predict's p50, label maps equal: {f['labels_equal']}", flush=True)
    print(f"latency {info['config']}: {info['head']} short {info['short_side']}, {info['windows']} window(s) "
          f"{info['model_input'][0]}x{info['model_input'][1]}, frames {height}x{width} -> {out_shape}: "
          f"p50 {total['p50']:.1f} p90 {total['p90']:.1f} max {total['max']:.1f} ms, "
          f"{info['frames_per_s']:.2f} frames/s ({info['device_name']}, {info['threads']} threads)", flush=True)
    return info


def time_fixed_size(seg: ovdense.OVSegmenter, encoded, frames: Sequence[np.ndarray], args) -> Dict[str, object]:
    """Time :class:`~ovdense.fixed_size.FixedSizePredictor` on the same frames, after the same number
    of warm-up calls (the first records the CUDA graph with ``--cuda-graph``), and check its label
    maps against ``predict``'s on each distinct frame."""
    height, width = frames[0].shape[:2]
    fast = seg.fixed_size((height, width), encoded, resolution=args.resolution, cuda_graph=args.cuda_graph)
    t0 = time.perf_counter()
    fast(frames[0])
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, args.warmup - 1)):
        fast(frames[0])
    equal = all(np.array_equal(fast(f).label_map, seg.predict(f, vocabulary=encoded, resolution=args.resolution)
                               .label_map) for f in frames)
    totals: List[float] = []
    steps: List[float] = []
    for i in range(args.frames):
        synchronize(seg.device)
        t0 = time.perf_counter()
        res = fast(frames[i % len(frames)])
        synchronize(seg.device)
        totals.append((time.perf_counter() - t0) * 1e3)
        steps.append(res.timings["step"])
    return {"cuda_graph": bool(args.cuda_graph), "first_call_ms": first_ms, "labels_equal": bool(equal),
            "ms_per_frame": percentiles(totals), "step_ms": percentiles(steps), "per_frame_ms": totals}


def markdown(info) -> str:
    t = info["ms_per_frame"]
    lines = [f"Latency of `{info['config']}`: {info['device_name']} ({info['device']}, {info['threads']} torch "
             f"threads), torch {info['torch']}, {info['model']} weights={info['pretrained']}, {info['dtype']}", "",
             f"{info['head']}, short side {info['short_side']}, {info['windows']} window(s) of "
             f"{info['model_input'][0]}x{info['model_input'][1]} ({info['tokens'][0]}x{info['tokens'][1]} tokens); "
             f"frames {info['frame'][0]}x{info['frame'][1]} (HxW), output at `resolution='{info['resolution']}'` "
             f"{info['output'][0]}x{info['output'][1]}; {info['classes']} classes / {info['queries']} queries "
             f"({info['vocabulary']}, encoded once in {info['vocabulary_ms']:.0f} ms and passed per call); "
             f"{info['frames']} frames after warm-up.", "",
             "| stage | p50 ms | p90 ms | max ms |", "|---|---|---|---|"]
    for s, v in info["stages_ms"].items():
        lines.append(f"| {s} | {v['p50']:.1f} | {v['p90']:.1f} | {v['max']:.1f} |")
    lines.append(f"| **frame (predict call)** | **{t['p50']:.1f}** | **{t['p90']:.1f}** | **{t['max']:.1f}** |")
    lines += ["", f"{info['frames_per_s']:.2f} frames/s (1000 / mean ms per frame)."]
    fixed = info.get("fixed_size")
    if fixed is not None:
        f = fixed["ms_per_frame"]
        lines += ["", f"FixedSizePredictor{' with a CUDA graph' if fixed['cuda_graph'] else ''} on the same frames: "
                      f"p50 {f['p50']:.1f} ms, p90 {f['p90']:.1f} ms, max {f['max']:.1f} ms "
                      f"({fixed['speedup_p50']:.2f}x predict's p50; first call {fixed['first_call_ms']:.0f} ms); "
                      f"label maps equal to predict's: {fixed['labels_equal']}."]
    return "\n".join(lines) + "\n"
