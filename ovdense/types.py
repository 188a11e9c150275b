"""Result types: numpy-first dataclasses returned by the public API."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np


@dataclass
class SegmentationResult:
    """Semantic segmentation of one image.

    Attributes:
        label_map: ``(H, W)`` int64 class index per pixel, at the input image's size.
        class_names: name of each class index (class 0 is background when the vocabulary has one).
        scores: optional ``(C, H, W)`` float32 class probabilities (after the synonym max
            and the area rule), present when ``return_scores=True``.
        path: source file, when the image came from one.
        timings: milliseconds per stage (``load``, ``features``, ``logits``, ``refine``, ``decode``).
    """

    label_map: np.ndarray
    class_names: List[str]
    scores: Optional[np.ndarray] = None
    path: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.label_map.shape[0]), int(self.label_map.shape[1])

    def class_areas(self) -> Dict[str, int]:
        """Pixel count of each class present in the label map."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.class_names))
        return {self.class_names[i]: int(c) for i, c in enumerate(counts) if c}

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"path": self.path, "height": self.image_size[0], "width": self.image_size[1],
                "class_names": list(self.class_names), "class_areas": self.class_areas(),
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}


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
    class_name: List[str] = field(default_factory=list)

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
