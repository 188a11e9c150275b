"""A SAM 2 model (the optional ``sam2`` package) as an image-scope provider: ``sam2``.

``features=dict(sam2=dict(type="sam2", config="configs/sam2.1/sam2.1_hiera_l.yaml",
checkpoint="/path/sam2.1_hiera_large.pt"))``. ``config`` is one of the ``sam2`` package's own
model configs (built with ``sam2.build_sam.build_sam2``, its Hydra overrides in
``overrides``); ``checkpoint=None`` gives random weights (tests). Nothing is downloaded.
The ``sam2_automatic`` proposal source runs ``SAM2AutomaticMaskGenerator`` on it (CorrCLIP
and OV-Stitcher take their regions from SAM 2). As a map (``context.feature_map("sam2")``) it
is SAM 2's image embedding, which covers the whole image (SAM 2 resizes every image to its
square input).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..registry import FEATURES
from .base import FeatureProvider


def import_sam2():
    try:
        import sam2  # noqa: F401
        from sam2.build_sam import build_sam2
    except ImportError as err:
        raise ImportError("SAM 2 stages need the sam2 package: pip install 'ovdense[sam2]' (or sam2 from "
                          "facebookresearch/sam2)") from err
    return build_sam2


@FEATURES.register_module("sam2")
class Sam2Model(FeatureProvider):
    """Args:
        config: a ``sam2`` model config name (``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml``).
        checkpoint: local weights (None: random weights).
        overrides: extra Hydra overrides for ``build_sam2``.
    """

    scope = "image"

    def __init__(self, config: str = "configs/sam2.1/sam2.1_hiera_l.yaml", checkpoint: Optional[str] = None,
                 overrides: Sequence[str] = ()) -> None:
        super().__init__()
        build_sam2 = import_sam2()
        if checkpoint is not None and not os.path.isfile(os.fspath(checkpoint)):
            raise FileNotFoundError(f"SAM 2 weights not found: {checkpoint}")
        try:
            self.model = build_sam2(config, None if checkpoint is None else os.fspath(checkpoint), device="cpu",
                                    mode="eval", hydra_overrides_extra=list(overrides), apply_postprocessing=False)
        except RuntimeError as err:  # a checkpoint of another model size
            raise ValueError(f"{checkpoint}: does not fit SAM 2 {config} ({str(err).splitlines()[0]})") from None
        self.model.requires_grad_(False)
        self.config = config

    def predictor(self):
        """A ``SAM2ImagePredictor`` on this model."""
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor(self.model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> SAM 2's image embeddings ``[B, C, h, w]`` (each covers its
        whole image), one ``SAM2ImagePredictor.set_image`` per image."""
        predictor = self.predictor()
        out = []
        for img in images:
            predictor.set_image(np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy()))
            out.append(predictor.get_image_embedding().float())
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"config={self.config!r}"
