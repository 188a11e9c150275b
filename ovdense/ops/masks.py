"""Binary-mask encodings in COCO form: run-length encoding and tight boxes.

The one place that turns an ``(H, W)`` mask into COCO's RLE (``counts`` as ``str``, so the
result goes straight into JSON) and into a COCO ``(x, y, width, height)`` box. Used by the COCO
evaluation (prediction results) and by the synthetic worlds' COCO exports (ground truth).
pycocotools is imported only when a mask is encoded.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["encode_mask", "mask_to_bbox"]


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of a boolean ``(H, W)`` mask, ``counts`` as ``str`` (JSON-ready).

    Any non-boolean mask is cast to ``uint8`` first, as pycocotools expects (so values other
    than 0 and 1 are taken modulo 256). Returns ``{"size": [H, W], "counts": str}``.
    """
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_to_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Tight box of the mask's nonzero pixels, COCO ``(x, y, width, height)`` in whole pixels.

    An empty mask gives ``(0, 0, 0, 0)``. The values equal pycocotools' ``toBbox`` of the
    mask's RLE (as ints rather than floats).
    """
    mask = np.asarray(mask)
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
