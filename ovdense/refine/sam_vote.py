"""Semantic logits voted inside SAM's regions: every pixel of a region gets the region's mean
logits, so a region is labelled as a whole (SAM-sharpened semantic maps).

The regions are the image's SAM automatic masks (``sam_automatic`` proposals, computed once
per image and shared with any other SAM stage of the image). Regions are painted largest
first, so where masks overlap a pixel belongs to the smallest region covering it; pixels in
no region keep their logits. Averaging logits is a soft vote: the region's label is the
class with the highest mean logit (the majority label when the pixels agree, and the
confident pixels weigh more when they do not).

A region's vote reads all of its pixels, so the refiner needs the whole image in one band
(:attr:`halo_rows` is unbounded): its working memory is the logits of the whole output.
For big photos use it with ``refine_at="model"`` (the canvas the model saw).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import PROPOSALS, REFINERS, build
from .base import Refiner

WHOLE_IMAGE = 1 << 30


@REFINERS.register_module("sam_vote")
class SamVoteRefiner(Refiner):
    """Args:
        sam: name of the segmenter's ``sam`` feature provider.
        masks: ``sam_automatic`` settings (SAM's knob names: ``points_per_side``,
            ``pred_iou_thresh``, ``stability_score_thresh``, ...).
        min_region_area: ignore regions smaller than this many pixels (at the input size).
    """

    def __init__(self, sam: str = "sam", masks: Optional[Mapping[str, Any]] = None, min_region_area: int = 0) -> None:
        super().__init__()
        self.sam = sam
        self.requires = (sam,)
        self.masks = dict(masks or {})
        self.min_region_area = int(min_region_area)
        self.source = build(PROPOSALS, dict(type="sam_automatic", provider=sam, **self.masks))

    @property
    def halo_rows(self) -> int:
        return WHOLE_IMAGE

    def working_floats_per_pixel(self, num_maps: int) -> int:
        return num_maps + 2

    def regions(self, context: Any, size) -> torch.Tensor:
        """``(H, W)`` int64 region index of every pixel at ``size`` (-1: no region)."""
        def compute():
            dets = self.source(context)
            height, width = dets.mask.shape[1:]
            area = dets.mask.sum((1, 2))
            order = np.argsort(-area, kind="stable")
            order = order[area[order] >= max(1, self.min_region_area)]
            # largest first, so smaller regions paint over; label_image numbers instances from 1
            index = dets[order].label_image(height, width).astype(np.int64) - 1
            return torch.from_numpy(index)

        index = context.shared(("sam_vote_regions", id(self)), compute)
        if tuple(index.shape) != tuple(size):
            index = F.interpolate(index[None, None].double(), size=tuple(size), mode="nearest")[0, 0].long()
        return index

    def forward(self, logits: torch.Tensor, band: Any) -> torch.Tensor:
        band = self.band_of(band)
        context = band._need_context("sam_vote")
        index = self.regions(context, band.size)[band.rows[0]:band.rows[1]].to(logits.device)
        flat = logits.reshape(logits.shape[0], -1)
        rid = index.reshape(-1)
        inside = rid >= 0
        if not bool(inside.any()):
            return logits
        n = int(rid.max()) + 1
        sums = torch.zeros(n, flat.shape[0], dtype=torch.float64, device=logits.device)
        sums.index_add_(0, rid[inside], flat[:, inside].T.double())
        counts = torch.bincount(rid[inside], minlength=n).clamp_min(1).double()
        means = (sums / counts[:, None]).to(logits.dtype)
        out = flat.clone()
        out[:, inside] = means[rid[inside]].T
        return out.reshape(logits.shape)

    def extra_repr(self) -> str:
        return f"sam={self.sam!r}, masks={self.masks}, min_region_area={self.min_region_area}"
