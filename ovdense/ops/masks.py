"""Binary-mask encodings in COCO form: run-length encoding and tight boxes.

The one place that turns an ``(H, W)`` mask into COCO's RLE (``counts`` as ``str``, so the
result goes straight into JSON) and into a COCO ``(x, y, width, height)`` box. Used by the COCO
evaluation (prediction results) and by the synthetic worlds' COCO exports (ground truth).
pycocotools is imported only when a mask is encoded.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["encode_mask", "mask_to_bbox", "masks_to_boxes", "mask_iou_matrix", "greedy_nms"]


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


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` (``x2 = x1 + width``) of ``(N, H, W)``
    boolean masks in one vectorised pass; empty masks give zero boxes. Row ``i`` equals
    :func:`mask_to_bbox` of ``masks[i]`` with width and height added."""
    masks = np.asarray(masks, dtype=bool)
    n = len(masks)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    nonempty = rows.any(1)
    y1 = rows.argmax(1)
    y2 = rows.shape[1] - rows[:, ::-1].argmax(1)
    x1 = cols.argmax(1)
    x2 = cols.shape[1] - cols[:, ::-1].argmax(1)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    boxes[~nonempty] = 0
    return boxes


def mask_iou_matrix(masks: np.ndarray, others: np.ndarray = None, rows_per_step: int = 256) -> np.ndarray:
    """``(N, M)`` IoU of every pair of boolean masks ``(N, H, W)`` x ``(M, H, W)`` (``others``
    defaults to ``masks``), exact: pixel counts accumulate in float64 over bands of rows, so
    memory stays at ``(N + M) x rows_per_step x W`` floats. Two empty masks have IoU 0."""
    import torch

    a = torch.from_numpy(np.ascontiguousarray(masks, dtype=bool))
    b = a if others is None else torch.from_numpy(np.ascontiguousarray(others, dtype=bool))
    n, m, height = a.shape[0], b.shape[0], a.shape[1]
    if n == 0 or m == 0:
        return np.zeros((n, m), np.float64)
    inter = torch.zeros(n, m, dtype=torch.float64)
    for r0 in range(0, height, rows_per_step):
        fa = a[:, r0:r0 + rows_per_step].reshape(n, -1).float()
        fb = fa if others is None else b[:, r0:r0 + rows_per_step].reshape(m, -1).float()
        inter += (fa @ fb.T).double()  # exact: each band has < 2**24 pixels
    area_a = a.reshape(n, -1).sum(1).double()
    area_b = area_a if others is None else b.reshape(m, -1).sum(1).double()
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter)).numpy()


def greedy_nms(iou: np.ndarray, scores: np.ndarray, threshold: float,
               groups: np.ndarray = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first: an entry is dropped
    when its IoU with a kept, higher-scored entry (of the same group, when ``groups`` is given)
    exceeds ``threshold``. Ties in score keep the earlier index first (stable sort)."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(scores), dtype=bool)
    same = None if groups is None else (np.asarray(groups)[:, None] == np.asarray(groups)[None, :])
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        hit = iou[i] > threshold
        if same is not None:
            hit &= same[i]
        suppressed |= hit
    return np.asarray(keep, dtype=np.int64)
