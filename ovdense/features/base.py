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
  cached in ``ImageContext.image_level``, shared by every stage. A head that requires it gets
  it resized to the canvas (the provider's ``canvas_interpolation``: ``"bilinear"`` by default)
  and cut into its windows, padding filled with the provider's ``pad_value`` (0 by default);
  the provider then runs before the windows, once per image.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class FeatureProvider(nn.Module):
    """Base class of auxiliary feature providers."""

    #: ``"window"`` (per CLIP window, batched) or ``"image"`` (once per whole input image).
    scope: str = "window"
    #: True for an image-scope provider computed from the image's context (its file path, other
    #: stages' results) by ``context_map(context, name)`` rather than from the pixels alone
    #: (CorrCLIP's region maps); its ``forward`` on bare pixels is not available.
    reads_context: bool = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> features ``[B, C, h, w]`` on the provider's own grid."""
        raise NotImplementedError
