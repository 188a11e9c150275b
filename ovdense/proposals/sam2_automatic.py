"""Class-agnostic regions from SAM 2: ``SAM2AutomaticMaskGenerator`` called unchanged.

``Detector(seg, proposals=dict(type="sam2_automatic", points_per_side=32), scorer="mask_pooling")``
with ``features=dict(sam2=dict(type="sam2", config=..., checkpoint=...))`` (the optional
``sam2`` package). Masks are computed once per image and settings and shared through the
image's context. SAM 2's generator embeds the image itself (it is not shared with other stages).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..registry import PROPOSALS
from ..structures import UNLABELLED, Detections
from .base import ProposalSource


@PROPOSALS.register_module("sam2_automatic")
class Sam2Automatic(ProposalSource):
    """SAM 2's automatic masks as class-agnostic proposals: masks at the input image's size,
    their boxes, confidence = SAM 2's predicted IoU clipped to [0, 1],
    ``data["predicted_iou"]`` and ``data["stability_score"]``; SAM 2's order.

    Args:
        provider: name of the segmenter's ``sam2`` feature provider.
        **generator: ``SAM2AutomaticMaskGenerator``'s keyword arguments, unchanged
            (``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``,
            ``box_nms_thresh``, ``crop_n_layers``, ``min_mask_region_area``, ``use_m2m``, ...).
    """

    def __init__(self, provider: str = "sam2", **generator: Any) -> None:
        if "output_mode" in generator and generator["output_mode"] != "binary_mask":
            raise ValueError("sam2_automatic keeps binary masks: leave output_mode out")
        self.provider = provider
        self.requires = (provider,)
        self.options = dict(generator)
        self._generators = {}

    def _generator(self, model: Any):
        key = id(model)
        if key not in self._generators:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            self._generators[key] = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **self.options)
        return self._generators[key]

    def __call__(self, context: Any, vocabulary: Any = None, result: Optional[Any] = None) -> Detections:
        provider = context.providers[self.provider]
        if context.image is None:
            raise ValueError("sam2_automatic runs on the uint8 image, which this context does not hold")
        key = ("sam2_automatic", id(provider), tuple(sorted(self.options.items())))
        records = context.shared(key, lambda: self._generator(provider.model).generate(context.image))
        h, w = context.image.shape[:2]
        records = [r for r in records if r["area"] > 0]
        if not records:
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0, h, w), bool), np.zeros(0, np.float32),
                              np.zeros(0, np.int64), [], data=dict(predicted_iou=np.zeros(0, np.float32),
                                                                   stability_score=np.zeros(0, np.float32)))
        iou = np.asarray([r["predicted_iou"] for r in records], np.float32)
        dets = Detections.from_masks(np.stack([r["segmentation"] for r in records]),
                                     confidence=np.clip(iou, 0.0, 1.0), predicted_iou=iou,
                                     stability_score=np.asarray([r["stability_score"] for r in records], np.float32))
        assert (dets.class_id == UNLABELLED).all()
        return dets

    def __repr__(self) -> str:
        return f"Sam2Automatic(provider={self.provider!r}, {self.options})"
