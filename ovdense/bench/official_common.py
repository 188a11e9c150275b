"""What the official codes compute per call, shared by the official-style baselines
(ProxyCLIP's and CASS's): DINO's position interpolation, DINO's model layout, and CLIP's
``nn.MultiheadAttention`` run without PyTorch's fast path."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

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


@contextmanager
def mha_fast_path(enabled: bool) -> Iterator[None]:
    """PyTorch's ``nn.MultiheadAttention`` fast path on or off for the block, then as before."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def official_dino_model(provider: Any, name: str, method: str) -> Any:
    """The timm ViT inside ``provider`` when it has the official DINO layout (patch embedding,
    one CLS token, absolute position embedding, blocks, final norm); ``ValueError`` naming the
    provider and ``method``'s baseline otherwise."""
    model = getattr(provider, "model", None)
    dino_like = model is not None and all(hasattr(model, a) for a in ("patch_embed", "cls_token", "pos_embed",
                                                                       "blocks", "norm"))
    if not dino_like or getattr(model, "num_prefix_tokens", 1) != 1 or getattr(model, "no_embed_class", False):
        raise ValueError(f"the official-style {method} baseline runs the official DINO layout (one CLS token, "
                         f"absolute position embedding); provider {name!r} is not such a timm ViT")
    return model
