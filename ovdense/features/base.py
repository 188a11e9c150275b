"""The contract of an auxiliary feature provider (config ``features={name: dict(type=...)}``).

A provider turns **uint8** RGB pixels (``[B, 3, H, W]``, values 0-255, before any
normalisation) into features of its own model ``[B, C, h, w]``, normalising and resizing them
its own way. Its :attr:`FeatureProvider.scope` says which pixels:

* ``"window"`` (default): the windows the CLIP head sees. The segmenter runs it once per
  window batch for everything that ``requires`` it (heads, refiners, decoder rules,
  proposal sources, region scorers), hands the outputs to heads as ``aux[name]`` and keeps
  them in ``ImageContext.aux``; ``ImageContext.canvas(name)`` stitches them on the canvas.
* ``"image"``: the whole input image once (``[1, 3, H, W]``, e.g. SAM's image encoder); its
  output must cover exactly that image (crop any padding away). It runs on first use and is
  cached in ``ImageContext.image_level``, shared by every stage. Heads cannot read it (they
  run per window batch).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class FeatureProvider(nn.Module):
    """Base class of auxiliary feature providers."""

    #: ``"window"`` (per CLIP window, batched) or ``"image"`` (once per whole input image).
    scope: str = "window"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> features ``[B, C, h, w]`` on the provider's own grid."""
        raise NotImplementedError
