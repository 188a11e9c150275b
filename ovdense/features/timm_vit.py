"""Patch features of a timm Vision Transformer: DINO, DINOv2 or DINOv3 by timm name + local weights.

``features=dict(dino=dict(type="timm_vit", model_name="vit_base_patch16_224.dino",
weights="/path/dino_vitbase16_pretrain.pth"))``. Nothing is downloaded: the model is
built with ``pretrained=False`` and the weights come from the local file (official DINO
checkpoints, timm checkpoints and ``.safetensors`` are read; timm's own key conversion
for ViTs is applied). The normalisation is the model's own (timm ``pretrained_cfg`` mean
and std), applied to the uint8 windows.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..registry import FEATURES
from .base import FeatureProvider

_WRAPPERS = ("state_dict", "model", "teacher", "module")
_PREFIXES = ("module.", "backbone.")


def read_vit_weights(path: str, model: torch.nn.Module) -> dict:
    """A state dict for ``model`` from a local checkpoint (wrappers and prefixes removed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature-provider weights not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, Mapping) and len(state) and any(k in state for k in _WRAPPERS) \
            and not any(isinstance(v, torch.Tensor) for v in state.values()):
        state = next(state[k] for k in _WRAPPERS if k in state)
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(out, model)


@FEATURES.register_module("timm_vit")
class TimmViTFeatures(FeatureProvider):
    """Patch tokens of one block of a timm ViT, as ``[B, C, h, w]``.

    Args:
        model_name: timm model name, with its pretrained tag for the right normalisation
            (e.g. ``"vit_base_patch16_224.dino"``, ``"vit_base_patch14_reg4_dinov2.lvd142m"``).
        weights: local checkpoint path (None: random weights, for tests only).
        layer: block whose output is returned (-1: the last).
        norm: apply the final norm to that output (as the model's ``forward_features``).
        input_size: resize the windows to this ``(H, W)`` first (bicubic); None keeps their
            size, cropped down to a multiple of the patch size.
        model_kwargs: extra ``timm.create_model`` arguments (tests build tiny models).
    """

    def __init__(self, model_name: str = "vit_base_patch16_224.dino", weights: Optional[str] = None,
                 layer: int = -1, norm: bool = True, input_size: Optional[Sequence[int]] = None,
                 model_kwargs: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as err:  # pragma: no cover - timm is in the [dino] extra
            raise ImportError("the timm_vit feature provider needs timm: pip install 'ovdense[dino]'") from err
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                       **dict(model_kwargs or {}))
        if weights is not None:
            missing, unexpected = self.model.load_state_dict(read_vit_weights(os.fspath(weights), self.model),
                                                             strict=False)
            if missing or unexpected:
                raise ValueError(f"{weights}: does not fit {model_name} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        self.model.eval().requires_grad_(False)
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", 255.0 * torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", 255.0 * torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.layer = int(layer)
        self.norm = bool(norm)
        self.input_size: Optional[Tuple[int, int]] = tuple(int(s) for s in input_size) if input_size else None
        self.model_name = model_name

    @property
    def patch_size(self) -> Tuple[int, int]:
        return tuple(self.model.patch_embed.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        if self.input_size is not None:
            x = F.interpolate(x, size=self.input_size, mode="bicubic", align_corners=False)
        else:
            ph, pw = self.patch_size
            x = x[..., : x.shape[-2] // ph * ph, : x.shape[-1] // pw * pw]
        dtype = next(self.model.parameters()).dtype
        index = self.layer if self.layer >= 0 else len(self.model.blocks) + self.layer
        return self.model.forward_intermediates(x.to(dtype), indices=[index], norm=self.norm, output_fmt="NCHW",
                                                intermediates_only=True)[0].float()

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, layer={self.layer}, norm={self.norm}, input_size={self.input_size}"
