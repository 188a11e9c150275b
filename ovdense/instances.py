"""Turn semantic results into scored instances (masks, boxes) through pluggable strategies.

A strategy is a function ``(result, **options) -> Detections`` registered in
:data:`INSTANCE_STRATEGIES`. ``result`` is anything with ``label_map`` (``(H, W)`` int),
``class_names`` and optionally ``scores`` (``(C, H, W)`` probabilities), such as
:class:`ovdense.types.SegmentationResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "Detections",
    "INSTANCE_STRATEGIES",
    "build_instances",
    "connected_components",
    "is_background_name",
    "register_strategy",
]


@dataclass
class Detections:
    """Instances of one image, numpy-first, with ``supervision.Detections`` field names.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in pixels (``x2 = x1 + width``).
        mask: ``(N, H, W)`` bool instance masks.
        confidence: ``(N,)`` float32 scores.
        class_id: ``(N,)`` int64 class indices into the vocabulary.
        class_name: ``N`` class names.
    """

    xyxy: np.ndarray
    mask: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4) or self.mask.ndim != 3 or len(self.mask) != n:
            raise ValueError("xyxy must be (N, 4) and mask (N, H, W)")
        if len(self.confidence) != n or len(self.class_id) != n or len(self.class_name) != n:
            raise ValueError("confidence, class_id and class_name need one entry per instance")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls, height: int, width: int) -> "Detections":
        """No instances, with correctly shaped empty arrays."""
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            mask=np.zeros((0, height, width), dtype=bool),
            confidence=np.zeros((0,), dtype=np.float32),
            class_id=np.zeros((0,), dtype=np.int64),
            class_name=[],
        )


InstanceStrategy = Callable[..., Detections]

#: name -> strategy; add new ones with :func:`register_strategy`.
INSTANCE_STRATEGIES: dict[str, InstanceStrategy] = {}


def register_strategy(name: str) -> Callable[[InstanceStrategy], InstanceStrategy]:
    """Decorator that adds a strategy to :data:`INSTANCE_STRATEGIES` under ``name``."""

    def wrap(fn: InstanceStrategy) -> InstanceStrategy:
        if name in INSTANCE_STRATEGIES:
            raise KeyError(f"instance strategy {name!r} is already registered")
        INSTANCE_STRATEGIES[name] = fn
        return fn

    return wrap


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
    try:
        fn = INSTANCE_STRATEGIES[strategy]
    except KeyError:
        raise KeyError(
            f"unknown instance strategy {strategy!r}; known: {', '.join(sorted(INSTANCE_STRATEGIES))}"
        ) from None
    return fn(result, **options)
