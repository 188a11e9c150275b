"""SAM's image encoder (segment-anything) as a feature provider: ProxyCLIP's ``sam`` VFM.

``features=dict(vfm=dict(type="sam_encoder", model_type="vit_b", checkpoint="/path/sam_vit_b_01ec64.pth"))``.
Each uint8 window is normalised with SAM's pixel mean and std, stretched bilinearly to the
encoder's square input (1024 px for the released models, as ProxyCLIP does; SAM's own predictor
instead resizes the long side and pads), and encoded: the neck's ``[B, 256, 64, 64]`` features.
Nothing is downloaded: the weights come from a local SAM checkpoint (``image_encoder.*`` keys are
read; a file holding only the encoder's keys works too).
"""
from __future__ import annotations

import os
from functools import partial
from typing import Any, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from ..registry import FEATURES
from .base import FeatureProvider

#: segment-anything's ``sam_model_registry`` encoders (build_sam.py), by model type.
SAM_ENCODERS = {
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
}
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def read_encoder_weights(path: str) -> dict:
    """The image encoder's state dict from a SAM checkpoint (``image_encoder.`` prefix removed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature-provider weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v.float() for k, v in state.items()}


@FEATURES.register_module("sam_encoder")
class SamEncoderFeatures(FeatureProvider):
    """Neck features of SAM's ViT image encoder on every window.

    Args:
        model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"`` (segment-anything's registry).
        checkpoint: local SAM checkpoint (None: random weights, for tests only).
        encoder_kwargs: ``ImageEncoderViT`` arguments replacing the model type's (tests and
            the tiny SAM fixture build small encoders: ``img_size``, ``patch_size``, ...).
    """

    def __init__(self, model_type: str = "vit_b", checkpoint: Optional[str] = None,
                 encoder_kwargs: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        try:
            from segment_anything.modeling import ImageEncoderViT
        except ImportError as err:  # pragma: no cover - segment-anything is in the [sam] extra
            raise ImportError("the sam_encoder feature provider needs segment-anything: pip install 'ovdense[sam]'") \
                from err
        if model_type not in SAM_ENCODERS:
            raise ValueError(f"sam_encoder: model_type must be one of {sorted(SAM_ENCODERS)}, got {model_type!r}")
        args = dict(img_size=1024, patch_size=16, mlp_ratio=4.0, qkv_bias=True, use_rel_pos=True, window_size=14,
                    out_chans=256, **SAM_ENCODERS[model_type])
        args.update(dict(encoder_kwargs or {}))
        args["global_attn_indexes"] = tuple(args["global_attn_indexes"])
        self.encoder = ImageEncoderViT(norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **args)
        if checkpoint is not None:
            try:
                missing, unexpected = self.encoder.load_state_dict(read_encoder_weights(os.fspath(checkpoint)),
                                                                   strict=False)
            except RuntimeError as err:  # tensor shapes of another encoder size
                detail = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), str(err))
                raise ValueError(f"{checkpoint}: does not fit SAM {model_type} ({detail})") from None
            if missing or unexpected:
                raise ValueError(f"{checkpoint}: does not fit SAM {model_type} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        self.encoder.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1))
        self.model_type = model_type
        self.input_size = int(args["img_size"])
        self.patch = int(args["patch_size"])

    @property
    def patch_size(self) -> Tuple[int, int]:
        return self.patch, self.patch

    def output_grid(self, window_size: Tuple[int, int]) -> Tuple[int, int]:
        """Always the encoder's square grid: every window is stretched to its input size."""
        side = self.input_size // self.patch
        return side, side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        dtype = next(self.encoder.parameters()).dtype
        return self.encoder(x.to(dtype)).float()

    def extra_repr(self) -> str:
        return f"model_type={self.model_type!r}, input_size={self.input_size}"
