"""MaskCLIP (Zhou et al., ECCV 2022): the value path of the last block.

Attention is replaced by the identity, so each token keeps its own value; the residual
connection and the MLP are kept (``z = x + out_proj(v); z = z + MLP(ln_2 z)``), as in
CLIP-DINOiser's ``extract_v`` and ClearCLIP's ``model_type='MaskCLIP'`` with the residual.
"""
from __future__ import annotations

import torch

from ..registry import HEADS
from .base import Head


@HEADS.register_module("maskclip")
class MaskCLIPHead(Head):
    keep_residual = True
    keep_ffn = True

    def mix(self, view, aux=None):
        return view.v

    def attention(self, view, aux=None):
        b, h, n, _ = view.v.shape
        return torch.eye(n, dtype=view.v.dtype, device=view.v.device).expand(b, h, n, n)
