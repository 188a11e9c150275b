"""ProxyCLIP (Lan et al., ECCV 2024): CLIP's values mixed by a vision foundation model's affinities.

On each window, with the VFM's patch features ``f`` (``aux[source]``, ``[B, C, I, J]``, e.g.
DINO ViT-B/8's normalised last-block tokens on its own grid):

    S = cos(f_m, f_n)                                   [B, IJ, IJ]
    A = softmax_n(mask((S - beta * mean(S)) * gamma))   entries < 0 -> -inf before the softmax
    V = bilinear(CLIP's last-block values, h x w -> I x J)   per head, CLS dropped
    z = out_proj(A V)                                   no residual, no MLP
    features = normalise(ln_post(z) @ proj)             on the VFM's grid I x J

as the official ``custom_attn`` computes it (mc-lan/ProxyCLIP, ``open_clip/transformer.py``).

Official quirks, and what this head does (README's method table says the same):

* ``mean(S)`` is taken over the whole batch passed to ``encode_image``. The official evaluation
  slides window by window (batch 1), so the published numbers use each window's own mean; that is
  the default here (``threshold_mean="window"``). ``"batch"`` reproduces a batched call.
* On non-square windows the official code reshapes the VFM tokens to ``H/p x H/p`` (H used twice)
  and CLIP's values to ``W/16 x H/16`` (H and W swapped). The published protocols only use square
  windows (336 or 224 px crops of images at least that large), so the default follows the intended
  maths (``I x J`` and ``h x w``); ``official_nonsquare=True`` reproduces the official reshapes for
  parity.
* When a token's every thresholded affinity is negative (its window's mean cosine is above
  ``1 / beta``: a nearly uniform window, such as a crop of clear sky), the official softmax gets a
  row of ``-inf`` and returns NaN features. By default such a token attends to itself
  (``empty_rows="self"``: its own value, finite); ``empty_rows="nan"`` keeps the official NaN.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head


@HEADS.register_module("proxyclip")
class ProxyCLIPHead(Head):
    """Args:
        beta: threshold factor on the mean affinity (paper: 1.2).
        gamma: temperature of the thresholded affinities (paper: 3.0).
        source: the feature provider whose output is the VFM's features (``features=dict(vfm=...)``).
        threshold_mean: ``"window"`` (each window's own mean, the official evaluation) or
            ``"batch"`` (the mean over the window batch, the official ``encode_image`` on a batch).
        official_nonsquare: reproduce the official reshapes on non-square windows (see module doc).
        empty_rows: ``"self"`` (a token with no positive affinity attends to itself) or ``"nan"``
            (the official NaN).
    """

    keep_residual = False
    keep_ffn = False

    def __init__(self, beta: float = 1.2, gamma: float = 3.0, source: str = "vfm", threshold_mean: str = "window",
                 official_nonsquare: bool = False, empty_rows: str = "self") -> None:
        super().__init__()
        if threshold_mean not in ("window", "batch"):
            raise ValueError(f"threshold_mean must be 'window' or 'batch', got {threshold_mean!r}")
        if empty_rows not in ("self", "nan"):
            raise ValueError(f"empty_rows must be 'self' or 'nan', got {empty_rows!r}")
        self.empty_rows = empty_rows
        self.beta, self.gamma = float(beta), float(gamma)
        self.source = source
        self.requires = (source,)
        self.threshold_mean = threshold_mean
        self.official_nonsquare = bool(official_nonsquare)

    def output_grid(self, window_size: Tuple[int, int], backbone,
                    providers: Optional[Mapping[str, torch.nn.Module]] = None) -> Tuple[int, int]:
        provider = (providers or {}).get(self.source)
        if provider is None or not hasattr(provider, "output_grid"):
            raise ValueError(f"proxyclip reads the grid of provider {self.source!r}, which declares none")
        rows, cols = provider.output_grid(window_size)
        return (rows, rows) if self.official_nonsquare else (rows, cols)

    def affinity(self, vfm: torch.Tensor) -> torch.Tensor:
        """``[B, C, I, J]`` VFM features -> ``[B, IJ, IJ]`` attention weights."""
        f = F.normalize(vfm.flatten(2), dim=1)
        sim = torch.einsum("bcm,bcn->bmn", f, f)
        mean = sim.mean() if self.threshold_mean == "batch" else sim.mean(dim=(1, 2), keepdim=True)
        sim = (sim - mean * self.beta) * self.gamma
        sim = sim.masked_fill(sim < 0, float("-inf"))
        if self.empty_rows == "self":
            empty = torch.isinf(sim).all(dim=-1, keepdim=True)  # [B, IJ, 1]
            eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
            sim = sim.masked_fill(empty & eye, 0.0)
        return sim.softmax(dim=-1)

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        vfm = aux[self.source].float()
        b, c, rows, cols = vfm.shape
        h, w = view.grid
        if self.official_nonsquare:  # VFM tokens reshaped to rows x rows, CLIP values to w x h
            vfm = vfm.flatten(2).transpose(1, 2).reshape(b, rows, rows, -1).permute(0, 3, 1, 2)
            cols = rows
            h, w = w, h
        weights = self.affinity(vfm)
        heads, d = view.v.shape[1], view.v.shape[-1]
        v = view.v[:, :, 1:].float().reshape(b * heads, h, w, d).permute(0, 3, 1, 2)
        v = F.interpolate(v, size=(rows, cols), mode="bilinear", align_corners=False)
        v = v.permute(0, 2, 3, 1).reshape(b, heads, rows * cols, d)
        mixed = (weights.unsqueeze(1) @ v).to(view.v.dtype)
        tokens = backbone.project(self.finish(view, backbone, mixed))
        return DenseFeatures.from_tokens(tokens, (rows, cols))

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, gamma={self.gamma}, source={self.source!r}, "
                f"threshold_mean={self.threshold_mean!r}, official_nonsquare={self.official_nonsquare}, "
                f"empty_rows={self.empty_rows!r}")
