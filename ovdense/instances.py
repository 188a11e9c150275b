"""Turn semantic results into scored instances (masks, boxes) through pluggable strategies.

A strategy is a function ``(result, **options) -> Detections`` registered in
:data:`INSTANCE_STRATEGIES`. ``result`` is anything with ``label_map`` (``(H, W)`` int),
``class_names`` and optionally ``scores`` (``(C, H, W)`` probabilities), such as
:class:`ovdense.types.SegmentationResult`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .registry import INSTANCE_STRATEGIES
from .types import Detections

__all__ = [
    "Detections",
    "INSTANCE_STRATEGIES",
    "build_instances",
    "connected_components",
    "is_background_name",
    "register_strategy",
]


InstanceStrategy = Callable[..., Detections]

#: name -> strategy; add new ones with ``@register_strategy("name")``.
register_strategy = INSTANCE_STRATEGIES.register


def is_background_name(name: str) -> bool:
    """True when the first synonym of a class name is ``background`` (any case)."""
    first = name.replace(";", ",").split(",")[0].strip().lower()
    return first == "background"


@register_strategy("connected_components")
def connected_components(
    result: Any,
    *,
    min_area: int = 0,
    background: bool | None = None,
    connectivity: int = 8,
) -> Detections:
    """One instance per connected component of each foreground class in the label map.

    Args:
        result: object with ``label_map``, ``class_names`` and optional ``scores``.
        min_area: drop components with fewer pixels than this.
        background: class 0 is background and yields no instances; ``None`` decides from the
            name of class 0 (``"background"``) or a ``has_background`` attribute of ``result``.
        connectivity: 8 (default) or 4.

    The confidence is the mean probability of the component's class over the component when
    ``result.scores`` is present, else 1.0.
    """
    import cv2

    label_map = np.asarray(result.label_map)
    names = list(result.class_names)
    h, w = label_map.shape
    if background is None:
        background = bool(getattr(result, "has_background", False)) or (
            bool(names) and is_background_name(names[0])
        )
    scores = getattr(result, "scores", None)
    boxes, masks, confs, ids = [], [], [], []
    for cls in np.unique(label_map):
        cls = int(cls)
        if background and cls == 0:
            continue
        binary = (label_map == cls).astype(np.uint8)
        count, comp, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
        if count <= 1:
            continue
        if scores is not None:
            sums = np.bincount(comp.ravel(), weights=np.asarray(scores[cls], np.float64).ravel(),
                               minlength=count)
            mean = sums / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
        for i in range(1, count):
            x, y, bw, bh, area = (int(v) for v in stats[i, :5])
            if area < min_area:
                continue
            boxes.append((x, y, x + bw, y + bh))
            masks.append(comp == i)
            confs.append(float(mean[i]) if scores is not None else 1.0)
            ids.append(cls)
    if not boxes:
        return Detections.empty(h, w)
    return Detections(
        xyxy=np.asarray(boxes, dtype=np.float32),
        mask=np.stack(masks).astype(bool),
        confidence=np.asarray(confs, dtype=np.float32),
        class_id=np.asarray(ids, dtype=np.int64),
        class_name=[names[i] if i < len(names) else str(i) for i in ids],
    )


def build_instances(result: Any, strategy: str = "connected_components", **options: Any) -> Detections:
    """Run the registered ``strategy`` on ``result``."""
    return INSTANCE_STRATEGIES.get(strategy)(result, **options)
