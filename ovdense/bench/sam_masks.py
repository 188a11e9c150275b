"""Automatic SAM masks: ovdense's generator against segment-anything's, same model, same image.

``benchmark_automatic_masks()`` times :class:`ovdense.sam.AutomaticMaskGenerator` and
``segment_anything.SamAutomaticMaskGenerator`` in the same process on the same ``Sam`` and
image, per setting, and checks that both give the same records. Both timings include one
image-encoder pass (each generator embeds the image itself, as SAM's does); the encoder is also
timed alone, and the ``*_after_encoder_s`` figures subtract it.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

#: The settings timed by default: SAM's defaults, a cheap grid, and the cheap grid with both
#: thresholds at 0 (random weights keep no mask at SAM's thresholds, so this one exercises the
#: post-processing: stability scores, boxes, NMS and records of every mask).
DEFAULT_SETTINGS: Dict[str, Dict[str, Any]] = {
    "sam_defaults": {},
    "16_points": dict(points_per_side=16),
    "16_points_thresholds_0": dict(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0),
}


def same_records(ours: List[Dict[str, Any]], theirs: List[Dict[str, Any]]) -> bool:
    """Whether two record lists are equal (masks by value; NaN stability scores of empty masks
    count as equal)."""
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        if a.keys() != b.keys():
            return False
        for key, y in b.items():
            x = a[key]
            if isinstance(y, np.ndarray):
                if not (isinstance(x, np.ndarray) and x.shape == y.shape and np.array_equal(x, y)):
                    return False
            elif isinstance(y, float) and math.isnan(y):
                if not (isinstance(x, float) and math.isnan(x)):
                    return False
            elif x != y:
                return False
    return True


def benchmark_automatic_masks(model_type: str = "vit_b", checkpoint: Optional[Union[str, os.PathLike]] = None,
                              model_config: Union[str, os.PathLike, Mapping[str, Any], None] = None,
                              image: Optional[np.ndarray] = None, image_size: Tuple[int, int] = (480, 640),
                              settings: Optional[Mapping[str, Mapping[str, Any]]] = None, repeats: int = 1,
                              threads: Optional[int] = None, device: str = "cpu", seed: int = 0,
                              check: bool = True) -> Dict[str, Any]:
    """Seconds per image of ovdense's automatic SAM masks and of segment-anything's.

    Args:
        model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"`` (ignored with ``model_config``).
        checkpoint: local SAM weights; None: random weights (seeded by ``seed``).
        model_config: sizes of a small SAM instead (the tiny fixture's ``model.json``).
        image: a uint8 RGB ``(H, W, 3)`` image; None: uniform noise of ``image_size`` (``(H, W)``).
        settings: ``{name: knobs}`` (``SamAutomaticMaskGenerator``'s knob names); None:
            :data:`DEFAULT_SETTINGS`.
        repeats: runs per generator and setting; the fastest is reported.
        threads: ``torch.set_num_threads`` for the run (None: leave as is).
        device: where the model runs.
        check: compare the records of both generators (``identical`` in the result).

    Returns:
        ``{"model", "device", "threads", "image_size", "encoder_s", "settings": {name: {"knobs",
        "official_s", "ours_s", "official_after_encoder_s", "ours_after_encoder_s", "speedup",
        "speedup_after_encoder", "masks", "identical"}}}``; ``speedup`` = official / ours.
    """
    from segment_anything import SamAutomaticMaskGenerator

    from ..sam import AutomaticMaskGenerator, build_sam, embed_image

    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    sam = build_sam(model_type, checkpoint, model_config, device=device)
    if image is None:
        h, w = (int(v) for v in image_size)
        image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = np.ascontiguousarray(image)
    repeats = max(1, int(repeats))

    def best(fn) -> Tuple[float, Any]:
        times, out = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    with torch.no_grad():
        encoder_s, _ = best(lambda: embed_image(sam, image))
    report: Dict[str, Any] = {
        "model": "custom" if model_config is not None else model_type,
        "weights": "random" if checkpoint is None else os.fspath(checkpoint),
        "device": str(device), "threads": torch.get_num_threads(),
        "image_size": [int(image.shape[0]), int(image.shape[1])], "repeats": repeats,
        "encoder_s": round(encoder_s, 3), "settings": {},
    }
    for name, knobs in (DEFAULT_SETTINGS if settings is None else settings).items():
        knobs = dict(knobs)
        official_s, theirs = best(lambda: SamAutomaticMaskGenerator(sam, **knobs).generate(image))
        ours_s, ours = best(lambda: AutomaticMaskGenerator(sam, **knobs).generate(image).records())
        after_official, after_ours = max(official_s - encoder_s, 1e-9), max(ours_s - encoder_s, 1e-9)
        report["settings"][name] = {
            "knobs": knobs,
            "official_s": round(official_s, 3), "ours_s": round(ours_s, 3),
            "official_after_encoder_s": round(after_official, 3), "ours_after_encoder_s": round(after_ours, 3),
            "speedup": round(official_s / ours_s, 2), "speedup_after_encoder": round(after_official / after_ours, 2),
            "masks": len(theirs),
            "identical": same_records(ours, theirs) if check else None,
        }
    return report


def format_automatic_masks(report: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_automatic_masks`'s result."""
    lines = [f"SAM automatic masks: {report['model']} ({report['weights']} weights), image "
             f"{report['image_size'][0]}x{report['image_size'][1]}, {report['device']}, {report['threads']} threads, "
             f"best of {report['repeats']}",
             f"image encoder (in both): {report['encoder_s']:.2f} s",
             f"{'setting':<26}{'SAM s':>9}{'ours s':>9}{'speedup':>9}{'SAM-enc':>9}{'ours-enc':>9}{'speedup':>9}"
             f"{'masks':>7}  same"]
    for name, r in report["settings"].items():
        lines.append(f"{name:<26}{r['official_s']:>9.2f}{r['ours_s']:>9.2f}{r['speedup']:>8.2f}x"
                     f"{r['official_after_encoder_s']:>9.2f}{r['ours_after_encoder_s']:>9.2f}"
                     f"{r['speedup_after_encoder']:>8.2f}x{r['masks']:>7}  {r['identical']}")
    return "\n".join(lines)
