"""A whole segment-anything model as an image-scope provider: the ``sam`` of SAM stages.

``features=dict(sam=dict(type="sam", model_type="vit_b", checkpoint="/path/sam_vit_b_01ec64.pth"))``
(or ``model_config="tests/fixtures/synth_sam/model.json"`` for a small model). The image
embedding is computed once per image, the way ``SamPredictor.set_image`` does, and shared by
every stage of that image through :meth:`SamModel.embedding` (automatic masks, prompted
masks, SAM voting): ``ImageContext.shared``. As a map (``context.feature_map("sam")``,
``band.map("sam")``) it is the embedding's cells that cover the image.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from ..registry import FEATURES
from ..sam import SamImageEmbedding, build_sam, embed_image
from .base import FeatureProvider


@FEATURES.register_module("sam")
class SamModel(FeatureProvider):
    """segment-anything's ``Sam`` (image encoder, prompt encoder, mask decoder).

    Args:
        model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"`` (segment-anything's registry).
        checkpoint: local weights (None: random, for tests).
        model_config: sizes of a small model (dict or JSON file) instead of ``model_type``.
    """

    scope = "image"

    def __init__(self, model_type: str = "vit_b", checkpoint: Optional[Union[str, os.PathLike]] = None,
                 model_config: Union[str, os.PathLike, Mapping[str, Any], None] = None) -> None:
        super().__init__()
        self.sam = build_sam(model_type, checkpoint, model_config)
        self.model_type = model_type if model_config is None else "custom"

    @property
    def mask_threshold(self) -> float:
        return float(self.sam.mask_threshold)

    def embed(self, image: np.ndarray) -> SamImageEmbedding:
        """The embedding of a uint8 RGB ``(H, W, 3)`` image (not cached)."""
        return embed_image(self.sam, image)

    def embedding(self, context: Any) -> SamImageEmbedding:
        """The embedding of ``context``'s image, computed on first use and shared."""
        if context.image is None:
            raise ValueError("SAM runs on the uint8 image, which this context does not hold")
        return context.shared(("sam_embedding", id(self)), lambda: self.embed(context.image))

    def context_map(self, context: Any, name: str) -> torch.Tensor:
        return self.embedding(context).valid_features()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> the embedding cells covering each image ``[B, C, h', w']``
        (one encoder pass per image, as ``SamPredictor.set_image``)."""
        return torch.cat([self.embed(np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy())).valid_features()
                          for img in images])

    def extra_repr(self) -> str:
        return f"model_type={self.model_type!r}, input_size={self.sam.image_encoder.img_size}"
