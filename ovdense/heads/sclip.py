"""SCLIP (Wang et al., ECCV 2024): correlative self-attention.

``A = softmax(q q^T s) + softmax(k k^T s)`` (rows sum to 2, not renormalised); the released
code keeps the residual connection and the MLP of the last block.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..registry import HEADS
from .base import Head


@HEADS.register_module("sclip")
class SCLIPHead(Head):
    keep_residual = True
    keep_ffn = True

    def mix(self, view, aux=None):
        q, k, v = view.q, view.k, view.v
        return F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)

    def attention(self, view, aux=None):
        s = view.scale
        return ((view.q @ view.q.transpose(-1, -2)) * s).softmax(-1) + \
            ((view.k @ view.k.transpose(-1, -2)) * s).softmax(-1)
