"""CLIP's own last block (q-k attention, residual and MLP kept): the reference head."""
from __future__ import annotations

import torch.nn.functional as F

from ..registry import HEADS
from .base import Head


@HEADS.register_module("vanilla")
class VanillaHead(Head):
    """Unmodified CLIP attention ``softmax(q k^T / sqrt(d)) v``; reproduces open_clip's forward."""

    keep_residual = True
    keep_ffn = True

    def mix(self, view, aux=None):
        return F.scaled_dot_product_attention(view.q, view.k, view.v)

    def attention(self, view, aux=None):
        return ((view.q @ view.k.transpose(-1, -2)) * view.scale).softmax(-1)
