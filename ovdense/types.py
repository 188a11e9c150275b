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
