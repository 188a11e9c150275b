"""OV-Stitcher (CVPR 2026 Findings): CorrCLIP's three branches computed on the whole image, with the
sliding windows stitched together, instead of window by window.

The windows run CLIP as usual (every block's input kept); then, on the whole image
(:meth:`OVStitcherHead.finish_context`), with DINO's stitched last-block features ``f``
(``stitched_vit`` provider: DINO's last block attending across all windows, ``[C, I, J]`` on the
canvas's DINO grid) and the region map ``m`` (``regions``, nearest to the canvas, then to ``I x J``):

1. **Region merging** and **scope reconstruction** as CorrCLIP's (``merge_regions``,
   ``scope_attention`` with ``tau = 4``), once over the whole image: ``A`` is ``[I*J, I*J]``.
2. **Main branch**: the last block's values of its input, per window, stitched onto CLIP's grid of the
   canvas (:func:`~ovdense.ops.windows.stitch_grid`, ``valid="window"``), bilinear to ``I x J``,
   mixed by ``A``, ``out_proj``.
3. **Spatial branch**: for each of the ``S`` blocks before the last two (blocks ``L-2-S .. L-3``;
   ``S = 5`` for 12 blocks), that block re-run on the stitched image: ``x``, ``q``, ``k``, ``v`` of its
   input stitched across windows, one attention over all the image's tokens, residual and MLP; the
   mean of the ``S`` outputs gives values mixed by ``A`` as in 2.
4. **Semantic branch**: CorrCLIP's region class tokens in every window (the merged map cut into the
   windows), painted on the window's DINO grid and stitched.
5. ``features = normalise(proj(ln_post(main) + alpha ln_post(spatial) + beta ln_post(semantic)))`` on
   DINO's grid of the canvas (``alpha = 1``, ``beta = 0.5``); the logits are resized to the canvas,
   then (by the segmenter) to the output, as the official code resizes twice.

With the decoder rule ``region_mode`` (the map correction) and the CorrCLIP-style decoding this is
the official ``OVStitcherSegmentation.predict`` with pre-generated region maps.

Official quirks (atw617/OV-Stitcher ``open_clip/transformer.py``, read at commit 91a9489), kept:

* the spatial branch's stitched attention is **one head over the full width** (``q k^T`` of the whole
  ``C``, scaled by the per-head ``d ** -0.5``), and its mask is a boolean added to the logits (all
  False there: no effect);
* windows are placed on the patch grids at ``y1 // p``, ``x1 // p`` (floor), so a last window that
  starts between cells is shifted by up to ``p - 1`` pixels;
* the merged map's ids on padded window pixels are 0 (zero padding of the id map);
* region tokens are painted on ``(crop // 8)``-sized grids in the official code; here on the padded
  window's DINO grid (the same for full windows, i.e. always in the published protocol).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..ops.windows import crop_windows, stitch_grid
from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head
from .corrclip import merge_regions, region_class_tokens, scope_attention, spatial_block_count

#: The extra holding every block's input of every window ``[B, blocks, 1 + h*w, C]`` until the
#: whole-image step (dropped then).
INPUTS = "ovstitcher_inputs"


@HEADS.register_module("ovstitcher")
class OVStitcherHead(Head):
    """Args:
        dino: the image-scope provider of DINO's stitched features (``stitched_vit``).
        regions: the region-map provider (``features.regions``: files or SAM masks).
        tau, alpha, beta, spatial_blocks, merge_eps: as CorrCLIP's (official 4, 1.0, 0.5, by depth, 0.2).

    The windows alone give MaskCLIP's features (and keep every block's input); the whole-image step
    replaces them.
    """

    keep_residual = False
    keep_ffn = False
    keeps_block_inputs = True
    extras = (INPUTS,)

    def __init__(self, dino: str = "stitched_dino", regions: str = "regions", tau: float = 4.0, alpha: float = 1.0,
                 beta: float = 0.5, spatial_blocks: Optional[int] = None, merge_eps: Optional[float] = 0.2) -> None:
        super().__init__()
        self.dino, self.regions = dino, regions
        self.context_requires = (dino, regions)
        self.tau, self.alpha, self.beta = float(tau), float(alpha), float(beta)
        self.spatial_blocks = spatial_blocks
        self.merge_eps = merge_eps

    def num_spatial(self, depth: int) -> int:
        return spatial_block_count(depth, self.spatial_blocks)

    def mix(self, view, aux=None) -> torch.Tensor:
        return view.v

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        if view.inputs is None:
            raise ValueError("ovstitcher needs every block's input tokens: prefix(..., keep_inputs=True)")
        out = super().forward(view, backbone, aux)
        return DenseFeatures(out.features, {INPUTS: torch.stack(list(view.inputs), dim=1)})

    # ------------------------------------------------------------------ the whole image
    @torch.no_grad()
    def finish_context(self, context, backbone) -> None:
        """Stitch the windows of ``context`` into one whole-image map on DINO's grid of the canvas:
        sets ``context.features`` to ``[1, D, I, J]`` and makes it a whole-image context."""
        if INPUTS not in context.extras:
            raise ValueError("ovstitcher: the context holds no block inputs (the windows ran another head)")
        inputs = context.extras[INPUTS]                                                 # [n, L, T, C]
        if not hasattr((context.providers or {}).get(self.dino), "context_map"):
            raise ValueError(f"ovstitcher reads DINO's stitched features from the image-scope provider "
                             f"{self.dino!r}: configure features={{{self.dino!r}: dict(type='stitched_vit', ...)}}")
        dino = context.feature_map(self.dino)[0].float()                                # [C', I, J]
        rows, cols = dino.shape[-2:]
        canvas = tuple(context.resized_size)
        feats = dino.flatten(1).T                                    # [I*J, C'], unit rows (stitched_vit)
        # the region map: input size -> canvas -> DINO grid, nearest each time (the official steps)
        ids = context.feature_map(self.regions).float()
        ids = F.interpolate(ids, size=canvas, mode="nearest")
        ids = F.interpolate(ids, size=(rows, cols), mode="nearest")[0, 0].long()
        merged = ids if self.merge_eps is None else merge_regions(ids, feats, self.merge_eps)
        weights = scope_attention(feats @ feats.T, merged.flatten(), self.tau)           # [I*J, I*J]

        blocks = backbone.visual.transformer.resblocks
        depth = len(blocks)
        spatial = self.num_spatial(depth)
        if not 1 <= spatial <= depth - 2:
            raise ValueError(f"ovstitcher: {spatial} spatial blocks for a {depth}-block tower")
        patch = backbone.patch_size[0]
        n, _, tokens, width = inputs.shape
        y1, y2, x1, x2 = context.boxes[0]
        left, right, top, bottom = context.pad
        h, w = (y2 - y1 + top + bottom) // patch, (x2 - x1 + left + right) // patch
        if tokens != 1 + h * w:
            raise ValueError(f"ovstitcher: windows of {tokens - 1} tokens, expected {h}x{w}")

        def stitched(t: torch.Tensor) -> torch.Tensor:  # window patch tokens [n, h*w, C] -> [N, C] on CLIP's grid
            grid = t.transpose(1, 2).reshape(n, -1, h, w).float()
            return stitch_grid(grid, context.boxes, context.pad, patch, canvas, valid="window").flatten(1).T

        last = blocks[-1]
        main = _values(last, inputs[:, -1])[:, 1:]
        side = torch.stack([_stitched_block(blk, inputs[:, i], stitched)
                            for i, blk in enumerate(blocks) if depth - 2 - spatial <= i <= depth - 3]).mean(0)
        clip_grid = (canvas[0] // patch, canvas[1] // patch)
        values = torch.stack([stitched(main), _values(last, side.to(inputs.dtype)).float()])   # [2, Nc, C]
        values = values.transpose(1, 2).reshape(2, width, *clip_grid)
        values = F.interpolate(values, size=(rows, cols), mode="bilinear", align_corners=False).flatten(2)
        mixed = last.attn.out_proj((weights @ values.transpose(1, 2)).to(inputs.dtype))     # [2, I*J, C]
        semantic = self._semantic(backbone, inputs, merged, context, (rows, cols))          # [I*J, C]
        out = backbone.visual.ln_post(torch.cat([mixed, semantic[None].to(mixed.dtype)]))
        out = out[0] + self.alpha * out[1] + self.beta * out[2]
        proj = backbone.visual.proj
        out = out @ proj if proj is not None else out
        context.features = F.normalize(out.float(), dim=-1).T.reshape(1, -1, rows, cols)
        height, width_ = canvas
        context.whole = True
        context.boxes = [(0, height, 0, width_)]
        context.pad = (0, 0, 0, 0)
        context.extras = {}
        context.aux = {}
        context._canvases.clear()

    def _semantic(self, backbone, inputs, merged, context, grid) -> torch.Tensor:
        """CorrCLIP's region tokens in every window, with the whole image's merged map cut into the
        windows; painted on each window's DINO grid and stitched: ``[I*J, C]``."""
        canvas = tuple(context.resized_size)
        provider = (context.providers or {}).get(self.dino)
        dino_patch = int(provider.patch_size[0]) if provider is not None else canvas[0] // grid[0]
        full = F.interpolate(merged[None, None].float(), size=canvas, mode="nearest")[0]
        windows = crop_windows(full, context.boxes, context.pad, 0.0)                  # [n, 1, H, W]
        patch = backbone.patch_size[0]
        height, width = windows.shape[-2:]
        token_grid = (height // patch, width // patch)
        token_ids = F.interpolate(windows, size=token_grid, mode="nearest")[:, 0]
        window_grid = (height // dino_patch, width // dino_patch)
        blocks = list(inputs.unbind(1))
        painted = region_class_tokens(backbone, blocks, list(token_ids), window_grid)   # [n, gh*gw, C]
        painted = painted.transpose(1, 2).reshape(len(token_ids), -1, *window_grid).float()
        return stitch_grid(painted, context.boxes, context.pad, dino_patch, canvas, valid="padded").flatten(1).T

    def window_logits(self, context, text: torch.Tensor, backbone) -> torch.Tensor:
        """Cosines of the features and ``text``; after the whole-image step, resized to the canvas
        (the official first resize): ``[1, Q, H', W']``."""
        logits = torch.einsum("ndhw,qd->nqhw", context.features, text.to(context.features))
        if context.whole and tuple(logits.shape[-2:]) != tuple(context.resized_size):
            logits = F.interpolate(logits, size=tuple(context.resized_size), mode="bilinear", align_corners=False)
        return logits

    def extra_repr(self) -> str:
        return (f"dino={self.dino!r}, regions={self.regions!r}, tau={self.tau}, alpha={self.alpha}, "
                f"beta={self.beta}, spatial_blocks={self.spatial_blocks}, merge_eps={self.merge_eps}")


def _values(blk, x: torch.Tensor) -> torch.Tensor:
    """The attention's value projection of ``ln_1(x)`` (all heads, ``[..., C]``)."""
    c = blk.attn.embed_dim
    bias = None if blk.attn.in_proj_bias is None else blk.attn.in_proj_bias[2 * c:]
    return F.linear(blk.ln_1(x), blk.attn.in_proj_weight[2 * c:], bias)


def _stitched_block(blk, x: torch.Tensor, stitched) -> torch.Tensor:
    """Block ``blk`` re-run on the whole image: its input ``x`` (``[n, T, C]`` per window) and the
    ``q``, ``k``, ``v`` of ``ln_1(x)`` stitched across windows, one attention of the full width over
    every token (the official single-head form), residual and MLP: ``[N, C]``."""
    c = blk.attn.embed_dim
    qkv = F.linear(blk.ln_1(x), blk.attn.in_proj_weight, blk.attn.in_proj_bias)[:, 1:]
    q, k, v = (stitched(t) for t in qkv.split(c, dim=-1))
    scale = (c // blk.attn.num_heads) ** -0.5
    mixed = torch.softmax((q @ k.T) * scale, dim=-1) @ v
    y = stitched(x[:, 1:]) + blk.ls_1(blk.attn.out_proj(mixed.to(x.dtype))).float()
    return y + blk.ls_2(blk.mlp(blk.ln_2(y.to(x.dtype)))).float()
