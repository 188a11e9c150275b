"""Class-agnostic regions: SAM's automatic masks (``SamAutomaticMaskGenerator``'s results).

``Detector(seg, proposals=dict(type="sam_automatic", points_per_side=16), scorer="mask_pooling")``
with ``seg`` built with ``features=dict(sam=dict(type="sam", ...))``. The masks are those of
:class:`ovdense.sam.automatic.AutomaticMaskGenerator` (equal to segment-anything's generator,
faster), computed once per image and settings and shared through the image's context with
every other SAM stage (SAM voting, phrase prompts); crop 0 reuses the provider's shared image
embedding.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import PROPOSALS
from ..sam.automatic import AutomaticMaskSettings, SamMasks, automatic_masks
from ..structures import UNLABELLED, Detections
from .base import ProposalSource


@PROPOSALS.register_module("sam_automatic")
class SamAutomatic(ProposalSource):
    """SAM's automatic masks as class-agnostic proposals (``class_id`` = ``UNLABELLED``).

    Detections: masks at the input image's size (at ``result.label_map``'s size when a result
    of another size is passed: nearest resize), ``xyxy`` boxes that bound them (``x2 = x1 +
    width``), confidence = SAM's predicted IoU clipped to [0, 1]; ``data["predicted_iou"]``
    (unclipped), ``data["stability_score"]`` and ``data["point_coords"]`` (the prompt, x, y
    pixels). Empty masks (possible with ``stability_score_thresh=0``) are dropped. The order
    is SAM's.

    Args:
        provider: name of the segmenter's ``sam`` feature provider.
        points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
        stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh,
        crop_overlap_ratio, crop_n_points_downscale_factor, point_grids,
        min_mask_region_area: ``SamAutomaticMaskGenerator``'s knobs, same defaults.
        max_masks: keep the first ``max_masks`` of SAM's order (None: all).
        masks_per_chunk: masks upscaled to full resolution at once (memory and speed only; None:
            sized by ``ovdense.sam.automatic.CHUNK_BYTES``).
    """

    def __init__(self, provider: str = "sam", points_per_side: Optional[int] = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Optional[Sequence[Any]] = None,
                 min_mask_region_area: int = 0, max_masks: Optional[int] = None,
                 masks_per_chunk: Optional[int] = None) -> None:
        if not isinstance(provider, str) or not provider:
            raise TypeError(f"sam_automatic: provider is the name of a SAM feature provider, got {provider!r}")
        self.provider = provider
        self.requires = (provider,)
        grids = None if point_grids is None else [np.asarray(g, dtype=np.float64) for g in point_grids]
        self.settings = AutomaticMaskSettings(
            points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=grids, min_mask_region_area=min_mask_region_area, max_masks=max_masks,
            masks_per_chunk=masks_per_chunk)

    def masks(self, context: Any) -> SamMasks:
        """The image's :class:`~ovdense.sam.automatic.SamMasks` (shared per image and settings)."""
        return automatic_masks(context, self.provider, self.settings)

    def __call__(self, context: Any, vocabulary: Any = None, result: Optional[Any] = None) -> Detections:
        found = self.masks(context)
        h, w = found.image_size
        keep = np.flatnonzero(found.areas > 0)
        if len(keep) == 0:
            return _with_data(Detections.empty(h, w))
        masks = found.masks if len(keep) == len(found) else found.masks[keep]
        iou = found.predicted_iou[keep]
        data = dict(predicted_iou=iou.astype(np.float32),
                    stability_score=found.stability_score[keep].astype(np.float32),
                    point_coords=found.point_coords[keep].astype(np.float64))
        confidence = np.clip(iou, 0.0, 1.0).astype(np.float32)
        size = None if result is None else tuple(np.asarray(result.label_map).shape[-2:])
        if size is not None and size != (h, w):
            resized = F.interpolate(torch.from_numpy(masks)[None].float(), size=size, mode="nearest")[0] > 0.5
            dets = Detections.from_masks(resized.numpy(), confidence=confidence, **data)
            return dets[dets.mask.reshape(len(dets), -1).any(1)]
        xyxy = found.boxes[keep].astype(np.float32)
        xyxy[:, 2:] += 1  # SAM's boxes end on the last pixel inside; Detections' one past it
        n = len(keep)
        return Detections(xyxy=xyxy, mask=masks, confidence=confidence, class_id=np.full(n, UNLABELLED, np.int64),
                          class_name=[""] * n, data=data)

    def __repr__(self) -> str:
        s = self.settings
        return (f"SamAutomatic(provider={self.provider!r}, points_per_side={s.points_per_side}, "
                f"pred_iou_thresh={s.pred_iou_thresh}, stability_score_thresh={s.stability_score_thresh}, "
                f"crop_n_layers={s.crop_n_layers}, max_masks={s.max_masks})")


def _with_data(dets: Detections) -> Detections:
    dets.data.update(predicted_iou=np.zeros(0, np.float32), stability_score=np.zeros(0, np.float32),
                     point_coords=np.zeros((0, 2), np.float64))
    return dets
