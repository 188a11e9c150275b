"""Bilinear resizing of any band of output rows, so full-resolution maps never need to exist.

``resize_rows(src, size, r0, r1)`` returns rows ``r0:r1`` of
``F.interpolate(src[None], size, mode="bilinear", align_corners=False)[0]`` (PyTorch's
source-index rule, equal to it up to float rounding) while touching only the source rows
those output rows read. Every output row is computed by the same operations whatever band
it falls in, so a map assembled band by band is bit-identical to a single-band one.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def bilinear_taps(in_size: int, out_size: int, start: int, stop: int,
                  device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``i0, i1`` and weights ``w0, w1`` for outputs ``start:stop``.

    PyTorch's ``align_corners=False`` rule, in its float32 arithmetic:
    ``src = max((dst + 0.5) * (in / out) - 0.5, 0)``, ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, in - 1)``, ``w1 = src - i0``, ``w0 = 1 - w1``.
    """
    # made on the device (no host copy: the step of a CUDA graph may hold it); float32 ops are
    # exact elementwise, so every device gives the CPU's taps
    scale = torch.full((), in_size / out_size, dtype=torch.float32, device=device)
    dst = torch.arange(start, stop, dtype=torch.float32, device=device)
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = (src - i0.float()).clamp(0.0, 1.0)
    return i0, i1, 1.0 - w1, w1


def resize_rows(src: torch.Tensor, size: Tuple[int, int], start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of ``src`` ``[C, h, w]`` resized bilinearly to ``size`` ``(H, W)``.

    Returns ``[C, stop - start, W]`` float32. The two source rows of every output row are
    blended first, at the source's (small) width; PyTorch's kernel then resizes the columns
    (its height pass is the identity), so nearly all the work runs natively.
    """
    h, w = src.shape[-2:]
    height, width = size
    if not 0 <= start < stop <= height:
        raise ValueError(f"rows {start}:{stop} outside an output of height {height}")
    x = src.float()
    if h == height:
        rows = x[:, start:stop]
    else:
        r0, r1, _, h1 = bilinear_taps(h, height, start, stop, src.device)
        rows = torch.lerp(x.index_select(1, r0), x.index_select(1, r1), h1.view(1, -1, 1))
    if w == width:
        return rows
    return F.interpolate(rows[None], size=(stop - start, width), mode="bilinear", align_corners=False)[0]
