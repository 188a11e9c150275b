"""Exercise 1: a refiner that reads DINO features from the context.

Each step replaces a pixel's logits by an average over itself and its 8 neighbours at
``dilation``, weighted by ``softmax(cos(f_p, f_n) / temperature)`` of the DINO features ``f``
(``band.map("dino")``, the provider's windows stitched on the canvas and resized to the band).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ovdense.refine.base import Refiner
from ovdense.registry import REFINERS

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def shifted(x: torch.Tensor, d: int):
    """Copies of ``x`` [C, H, W] where position p holds x[p + offset * d] (replicate edges)."""
    h, w = x.shape[-2:]
    padded = F.pad(x[None], [d, d, d, d], mode="replicate")[0]
    return [padded[:, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w] for dy, dx in OFFSETS]


@REFINERS.register_module("test_dino_affinity")
class DinoAffinityRefiner(Refiner):
    requires = ("dino",)

    def __init__(self, steps: int = 2, dilation: int = 2, temperature: float = 0.1, source: str = "dino") -> None:
        super().__init__()
        self.steps, self.dilation, self.temperature = int(steps), int(dilation), float(temperature)
        self.requires = (source,)

    @property
    def halo_rows(self) -> int:
        return self.steps * self.dilation

    def forward(self, logits: torch.Tensor, band) -> torch.Tensor:
        feats = F.normalize(self.band_of(band).map(self.requires[0]), dim=0)
        weights = torch.stack([(feats * n).sum(0) for n in shifted(feats, self.dilation)]) / self.temperature
        weights = weights.softmax(dim=0)
        for _ in range(self.steps):
            logits = sum(w * n for w, n in zip(weights, shifted(logits, self.dilation)))
        return logits
