"""The contract of a logit refiner (config ``refiners=[dict(type=name, ...)]``).

A refiner maps query logits ``[Q, h, W]`` of a band of output rows to refined logits of the
same shape, reading whatever it needs of the image from the band's
:class:`~ovdense.structures.ContextBand`: ``band.guide`` (the normalised image rows),
``band.image`` (uint8 rows), ``band.map(name)`` (a provider's features or a head extra on
those rows). Names it reads with ``band.map`` are declared in :attr:`Refiner.requires`, so
the segmenter runs those providers and refuses a config that lacks them.

The segmenter may call it on a horizontal band of a large image, with ``halo_rows`` extra
rows of context above and below that it then discards: a refiner whose output at a pixel
depends on pixels at most ``halo_rows`` rows away gives the same result on a band as on the
whole image. Refiners run in config order.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn as nn

from ..structures import ContextBand


class Refiner(nn.Module):
    """Base class of refiners.

    Attributes:
        requires: names of the feature providers (``features=`` of the segmenter) or head
            extras the refiner reads with ``band.map(name)``.
    """

    requires: Tuple[str, ...] = ()

    @property
    def halo_rows(self) -> int:
        """Rows of context a band needs on each side for an exact result (0: purely local)."""
        return 0

    def working_floats_per_pixel(self, num_maps: int) -> int:
        """About how many float32 values per pixel the refiner holds at its peak on a band of
        ``num_maps`` logit maps (the segmenter sizes its bands with it)."""
        return num_maps

    def forward(self, logits: torch.Tensor, band: Any) -> torch.Tensor:
        """Refine ``logits`` ``[Q, h, W]`` of ``band`` (a :class:`ContextBand`, or a bare
        ``[3, h, W]`` guide tensor: see :meth:`ContextBand.coerce`); returns ``[Q, h, W]``."""
        raise NotImplementedError

    @staticmethod
    def band_of(band: Any) -> ContextBand:
        """``band`` as a :class:`ContextBand` (a bare guide tensor becomes a guide-only band)."""
        return ContextBand.coerce(band)
