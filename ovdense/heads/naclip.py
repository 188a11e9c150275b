"""NACLIP (Hajimiri et al., WACV 2025): neighbourhood-aware k-k attention.

``z = out_proj(softmax(k k^T s + G) v)`` with no residual and no MLP, where
``G[i, j] = exp(-|p_i - p_j|^2 / (2 sigma^2))`` over patch-grid coordinates (peak 1, not
normalised), zero on the CLS row and column, added to every head.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..registry import HEADS
from .base import Head


def gaussian_addition(grid: Tuple[int, int], std: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ``[1 + h*w, 1 + h*w]`` additive attention term of NACLIP (CLS row/column zero)."""
    h, w = grid
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float64).repeat(h)
    d2 = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    g = torch.exp(-d2 / (2.0 * std * std))
    out = torch.zeros(h * w + 1, h * w + 1, dtype=torch.float64)
    out[1:, 1:] = g
    return out.to(dtype=dtype, device=device)


@HEADS.register_module("naclip")
class NACLIPHead(Head):
    """Args: gaussian_std: sigma of the neighbourhood window in patches (paper: 5)."""

    keep_residual = False
    keep_ffn = False

    def __init__(self, gaussian_std: float = 5.0) -> None:
        super().__init__()
        if gaussian_std <= 0:
            raise ValueError("gaussian_std must be positive")
        self.gaussian_std = float(gaussian_std)
        self._cache: Dict[tuple, torch.Tensor] = {}

    def addition(self, view) -> torch.Tensor:
        key = (view.grid, view.k.dtype, view.k.device)
        g = self._cache.get(key)
        if g is None:
            g = gaussian_addition(view.grid, self.gaussian_std, view.k.dtype, view.k.device)
            self._cache[key] = g
        return g

    def mix(self, view, aux=None):
        return F.scaled_dot_product_attention(view.k, view.k, view.v, attn_mask=self.addition(view))

    def attention(self, view, aux=None):
        logits = (view.k @ view.k.transpose(-1, -2)) * view.scale + self.addition(view)
        return logits.softmax(-1)

    def extra_repr(self) -> str:
        return f"gaussian_std={self.gaussian_std}, " + super().extra_repr()
