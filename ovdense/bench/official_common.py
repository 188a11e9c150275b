"""What the official DINO code computes per call, shared by the official-style baselines."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dino_pos_encoding(pos: torch.Tensor, tokens: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding`` (recomputed on every call, as the official models do):
    the position embedding ``pos`` ``[1, 1 + N, C]`` resized bicubically with scale factors
    ``(h // p + 0.1) / sqrt(N)`` for ``tokens`` of an image of ``height x width`` pixels."""
    npatch, n = tokens.shape[1] - 1, pos.shape[1] - 1
    if npatch == n and height == width:
        return pos
    dim, side = tokens.shape[-1], math.sqrt(n)
    rows, cols = height // patch + 0.1, width // patch + 0.1
    grid = F.interpolate(pos[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2),
                         scale_factor=(rows / side, cols / side), mode="bicubic")
    assert int(rows) == grid.shape[-2] and int(cols) == grid.shape[-1]
    return torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)
