"""Logits propagated with a feature provider's local affinities: PAMR with a vision foundation
model's features (DINO by default) in place of the colour image.

For every output pixel ``p`` and its 8 neighbours ``n`` at each dilation ``d`` (replicate padding
at the image's borders, as PAMR), with the provider's features ``f`` resized to the output
(``band.map``):

    a(p, n) = cos(f_p, f_n)                  the pixel itself is a neighbour too (cos 1)
    alpha(p, .) = softmax_n(a(p, n) / temperature)
    ``steps`` times:  m_p <- sum_n alpha(p, n) m_n

It works after any head (the features are the context's, not the head's), on bands like every
refiner: a pixel's output depends on pixels at most ``steps * max(dilations)`` rows away
(:attr:`halo_rows`). Memory: the features are read ``chunk`` channels at a time
(``band.map(name, channels)``, each chunk resized once), so the working set is about
``chunk + 3K + 3Q`` floats per pixel
(``K = 1 + 8 len(dilations)`` neighbours, ``Q`` logit maps), not the provider's ``C`` (768 for
DINO ViT-B). The cost grows with ``C x K`` per output pixel: for big photos use it with
``refine_at="model"``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..registry import REFINERS
from .base import Refiner
from .pamr import _shifted


@REFINERS.register_module("feature_affinity")
class FeatureAffinityRefiner(Refiner):
    """Args:
        source: the feature provider (or head extra) whose features give the affinities.
        steps: propagation steps.
        dilations: neighbour distances in output pixels.
        temperature: softmax temperature on the cosines (lower: sharper).
        chunk: feature channels resized to the band at once.
    """

    def __init__(self, source: str = "dino", steps: int = 10, dilations: Sequence[int] = (8, 16),
                 temperature: float = 0.1, chunk: int = 32) -> None:
        super().__init__()
        if steps < 0 or temperature <= 0 or chunk < 1:
            raise ValueError("feature_affinity: steps must be >= 0, temperature > 0 and chunk >= 1")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"feature_affinity: dilations must be positive integers, got {dilations}")
        self.source = source
        self.requires = (source,)
        self.steps = int(steps)
        self.dilations = tuple(int(d) for d in dilations)
        self.temperature = float(temperature)
        self.chunk = int(chunk)

    @property
    def halo_rows(self) -> int:
        return self.steps * max(self.dilations)

    @property
    def num_neighbours(self) -> int:
        return 1 + 8 * len(self.dilations)

    def working_floats_per_pixel(self, num_maps: int) -> int:
        return self.chunk + 3 * self.num_neighbours + 3 * num_maps + 2

    def _neighbours(self, x: torch.Tensor):
        """``x`` itself, then its 8 shifted copies per dilation (``[B, C, h, W]`` views)."""
        yield x
        for d in self.dilations:
            yield from _shifted(x, d)

    def affinity(self, band) -> torch.Tensor:
        """``[K, h, W]`` neighbour weights (softmax over the first dimension).

        One pass over the feature channels: raw dot products with each neighbour and the squared
        norms accumulate together, and the cosines are the dots over the two norms."""
        band = self.band_of(band)
        channels = band.map_channels(self.source)
        dots = None
        for c in range(0, channels, self.chunk):
            part = band.map(self.source, slice(c, c + self.chunk))[None]
            step = torch.stack([(part * n).sum(1)[0] for n in self._neighbours(part)])
            dots = step if dots is None else dots.add_(step)
        norm = dots[0].sqrt().clamp_min(1e-12)[None, None]  # neighbour 0 is the pixel itself: |f_p|^2
        norms = torch.cat(list(self._neighbours(norm)), dim=1)[0]  # [K, h, W]: |f_n|
        return (dots / (norms * norm[0, 0]) / self.temperature).softmax(dim=0)

    def forward(self, logits: torch.Tensor, band) -> torch.Tensor:
        if self.steps == 0:
            return logits
        alpha = self.affinity(band)[None]                      # [1, K, h, W]
        mask = logits.float()[None]                            # [1, Q, h, W]
        for _ in range(self.steps):
            out = torch.zeros_like(mask)
            for k, shifted in enumerate(self._neighbours(mask)):
                out.addcmul_(shifted, alpha[:, k:k + 1])
            mask = out
        return mask[0].to(logits.dtype)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, steps={self.steps}, dilations={self.dilations}, "
                f"temperature={self.temperature}, chunk={self.chunk}")
