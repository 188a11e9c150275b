"""The contract of a logit refiner (config ``refiners=[dict(type=name, ...)]``).

A refiner maps query logits ``[Q, H, W]`` to refined logits of the same shape, guided by
the image. The segmenter may call it on a horizontal band of a large image, with
``halo_rows`` extra rows of context above and below that it then discards: a refiner
whose output at a pixel depends on pixels at most ``halo_rows`` rows away gives the same
result on a band as on the whole image. Refiners run in config order.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Refiner(nn.Module):
    """Base class of refiners."""

    @property
    def halo_rows(self) -> int:
        """Rows of context a band needs on each side for an exact result (0: purely local)."""
        return 0

    def working_floats_per_pixel(self, num_maps: int) -> int:
        """About how many float32 values per pixel the refiner holds at its peak on a band of
        ``num_maps`` logit maps (the segmenter sizes its bands with it)."""
        return num_maps

    def forward(self, logits: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Refine ``logits`` ``[Q, H, W]`` with ``guide`` ``[3, H, W]`` (the normalised image
        resized to the logits' size); returns ``[Q, H, W]``."""
        raise NotImplementedError
