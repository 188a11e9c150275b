"""Instances drawn on their image: translucent masks, boxes and ``name 0.87`` labels."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np


def draw_detections(image: np.ndarray, detections: Any, class_names: Optional[Sequence[str]] = None,
                    alpha: float = 0.45, thickness: int = 2) -> np.ndarray:
    """A copy of the uint8 RGB ``image`` with each detection's mask blended in its class
    colour, its box and a label (class name and confidence). Later detections are drawn over
    earlier ones; detections come in the order given. Masks of another size than the image
    are resized (nearest)."""
    import cv2

    from .colors import class_colors

    out = np.ascontiguousarray(image[..., :3], dtype=np.uint8).copy()
    h, w = out.shape[:2]
    n = len(detections)
    if n == 0:
        return out
    ids = np.asarray(detections.class_id)
    top = max(int(ids.max()) + 1, len(class_names or ()), 1)
    colours = class_colors(top + 1)
    colour_of = [tuple(int(c) for c in colours[i + 1 if i >= 0 else 0]) for i in ids]
    if detections.mask is not None:
        for i in range(n):
            mask = np.asarray(detections.mask[i], dtype=np.uint8)
            if mask.shape != (h, w):
                mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            m = mask.astype(bool)
            out[m] = (out[m] * (1 - alpha) + np.asarray(colour_of[i]) * alpha).astype(np.uint8)
    sy = h / detections.mask.shape[1] if detections.mask is not None else 1.0
    sx = w / detections.mask.shape[2] if detections.mask is not None else 1.0
    scale = max(0.35, min(h, w) / 700)
    for i in range(n):
        x1, y1, x2, y2 = (detections.xyxy[i] * np.array([sx, sy, sx, sy])).round().astype(int)
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), colour_of[i], thickness)
        name = detections.class_name[i] if i < len(detections.class_name) else ""
        text = f"{name or 'region'} {float(detections.confidence[i]):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(int(y1), th + base)
        cv2.rectangle(out, (int(x1), ty - th - base), (int(x1) + tw, ty), colour_of[i], -1)
        cv2.putText(out, text, (int(x1), ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out
