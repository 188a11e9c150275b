"""CorrCLIP (Zhang et al., CVPR 2025, v1): CLIP's last block with DINO's correlations, limited
to class-agnostic regions, plus a spatial and a semantic branch.

On each window, with DINO's last-block ``q + k`` features ``f`` (``aux[dino]``, ``[B, C, I, J]``,
L2-normalised per token) and the window's region map ``m`` (``aux[regions]``: ids on the
window's pixels, nearest-resized to ``I x J``):

1. **Region merging** (when a window has more than two ids): the mean ``f`` of every region,
   normalised; regions other than the smallest id are grouped by DBSCAN (``eps=0.2``,
   ``min_samples=1``, distance ``max(S) - S`` over their cosines ``S``), i.e. the connected
   components of "distance <= eps", and each group gets the id ``10000 + group``.
2. **Scope reconstruction**: ``A = softmax_n(tau * cos(f_m, f_n))`` restricted to pairs in the
   same merged region; pairs with a token of the smallest id ("unsegmented") are allowed when
   their cosine is above the window's mean cosine.
3. **Main / spatial branches**: CLIP's last-block values of its input ``x`` and of the mean
   input of the ``S`` blocks before it (``S = 5, 12, 28`` for 12-, 24-, 32-block towers, else
   ``depth - 4``), bilinearly resized ``h x w -> I x J``, mixed by ``A``, then ``out_proj``
   (no residual, no MLP).
4. **Semantic branch**: one extra class token per region of the merged map on CLIP's grid
   (``I x J -> h x w`` nearest), started from CLIP's CLS embedding and run through every block,
   attending only to the CLS token and its region's patches; its last-block output (residual
   and MLP kept) is painted on its region's ``I x J`` tokens.
5. ``features = normalise(proj(ln_post(main)) + alpha proj(ln_post(spatial)) + beta proj(ln_post(semantic)))``
   on DINO's grid (``alpha = 1``, ``beta = 0.5``).

The decoder's ``region_mode`` rule is the official map correction (every region takes its
most frequent label), and ``features.regions`` the region maps (``ovdense.features.regions``).

Official quirks (zdk258/CorrCLIP, ``CorrCLIPv1/open_clip/transformer.py``), and what this head does:

* The semantic branch and the ``attn_weights.expand(B * 2)`` of the official code assume one
  window per forward (the official evaluation slides window by window); the head computes every
  window on its own, whatever the batch (no switch: a batched official call fails).
* The smallest id of each *window* is treated as "unsegmented", even where the window has no
  unsegmented pixel (then a real region loses its scope and is not merged); windows padded to a
  multiple of 56 get the id 10000 on the padding, which can coincide with the first merged group.
  Both are the official maths and kept (the padding only happens when an image side is below the
  crop size).
* DINO runs in fp16 in the official code; ovdense computes in the segmenter's dtype.
* DINO sees the official window after CLIP normalisation, un-normalisation and ImageNet
  normalisation; on zero-padded windows its padding is CLIP's mean colour, where the ``dino``
  provider here sees black (no padding in the published protocol).
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head

#: Official number of lower blocks averaged by the spatial branch, by tower depth.
SPATIAL_BLOCKS = {12: 5, 24: 12, 32: 28}
#: Official offset of merged region ids.
MERGED_ID = 10000


def _project(attn: torch.nn.MultiheadAttention, y: torch.Tensor, which: int) -> torch.Tensor:
    """One of the in-projections (0: q, 1: k, 2: v) of batch-first ``y [B, N, C]``, per head
    ``[B, heads, N, d]`` (only the rows of ``in_proj`` it needs)."""
    c = attn.embed_dim
    rows = slice(which * c, (which + 1) * c)
    out = F.linear(y, attn.in_proj_weight[rows], None if attn.in_proj_bias is None else attn.in_proj_bias[rows])
    b, n, _ = out.shape
    return out.view(b, n, attn.num_heads, -1).transpose(1, 2)


def spatial_block_count(depth: int, override: Optional[int] = None) -> int:
    """Lower blocks the spatial branch uses: ``override``, else the official choice by tower depth
    (5 / 12 / 28 for 12 / 24 / 32 blocks, else ``depth - 4``, at least 1: the official code fails
    below 5 blocks)."""
    if override is not None:
        return int(override)
    return SPATIAL_BLOCKS.get(depth, max(1, depth - 4))


def connected_components(adjacency: torch.Tensor) -> torch.Tensor:
    """Component index of every node of a symmetric boolean ``[n, n]`` graph, numbered in the
    order of each component's smallest node (sklearn DBSCAN's labels with ``min_samples=1``)."""
    n = adjacency.shape[0]
    index = torch.arange(n, device=adjacency.device)
    root = index.clone()
    for _ in range(n):
        smallest = torch.where(adjacency, root[None, :], n).amin(dim=1).minimum(root)
        if torch.equal(smallest, root):
            break
        root = smallest
    return torch.unique(root, return_inverse=True)[1]


def merge_regions(ids: torch.Tensor, feats: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """CorrCLIP's mask merging on one window: ``ids`` ``[I, J]`` integer region map, ``feats``
    ``[I*J, C]`` normalised DINO features -> merged ids (regions but the smallest id grouped by
    their mean features, each group relabelled ``10000 + group``)."""
    values, inverse = torch.unique(ids, return_inverse=True)
    if values.numel() <= 2:
        return ids
    flat = inverse.flatten()
    sums = torch.zeros(values.numel(), feats.shape[1], dtype=feats.dtype, device=feats.device)
    sums.index_add_(0, flat, feats)
    counts = torch.bincount(flat, minlength=values.numel()).to(feats.dtype)
    means = F.normalize(sums / counts[:, None], dim=1)[1:]
    sim = means @ means.T
    groups = connected_components((sim.max() - sim) <= eps)
    new_ids = torch.cat([values[:1], groups.to(values.dtype) + MERGED_ID])
    return new_ids[inverse]


def scope_attention(sim: torch.Tensor, ids: torch.Tensor, tau: float) -> torch.Tensor:
    """CorrCLIP's scope reconstruction on one window: cosines ``[L, L]`` and merged ids ``[L]``
    -> attention weights ``[L, L]``."""
    label = torch.unique(ids, return_inverse=True)[1]
    segmented = label != 0
    allowed = (label[:, None] == label[None, :]) & segmented[:, None]
    allowed |= (~segmented[:, None] | ~segmented[None, :]) & (sim > sim.mean())
    return (sim.masked_fill(~allowed, float("-inf")) * tau).softmax(dim=-1)


def region_class_tokens(backbone, inputs, token_ids: List[torch.Tensor], grid: Tuple[int, int]) -> torch.Tensor:
    """CorrCLIP's semantic branch on windows: one class token per region of each window's id map
    ``token_ids[i]`` (on CLIP's ``h x w`` grid), started from CLIP's CLS embedding and run through every
    block (``inputs``: each block's input ``[B, 1 + h*w, C]``), attending only to the CLS token and its
    region's patches (residual and MLP kept); its last output painted on its region, nearest-resized to
    ``grid``: ``[B, grid_h * grid_w, C]``."""
    h, w = token_ids[0].shape
    members, paint = [], []
    for tok in token_ids:
        values, index = torch.unique(tok.long(), return_inverse=True)
        one_hot = F.one_hot(index.flatten(), values.numel()).T.bool()               # [R, h*w]
        members.append(one_hot)
        paint.append(F.interpolate(one_hot.view(-1, 1, h, w).float(), size=grid, mode="nearest").flatten(1))
    b, most = len(token_ids), max(m.shape[0] for m in members)
    allowed = torch.zeros(b, most, 1 + h * w, dtype=torch.bool, device=inputs[0].device)
    allowed[:, :, 0] = True                                                          # the CLS token
    for i, m in enumerate(members):
        allowed[i, :m.shape[0], 1:] = m
    blocks = backbone.visual.transformer.resblocks
    tokens = inputs[0][:, :1].expand(b, most, -1)                                    # CLIP's CLS embedding
    for blk, stream in zip(blocks, inputs):
        q = _project(blk.attn, blk.ln_1(tokens), 0)
        y = blk.ln_1(stream)
        k, v = _project(blk.attn, y, 1), _project(blk.attn, y, 2)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        tokens = tokens + blk.ls_1(blk.attn.out_proj(mixed.transpose(1, 2).reshape(b, most, -1)))
        tokens = tokens + blk.ls_2(blk.mlp(blk.ln_2(tokens)))
    return torch.stack([p.T.to(tokens.dtype) @ tokens[i, :p.shape[0]] for i, p in enumerate(paint)])


@HEADS.register_module("corrclip")
class CorrCLIPHead(Head):
    """Args:
        dino: the provider of DINO's last-block ``q + k`` (``timm_vit`` with ``output="q+k"``).
        regions: the region-map provider (``features.regions``: files or SAM masks).
        tau: temperature of the scope-restricted correlations (official 4).
        alpha, beta: weights of the spatial and semantic branches (official 1.0 and 0.5).
        spatial_blocks: lower blocks the spatial branch averages (None: the official choice by
            depth, 5 / 12 / 28 for 12 / 24 / 32 blocks, else ``depth - 4``, at least 1).
        merge_eps: DBSCAN radius of the region merging (official 0.2); None skips merging.
    """

    keep_residual = False
    keep_ffn = False
    keeps_block_inputs = True

    def __init__(self, dino: str = "dino", regions: str = "regions", tau: float = 4.0, alpha: float = 1.0,
                 beta: float = 0.5, spatial_blocks: Optional[int] = None, merge_eps: Optional[float] = 0.2) -> None:
        super().__init__()
        self.dino, self.regions = dino, regions
        self.requires = (dino, regions)
        self.tau, self.alpha, self.beta = float(tau), float(alpha), float(beta)
        self.spatial_blocks = spatial_blocks
        self.merge_eps = merge_eps

    def output_grid(self, window_size: Tuple[int, int], backbone,
                    providers: Optional[Mapping[str, torch.nn.Module]] = None) -> Tuple[int, int]:
        provider = (providers or {}).get(self.dino)
        if provider is None or not hasattr(provider, "output_grid"):
            raise ValueError(f"corrclip reads the grid of provider {self.dino!r}, which declares none")
        return provider.output_grid(window_size)

    def num_spatial(self, depth: int) -> int:
        return spatial_block_count(depth, self.spatial_blocks)

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        if view.inputs is None:
            raise ValueError("corrclip needs every block's input tokens: prefix(..., keep_inputs=True)")
        dino = aux[self.dino].float()
        b, _, rows, cols = dino.shape
        feats = F.normalize(dino.flatten(2).transpose(1, 2), dim=-1)                # [B, L, C]
        sim = feats @ feats.transpose(1, 2)
        ids = F.interpolate(aux[self.regions].float(), size=(rows, cols), mode="nearest")[:, 0].long()
        merged, weights = [], []
        for i in range(b):
            m = ids[i] if self.merge_eps is None else merge_regions(ids[i], feats[i], self.merge_eps)
            merged.append(m)
            weights.append(scope_attention(sim[i], m.flatten(), self.tau))
        weights = torch.stack(weights)                                               # [B, L, L]

        depth = len(view.inputs)
        spatial = self.num_spatial(depth)
        if not 1 <= spatial <= depth - 1:
            raise ValueError(f"corrclip: {spatial} spatial blocks for a {depth}-block tower")
        lower = torch.stack(list(view.inputs[depth - 1 - spatial:depth - 1])).mean(0)
        blk = backbone.last_block
        main = self._mixed(view, backbone, view.v, weights, (rows, cols))
        side = self._mixed(view, backbone, _project(blk.attn, blk.ln_1(lower), 2), weights, (rows, cols))
        semantic = self._semantic(view, backbone, merged, (rows, cols))
        proj = backbone.project
        out = proj(main) + self.alpha * proj(side) + self.beta * proj(semantic)
        return DenseFeatures.from_tokens(out, (rows, cols))

    @staticmethod
    def _mixed(view, backbone, v: torch.Tensor, weights: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """``out_proj(A @ bilinear(v))`` of the last block's values ``v`` ``[B, heads, N, d]``: ``[B, I*J, C]``."""
        blk = backbone.last_block
        b, heads, n, d = v.shape
        h, w = view.grid
        v = v[:, :, 1:].transpose(1, 2).reshape(b, h, w, heads * d).permute(0, 3, 1, 2).float()
        v = F.interpolate(v, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        return blk.attn.out_proj((weights @ v).to(view.x.dtype))

    @staticmethod
    def _semantic(view, backbone, merged: List[torch.Tensor], grid: Tuple[int, int]) -> torch.Tensor:
        """Region class tokens through the whole tower, painted on their regions: ``[B, I*J, C]``."""
        token_ids = [F.interpolate(ids[None, None].float(), size=view.grid, mode="nearest")[0, 0] for ids in merged]
        return region_class_tokens(backbone, view.inputs, token_ids, grid)

    def extra_repr(self) -> str:
        return (f"dino={self.dino!r}, regions={self.regions!r}, tau={self.tau}, alpha={self.alpha}, "
                f"beta={self.beta}, spatial_blocks={self.spatial_blocks}, merge_eps={self.merge_eps}")
