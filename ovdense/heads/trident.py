"""Trident (Yu et al., ICCV 2025, "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation"):
CLIP values mixed by DINO affinities per window, the windows spliced into one whole-image map,
then aggregated over the whole image by SAM's last global attention.

Window side (:meth:`TridentHead.forward`): per window, ProxyCLIP's features with the window's own
mean (what the head gives where no ``finish_context`` runs), and the last block's values ``v`` of
the patch tokens (per head) in the extra ``trident_v``; the DINO features of the window are the
provider ``source``'s (``aux[source]``, ``[B, C, I, J]``: DINO ViT-B/16's normalised last-block
tokens).

Image side (:meth:`TridentHead.finish_context`, called by the segmenter once all windows of an
image ran), with ``f`` the DINO features of every window ``w`` of the image:

    S_w = cos(f_m, f_n)                                  per window  [IJ, IJ]
    A_w = softmax_n(mask((S_w - beta * mean(S)) * gamma))  mean over ALL windows of the image;
                                                          entries < 0 -> -inf
    z_w = out_proj(A_w bilinear(v_w, h x w -> I x J))     no ls_1, residual, MLP (ProxyCLIP's mix)
    Z   = z_w spliced on the canvas's patch grid (I/h cells per CLIP patch), overlaps averaged
    V   = bilinear(Z, -> SAM grid h_s x w_s)
    SAM: the image resized (cv2, bilinear) to multiples of CLIP's patch, embedded as
         ``SamPredictor.set_image`` does; of the encoder's last block (a global one):
         P_k = softmax attention of head k (rel-pos included), u_k its values, both cut to the
         cells covering the image (h_s = input_h // p_sam, w_s = input_w // p_sam)
         C_k = cos(u_k,m, u_k,n);  t_m = cos_fac * mean_{k,n} C_k[m, n]
         t_m = 0.6 where t_m < 0 (only with refine_neg_cos=False);  t_m = min(t_m, 0.9)
         G   = mean_k (P_k * [C_k > t]) ;  G = G / rowsum(G)
    features = normalise(ln_post(G V) @ proj)           one map [1, D, h_s, w_s] for the image

and the logits are resized straight to the output (``F.interpolate(logits, ori_shape)``): the
context becomes a whole-image one (``context.whole = True``).

This is the official ``Trident.get_trident_seg`` + ``VisionTransformer.custom_attn`` /
``guidance_attn`` / ``get_sam_sim`` (YuHengsss/Trident). SAM's attention is computed here from
segment-anything's own modules (``patch_embed``, ``blocks[:-1]``, the last block's ``norm1``,
``attn.qkv``, ``add_decomposed_rel_pos``); nothing is patched. Official quirks, and what this
head does (default = the published numbers' behaviour):

* Precision: the official code runs CLIP, DINO and SAM's image encoder in fp16. Here CLIP runs in
  the segmenter's dtype, DINO and SAM in their own (fp32 unless cast), and the aggregation in fp32.
  The goldens compare fp32 runs.
* The DINO threshold's mean is taken over every window of the image (one batched
  ``encode_image`` call per image): ``threshold_mean="image"`` (default); ``"window"`` uses each
  window's own mean (ProxyCLIP's per-window evaluation).
* SAM sees the *original* image (the file, not the resized canvas), resized with ``cv2.resize``
  (bilinear) so that both sides are multiples of CLIP's patch (16), then ``set_image``'s own
  resize to 1024 on the long side (``sam_resize="cv2"``, default). ``sam_resize=None`` skips the
  cv2 step (the image goes to SAM as it is).
* Cityscapes: the official code (``dataset_type == 'CityscapesDataset'``) embeds the left and right
  halves of the image separately and splices two SAM aggregations side by side
  (``split_halves=True`` in the Cityscapes config; default False).
* The CLIP canvas is the test-pipeline image resized by ``preprocess_image`` to multiples of 16
  (bilinear on the normalised image, each side at least the crop): the preprocessor's
  ``multiple_of=16, min_fit=336`` in the configs. DINO's windows are cut from the uint8 canvas, so
  when that resize happens DINO sees it rounded to uint8 (the official: unrounded floats); a
  difference of at most half a grey level. The official DINO input is also CLIP-normalised with
  mmseg's constants and "un-normalised" with OpenAI's (a gain of 1 - 2e-5): not reproduced.
* Windows are padded to multiples of 56 (``compute_padsize``); in the published protocols every
  window is 336 x 336 (no padding). A window smaller than the crop (a canvas side below 336 that
  is already a multiple of 16) or non-square windows make the official code fail when it splices
  (shape mismatch; it also swaps H and W in ``token_size``): here such windows are spliced as
  they are (the intended maths), and padded windows are refused.
* The threshold ``t`` is capped at 0.9; with ``refine_neg_cos=False`` (Cityscapes, ADE20K) a
  negative threshold becomes 0.6. ``cos_fac`` per dataset (VOC20: 0, Cityscapes: 3).
* When a token's every thresholded DINO affinity is negative the official softmax returns NaN
  (``empty_rows="nan"``); by default the token attends to itself (``empty_rows="self"``).
* ``sam_refinement`` (the official ``--sam_refine`` post-processing: SAM prompted with boxes,
  points and masks of each class's connected regions) is the decoder rule ``trident_sam_refine``
  (:mod:`ovdense.rules.trident_sam_refine`), on in the configs.
* The last SAM block must be a global-attention one (it is in ViT-B/L/H): the official code reads
  the last block's attention, whatever it is, and assumes a 64 x 64 grid (1024 px, patch 16);
  here the grid is the encoder's own.
"""
from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head


def sam_input(sam: torch.nn.Module, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """SAM's padded, normalised encoder input ``[1, 3, S, S]`` of a uint8 RGB image and the size of
    the resized image inside it, as ``SamPredictor.set_image`` makes them."""
    from segment_anything.utils.transforms import ResizeLongestSide

    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(np.ascontiguousarray(image))
    x = torch.as_tensor(resized, device=sam.pixel_mean.device).permute(2, 0, 1).contiguous()[None]
    return sam.preprocess(x), (int(x.shape[-2]), int(x.shape[-1]))


def sam_last_attention(sam: torch.nn.Module, image: np.ndarray, stride: Optional[int] = None):
    """The last image-encoder block's attention and values of a uint8 RGB image, on the cells that
    cover it: ``(probs [heads, L, L], values [heads, L, d], (h_s, w_s))`` with ``L = h_s * w_s``,
    ``h_s = input_h // stride`` (``stride``: the encoder's patch by default). The attention rows are
    softmaxed over every cell of the padded input (padding included), as the encoder does, then cut."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    enc = sam.image_encoder
    x, input_size = sam_input(sam, image)
    stride = int(stride or enc.patch_embed.proj.kernel_size[0])
    x = enc.patch_embed(x.to(enc.patch_embed.proj.weight.dtype))
    if enc.pos_embed is not None:
        x = x + enc.pos_embed
    for blk in enc.blocks[:-1]:
        x = blk(x)
    last = enc.blocks[-1]
    if last.window_size > 0:
        raise ValueError("trident: the SAM encoder's last block uses windowed attention; a global one is needed")
    attn = last.attn
    y = last.norm1(x)
    b, gh, gw, _ = y.shape
    heads = attn.num_heads
    qkv = attn.qkv(y).reshape(b, gh * gw, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, gh * gw, -1).unbind(0)
    hs, ws = min(input_size[0] // stride, gh), min(input_size[1] // stride, gw)
    n = hs * ws
    probs = torch.empty(b * heads, n, n, dtype=torch.float32, device=x.device)
    for i in range(b * heads):  # one head at a time: [gh*gw, gh*gw] each
        a = (q[i:i + 1] * attn.scale) @ k[i:i + 1].transpose(-2, -1)
        if attn.use_rel_pos:
            a = add_decomposed_rel_pos(a, q[i:i + 1], attn.rel_pos_h, attn.rel_pos_w, (gh, gw), (gh, gw))
        a = a.softmax(dim=-1)[0].view(gh, gw, gh, gw)[:hs, :ws, :hs, :ws]
        probs[i].view(hs, ws, hs, ws).copy_(a)
    values = v.view(b * heads, gh, gw, -1)[:, :hs, :ws].reshape(b * heads, n, -1).float()
    return probs, values, (hs, ws)


def sam_guidance(probs: torch.Tensor, values: torch.Tensor, cos_fac: float, refine_neg_cos: bool = True,
                 neg_value: float = 0.6, cap: float = 0.9, use_threshold: bool = True) -> torch.Tensor:
    """The official ``get_sam_sim`` for one image: ``[heads, L, L]`` attention, ``[heads, L, d]``
    values -> row-normalised aggregation weights ``[L, L]`` (one matrix shared by all CLIP heads)."""
    u = F.normalize(values, dim=-1)
    heads, n = u.shape[:2]
    # mean over heads and columns of the cosines, without the [heads, L, L] buffer
    thresh = cos_fac * (torch.einsum("hmc,hc->hm", u, u.sum(dim=1)) / n).mean(dim=0)  # [L]
    if not refine_neg_cos:
        thresh = torch.where(thresh < 0.0, torch.full_like(thresh, neg_value), thresh)
    thresh = torch.where(thresh > cap, torch.full_like(thresh, cap), thresh)[:, None]
    out = torch.zeros(n, n, dtype=probs.dtype, device=probs.device)
    for i in range(heads):
        if use_threshold:
            keep = torch.mm(u[i], u[i].T).gt_(thresh)
            out.addcmul_(probs[i], keep)
        else:
            out += probs[i]
    out.div_(heads)
    return out.div_(out.sum(dim=-1, keepdim=True))


def cv2_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """The official SAM image: ``cv2.resize`` (bilinear) up to the next multiples of ``multiple``."""
    h, w = image.shape[:2]
    th, tw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (th, tw) == (h, w):
        return image
    import cv2

    return cv2.resize(np.ascontiguousarray(image), (tw, th))


@HEADS.register_module("trident")
class TridentHead(Head):
    """Args:
        source: the window-scope provider with DINO's features (``timm_vit``, ViT-B/16, normed tokens).
        sam: the image-scope ``sam`` provider whose ``Sam`` module gives the last global attention.
        beta, gamma: ProxyCLIP's threshold factor and temperature of the DINO affinities (1.2, 3.0).
        cos_fac: factor of the SAM value-cosine threshold (official 1.2; VOC20 0, Cityscapes 3).
        refine_neg_cos: keep negative thresholds (official default True; Cityscapes, ADE20K False:
            a negative threshold becomes ``neg_value``).
        neg_value, cap: 0.6 and 0.9 as in the official ``get_sam_sim``.
        split_halves: embed the left and right halves of the image separately (official Cityscapes).
        sam_resize: ``"cv2"`` (official: the original image cv2-resized to multiples of CLIP's patch)
            or None.
        threshold_mean: ``"image"`` (official: mean affinity over all windows of the image) or ``"window"``.
        empty_rows: ``"self"`` or ``"nan"`` (the official NaN), as ProxyCLIP's head.
        sam_threshold: apply the SAM value-cosine threshold (official True; False only for ablations
            and the wiring test).
    """

    keep_residual = False
    keep_ffn = False
    extras = ("trident_v",)

    def __init__(self, source: str = "dino", sam: str = "sam", beta: float = 1.2, gamma: float = 3.0,
                 cos_fac: float = 1.2, refine_neg_cos: bool = True, neg_value: float = 0.6, cap: float = 0.9,
                 split_halves: bool = False, sam_resize: Optional[str] = "cv2", threshold_mean: str = "image",
                 empty_rows: str = "self", sam_threshold: bool = True, window_chunk: int = 8) -> None:
        super().__init__()
        checks = {"sam_resize": (sam_resize, ("cv2", None)), "threshold_mean": (threshold_mean, ("image", "window")),
                  "empty_rows": (empty_rows, ("self", "nan"))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"trident: {name} must be one of {allowed}, got {value!r}")
        self.source, self.sam = source, sam
        self.requires = (source,)
        self.context_requires = (sam,)  # read in finish_context from context.providers, not cut into windows
        self.beta, self.gamma, self.cos_fac = float(beta), float(gamma), float(cos_fac)
        self.refine_neg_cos, self.neg_value, self.cap = bool(refine_neg_cos), float(neg_value), float(cap)
        self.split_halves, self.sam_resize = bool(split_halves), sam_resize
        self.threshold_mean, self.empty_rows = threshold_mean, empty_rows
        self.sam_threshold = bool(sam_threshold)
        self.window_chunk = max(int(window_chunk), 1)

    # ------------------------------------------------------------------ window side
    def output_grid(self, window_size: Tuple[int, int], backbone, providers=None) -> Tuple[int, int]:
        provider = (providers or {}).get(self.source)
        if provider is None or not hasattr(provider, "output_grid"):
            raise ValueError(f"trident reads the grid of provider {self.source!r}, which declares none")
        return tuple(provider.output_grid(window_size))

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        """Per window: ProxyCLIP's features with each window's own mean (the per-window view of the
        head, on DINO's grid), and in the extra ``trident_v`` the last block's values of the patch
        tokens ``[B, heads * d, h, w]`` (channel ``head * d + j``) that :meth:`finish_context` mixes
        again with the mean of the whole image once every window ran."""
        v = view.v[:, :, 1:]
        b, heads, n, d = v.shape
        h, w = view.grid
        values = v.permute(0, 1, 3, 2).reshape(b, heads * d, h, w).float()
        dino = aux[self.source].float()
        tokens = self.mixed_windows(values, dino, backbone, mean=None)  # [B, C, I, J]
        rows, cols = tokens.shape[-2:]
        feats = backbone.project(tokens.flatten(2).transpose(1, 2).to(backbone.dtype))
        return DenseFeatures.from_tokens(feats, (rows, cols), trident_v=values)

    def affinity(self, dino: torch.Tensor, mean: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, C, I, J]`` DINO features -> ``[B, IJ, IJ]`` attention weights (``mean``: the
        threshold's mean affinity; None: each window's own)."""
        f = F.normalize(dino.flatten(2), dim=1)
        sim = torch.einsum("bcm,bcn->bmn", f, f)
        if mean is None:
            mean = sim.mean(dim=(1, 2), keepdim=True)
        sim = (sim - mean * self.beta) * self.gamma
        sim = sim.masked_fill(sim < 0, float("-inf"))
        if self.empty_rows == "self":
            empty = torch.isinf(sim).all(dim=-1, keepdim=True)
            eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
            sim = sim.masked_fill(empty & eye, 0.0)
        return sim.softmax(dim=-1)

    def image_mean(self, dino: torch.Tensor) -> torch.Tensor:
        """The mean DINO cosine over every window of the image (all windows have one size)."""
        total = dino.new_zeros((), dtype=torch.float64)
        count = 0
        for start in range(0, dino.shape[0], self.window_chunk):
            f = F.normalize(dino[start:start + self.window_chunk].flatten(2), dim=1)
            s = f.sum(dim=2)  # sum_m sum_n f_m . f_n = |sum_m f_m|^2
            total = total + (s * s).sum().double()
            count += f.shape[0] * f.shape[2] ** 2
        return (total / count).float()

    def mixed_windows(self, v: torch.Tensor, dino: torch.Tensor, backbone, mean="auto") -> torch.Tensor:
        """ProxyCLIP's mix of every window: ``[nw, C, I, J]`` tokens after ``out_proj`` (``mean``:
        ``"auto"`` follows ``threshold_mean``, None: each window's own)."""
        nw, width, h, w = v.shape
        _, _, rows, cols = dino.shape
        heads = backbone.num_heads
        d = width // heads
        if isinstance(mean, str):
            mean = self.image_mean(dino) if self.threshold_mean == "image" else None
        out_proj = backbone.last_block.attn.out_proj
        outs = []
        for start in range(0, nw, self.window_chunk):
            part = slice(start, start + self.window_chunk)
            weights = self.affinity(dino[part].float(), mean)
            b = weights.shape[0]
            vv = v[part].reshape(b * heads, d, h, w)
            vv = F.interpolate(vv, size=(rows, cols), mode="bilinear", align_corners=False)
            vv = vv.reshape(b, heads, d, rows * cols).transpose(2, 3)  # [b, heads, IJ, d]
            mixed = (weights.unsqueeze(1) @ vv).transpose(1, 2).reshape(b, rows * cols, width)
            z = out_proj(mixed.to(out_proj.weight.dtype)).float()
            outs.append(z.transpose(1, 2).reshape(b, width, rows, cols))
        return torch.cat(outs)

    def splice(self, tokens: torch.Tensor, context, backbone) -> torch.Tensor:
        """Window tokens ``[nw, C, I, J]`` spliced on the canvas's patch grid (times the DINO/CLIP
        ratio), overlaps averaged: ``[1, C, H/p * r, W/p * r]``."""
        p = backbone.patch_size[0]
        if any(context.pad):
            raise ValueError("trident splices windows on the patch grid and takes no padded windows "
                             "(windows pad_to must be 0 or a multiple of the window size)")
        for box in context.boxes:
            if any(c % p for c in box):
                raise ValueError(f"trident splices windows on CLIP's {p}-pixel patch grid: window box {box} is off "
                                 f"it (use preprocess multiple_of={p} and a window stride that is a multiple of {p})")
        y1, y2, x1, x2 = context.boxes[0]
        th, tw = (y2 - y1) // p, (x2 - x1) // p
        rows, cols = tokens.shape[-2:]
        if cols % tw:
            ratio = int(round(rows / th))
            tokens = F.interpolate(tokens, size=(th * ratio, tw * ratio), mode="bilinear", align_corners=False)
        else:
            ratio = cols // tw
        hc, wc = context.resized_size[0] // p * ratio, context.resized_size[1] // p * ratio
        dst = tokens.new_zeros(1, tokens.shape[1], hc, wc)
        count = tokens.new_zeros(1, 1, hc, wc)
        for t, (y1, y2, x1, x2) in zip(tokens, context.boxes):
            ys, xs = slice(y1 // p * ratio, y2 // p * ratio), slice(x1 // p * ratio, x2 // p * ratio)
            dst[0, :, ys, xs] += t
            count[:, :, ys, xs] += 1
        return dst / count

    # ------------------------------------------------------------------ image side
    def sam_images(self, image: np.ndarray, backbone) -> List[np.ndarray]:
        if self.sam_resize == "cv2":
            image = cv2_to_multiple(image, backbone.patch_size[0])
        if not self.split_halves:
            return [image]
        half = image.shape[1] // 2
        return [image[:, :half], image[:, half:]]

    def guidance(self, sam: torch.nn.Module, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """SAM aggregation weights ``[L, L]`` of one (half) image and its grid."""
        probs, values, grid = sam_last_attention(sam, image)
        weights = sam_guidance(probs, values, self.cos_fac, self.refine_neg_cos, self.neg_value, self.cap,
                               self.sam_threshold)
        return weights, grid

    @torch.no_grad()
    def finish_context(self, context, backbone) -> None:
        """Mix, splice and aggregate the windows of ``context`` into one whole-image map: sets
        ``context.features`` to ``[1, D, h_s, w_s]`` and makes it a whole-image context."""
        t0 = time.perf_counter()
        provider = (context.providers or {}).get(self.sam)
        if provider is None or not hasattr(provider, "sam"):
            raise ValueError(f"trident needs the image-scope SAM provider {self.sam!r}: add "
                             f"features=dict({self.sam}=dict(type='sam', ...))")
        if context.image is None:
            raise ValueError("trident runs SAM on the uint8 input image, which this context does not hold "
                             "(use predict / encode_images)")
        if self.source not in context.aux:
            raise ValueError(f"trident: the context holds no {self.source!r} features")
        v = context.extras["trident_v"].float()
        dino = context.aux[self.source].float()
        tokens = self.mixed_windows(v, dino, backbone)
        dst = self.splice(tokens, context, backbone)
        t1 = time.perf_counter()
        sam = provider.sam
        images = self.sam_images(np.asarray(context.image), backbone)
        parts = [dst] if len(images) == 1 else [dst[..., :dst.shape[-1] // 2], dst[..., dst.shape[-1] // 2:]]
        outs = []
        for img, part in zip(images, parts):
            weights, (hs, ws) = self.guidance(sam, img)
            vals = F.interpolate(part, size=(hs, ws), mode="bilinear", align_corners=False)
            vals = vals[0].flatten(1).T  # [L, C]
            outs.append((weights.to(vals.device) @ vals).reshape(hs, ws, -1))
        out = torch.cat(outs, dim=1)  # halves side by side
        hs, ws = out.shape[:2]
        feats = backbone.project(out.reshape(1, hs * ws, -1).to(backbone.dtype))
        dense = DenseFeatures.from_tokens(feats, (hs, ws))
        height, width = context.resized_size
        context.features = dense.features
        context.whole = True
        context.boxes = [(0, height, 0, width)]
        context.pad = (0, 0, 0, 0)
        context.extras = {}
        context.aux = {}  # per-window maps do not fit a whole-image context
        context._canvases.clear()
        context.timings["trident_mix_ms"] = (t1 - t0) * 1e3
        context.timings["trident_sam_ms"] = (time.perf_counter() - t1) * 1e3

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, sam={self.sam!r}, beta={self.beta}, gamma={self.gamma}, "
                f"cos_fac={self.cos_fac}, refine_neg_cos={self.refine_neg_cos}, split_halves={self.split_halves}, "
                f"sam_resize={self.sam_resize!r}, threshold_mean={self.threshold_mean!r}, "
                f"empty_rows={self.empty_rows!r}, sam_threshold={self.sam_threshold}")
