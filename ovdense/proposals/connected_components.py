"""Instances from a semantic result: one per connected component of each class."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..registry import PROPOSALS
from ..structures import Detections
from .base import ProposalSource


@PROPOSALS.register_module("connected_components")
class ConnectedComponents(ProposalSource):
    """One instance per connected component of each class in the label map.

    The background class (when the result has one, ``result.has_background``) and
    unlabelled pixels yield no instances. The confidence is the mean probability of the
    component's class over the component when ``result.scores`` is present, else 1.0.

    Args:
        min_area: drop components with fewer pixels than this.
        connectivity: 8 (default) or 4.
    """

    needs_result = True

    def __init__(self, min_area: int = 0, connectivity: int = 8) -> None:
        if connectivity not in (4, 8):
            raise ValueError(f"connected_components: connectivity must be 4 or 8, got {connectivity}")
        self.min_area = int(min_area)
        self.connectivity = int(connectivity)

    def __call__(self, context: Any = None, vocabulary: Any = None, result: Optional[Any] = None) -> Detections:
        """Instances of ``result``'s label map (``context`` and ``vocabulary`` are not read)."""
        import cv2

        if result is None:
            raise ValueError("connected_components reads the semantic result: call it with result=...")
        label_map = np.asarray(result.label_map)
        names = list(result.class_names)
        h, w = label_map.shape
        scores = getattr(result, "scores", None)
        boxes, masks, confs, ids = [], [], [], []
        for cls in np.unique(label_map):
            cls = int(cls)
            if cls < 0 or (result.has_background and cls == 0):
                continue
            binary = (label_map == cls).astype(np.uint8)
            count, comp, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=self.connectivity)
            if scores is not None:
                sums = np.bincount(comp.ravel(), weights=np.asarray(scores[cls], np.float64).ravel(), minlength=count)
                mean = sums / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
            for i in range(1, count):
                x, y, bw, bh, area = (int(v) for v in stats[i, :5])
                if area < self.min_area:
                    continue
                boxes.append((x, y, x + bw, y + bh))
                masks.append(comp == i)
                confs.append(float(mean[i]) if scores is not None else 1.0)
                ids.append(cls)
        if not boxes:
            return Detections.empty(h, w)
        return Detections(xyxy=np.asarray(boxes, dtype=np.float32), mask=np.stack(masks).astype(bool),
                          confidence=np.asarray(confs, dtype=np.float32), class_id=np.asarray(ids, dtype=np.int64),
                          class_name=[names[i] if i < len(names) else str(i) for i in ids])
