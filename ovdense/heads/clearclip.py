"""ClearCLIP (Lan et al., ECCV 2024): q-q attention without residual and MLP.

``z = out_proj(softmax(q q^T s) v)``. Note that ClearCLIP's released configs run
``model_type='vanilla'`` (q-k attention, still without residual and MLP); that variant is
registered as ``clearclip_repo_default``.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..registry import HEADS
from .base import Head


@HEADS.register_module("clearclip")
class ClearCLIPHead(Head):
    keep_residual = False
    keep_ffn = False

    def mix(self, view, aux=None):
        return F.scaled_dot_product_attention(view.q, view.q, view.v)

    def attention(self, view, aux=None):
        return ((view.q @ view.q.transpose(-1, -2)) * view.scale).softmax(-1)


@HEADS.register_module("clearclip_repo_default")
class ClearCLIPRepoDefaultHead(ClearCLIPHead):
    """What ClearCLIP's ``configs/base_config.py`` evaluates: q-k attention, no residual, no MLP."""

    def mix(self, view, aux=None):
        return F.scaled_dot_product_attention(view.q, view.k, view.v)

    def attention(self, view, aux=None):
        return ((view.q @ view.k.transpose(-1, -2)) * view.scale).softmax(-1)
