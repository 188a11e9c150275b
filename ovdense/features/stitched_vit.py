"""A ViT run window by window whose last block attends across the whole image (OV-Stitcher's DINO).

OV-Stitcher (CVPR 2026 Findings) runs DINO on the segmenter's sliding windows, then "stitches" them:
the tokens entering DINO's last block and that block's ``q``, ``k``, ``v`` are averaged over the
windows onto one patch grid of the whole canvas (:func:`~ovdense.ops.windows.stitch_grid`, padding
cut in whole cells), and the last block's attention runs over all of the image's tokens at once::

    x = stitch(norm(tokens entering the last block));  q, k, v = stitch(q), stitch(k), stitch(v)
    x = x + proj(softmax(q k^T * scale) v)          (per head)
    x = x + mlp(norm2(x));  features = x / |x|

``features=dict(dino=dict(type="stitched_vit", model_name="vit_base_patch8_224.dino",
weights="checkpoints/dino_vitbase8_pretrain.pth"))``: the model, weights and input handling are the
``timm_vit`` provider's (``pos_interp="dino"`` by default here). It is image-scope and reads the
image's context (its canvas and window plan), so it runs once per image, after the windows are
planned, and gives ``[1, C, H' // p, W' // p]`` on the canvas's patch grid.

Official quirks kept (atw617/OV-Stitcher ``ov_stitcher_segmentor.py``, ``forward_feature``):

* the residual stream is DINO's ``get_intermediate_layers(n=2)[0]``: the penultimate block's output
  **after the final norm**, where the block's own input is un-normed;
* DINO's input is the CLIP-normalised window (mmseg's 0-255 CLIP mean and std), zero-padded
  (``windows.pad_to``), un-normalised with CLIP's [0, 1] mean and std, then normalised with the
  model's: ``input_from="clip"`` (default) computes exactly that; ``"pixels"`` normalises the uint8
  window directly and pads with CLIP's mean colour (the same up to float rounding: DINO's features
  move by ~2e-6, which is enough to flip the scope threshold's near-ties downstream);
* DINO runs in fp16 in the official code; here in the provider's dtype.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..ops.windows import crop_windows, stitch_grid
from ..registry import FEATURES
from .timm_vit import TimmViTFeatures

#: CLIP's mean and std in [0, 1] (OV-Stitcher's ``UnNormalize``) and in 0-255 (its data preprocessor).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN_255 = (122.771, 116.746, 104.094)
CLIP_STD_255 = (68.501, 66.632, 70.323)
INPUTS = ("clip", "pixels")


def _channels(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


@FEATURES.register_module("stitched_vit")
class StitchedViTFeatures(TimmViTFeatures):
    """Args: those of ``timm_vit`` (``layer``, ``norm`` and ``output`` do not apply: the stitched
    last block is the output), and ``input_from``: ``"clip"`` (the official input chain) or
    ``"pixels"`` (see the module doc)."""

    scope = "image"
    reads_context = True

    def __init__(self, model_name: str = "vit_base_patch8_224.dino", pos_interp: str = "dino",
                 input_from: str = "clip", **kwargs: Any) -> None:
        for key in ("layer", "norm", "output"):
            if key in kwargs:
                raise TypeError(f"stitched_vit: {key!r} does not apply (the output is the stitched last block)")
        if input_from not in INPUTS:
            raise ValueError(f"stitched_vit: input_from must be one of {INPUTS}, got {input_from!r}")
        super().__init__(model_name=model_name, pos_interp=pos_interp, **kwargs)
        self.input_from = input_from
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean01", _channels(cfg.get("mean", (0.485, 0.456, 0.406))))
        self.register_buffer("std01", _channels(cfg.get("std", (0.229, 0.224, 0.225))))

    def context_grid(self, context: Any):
        """The ``(rows, cols)`` of the output for ``context``: its canvas over the patch size."""
        ph, pw = self.patch_size
        return context.resized_size[0] // ph, context.resized_size[1] // pw

    @torch.no_grad()
    def context_map(self, context: Any, name: str) -> torch.Tensor:
        canvas = context.resized_image
        if canvas is None:
            raise ValueError(f"provider {name!r} runs on the uint8 canvas, which this context does not hold "
                             f"(use predict / encode_images)")
        if self.bgr or self.denorm is not None or self.square_input or self.input_size is not None:
            raise ValueError(f"provider {name!r}: bgr, denorm, square_input and input_size do not apply to "
                             f"stitched windows")
        windows = self._windows(canvas, context.boxes, context.pad)
        ph, pw = self.patch_size
        if ph != pw:
            raise ValueError(f"provider {name!r}: stitching needs square patches, got {ph}x{pw}")
        n, _, height, width = windows.shape
        windows = windows[..., : height // ph * ph, : width // pw * pw]
        rows, cols = windows.shape[-2] // ph, windows.shape[-1] // pw
        dtype = next(self.model.parameters()).dtype
        m = self.model
        last = len(m.blocks) - 1
        tokens, (q, k, v) = self._block_qkv(windows.to(dtype), last, height == width)
        blk = m.blocks[last]
        attn = blk.attn
        prefix = m.num_prefix_tokens
        residual = m.norm(tokens)[:, prefix:]                                          # [n, L, C]
        maps = [residual] + [t[:, :, prefix:].transpose(1, 2).reshape(n, rows * cols, -1)
                             for t in (attn.q_norm(q), attn.k_norm(k), v)]            # channel head * d + j
        grids = [stitch_grid(t.transpose(1, 2).reshape(n, -1, rows, cols).float(), context.boxes, context.pad, ph,
                             context.resized_size) for t in maps]
        size = grids[0].shape[-2:]
        x, q, k, v = (g.flatten(1).T for g in grids)                                   # [N, C]
        heads = attn.num_heads
        q, k, v = (t.reshape(t.shape[0], heads, -1).transpose(0, 1) for t in (q, k, v))  # [heads, N, d]
        mixed = torch.softmax((q @ k.transpose(1, 2)) * attn.scale, dim=-1) @ v
        mixed = mixed.transpose(0, 1).reshape(x.shape[0], -1).to(dtype)
        x = x.to(dtype) + blk.ls1(attn.proj(mixed))
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
        x = F.normalize(x.float(), dim=-1)
        return x.T.reshape(1, -1, *size)

    def _windows(self, canvas: torch.Tensor, boxes, pad) -> torch.Tensor:
        """The normalised, padded windows DINO sees, from the uint8 canvas ``[3, H, W]``."""
        device = canvas.device
        if self.input_from == "clip":  # CLIP-normalised, zero-padded, un-normalised, re-normalised
            x = (canvas[None].float() - _channels(CLIP_MEAN_255).to(device)) / _channels(CLIP_STD_255).to(device)
            windows = crop_windows(x[0], boxes, pad, 0.0)
            windows = windows * _channels(CLIP_STD).to(device) + _channels(CLIP_MEAN).to(device)
            return (windows - self.mean01) / self.std01
        x = (canvas[None].float() - self.mean) / self.std
        fill = ((_channels(CLIP_MEAN).to(device) * 255.0 - self.mean) / self.std).flatten()
        return crop_windows(x[0], boxes, pad, fill)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the stitched_vit provider runs on an image's context (its canvas and window plan), "
                           "not on bare pixels")
