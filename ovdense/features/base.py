"""The contract of an auxiliary feature provider (config ``features={name: dict(type=...)}``).

A provider turns the **uint8** RGB windows the CLIP head sees (``[B, 3, H, W]``, values
0-255, before any normalisation) into features of its own model, normalising and resizing
them its own way. The segmenter runs each provider a head ``requires`` once per window
batch, whatever the number of heads, and hands the outputs to the heads (``aux[name]``)
and keeps them in ``ImageFeatures.aux`` for later stages.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class FeatureProvider(nn.Module):
    """Base class of auxiliary feature providers."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> features ``[B, C, h, w]`` on the provider's own grid."""
        raise NotImplementedError
