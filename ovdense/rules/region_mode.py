"""CorrCLIP's map correction: every region of a region map takes its most frequent label.

After the argmax and the threshold, for each region id of the image's region map (a
``regions`` provider, at the image's own size) except the smallest one present (CorrCLIP's
"unsegmented" id, usually 0), all pixels get the region's mode label; on ties the smallest
label wins (``torch.mode``). Pixels of the smallest id keep their labels. The probabilities
(``return_scores``) are left as they were, as in the official code.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..registry import DECODE_RULES
from .base import LabelRule


def region_mode(labels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """int64 ``labels`` and integer ``regions`` ``[H, W]`` -> labels with every region but the
    lowest id set to its mode label (smallest label on ties)."""
    ids, index = torch.unique(regions.long(), return_inverse=True)
    if ids.numel() < 2:
        return labels
    offset = int(labels.min())
    values = labels - offset
    num_labels = int(values.max()) + 1
    counts = torch.zeros(ids.numel() * num_labels, dtype=torch.long, device=labels.device)
    counts.index_add_(0, (index * num_labels + values).flatten(), torch.ones_like(values.flatten()))
    mode = counts.view(ids.numel(), num_labels).argmax(dim=1) + offset  # first max: the smallest label
    out = mode[index]
    return torch.where(index == 0, labels, out)


@DECODE_RULES.register_module("region_mode")
class RegionMode(LabelRule):
    """Args:
        regions: name of the ``regions`` provider (the map at the image's own size).
    """

    def __init__(self, regions: str = "regions") -> None:
        self.regions = regions
        self.requires = (regions,)

    def __call__(self, labels: torch.Tensor, context: Any, vocabulary: Any, scores: Any = None) -> torch.Tensor:
        regions = context.feature_map(self.regions)[0, 0]
        if tuple(regions.shape) != tuple(labels.shape):
            regions = F.interpolate(regions[None, None].float(), size=tuple(labels.shape), mode="nearest")[0, 0]
        return region_mode(labels, regions.to(labels.device))

    def __repr__(self) -> str:
        return f"RegionMode(regions={self.regions!r})"
