"""OV-Stitcher: ovdense's path against the official code's computation, same weights, same image
(``ovdense benchmark --ovstitcher``).

:class:`OfficialStyleOVStitcher` is written from the official ``OVStitcherSegmentation.forward_slide`` /
``forward_feature`` / ``postprocess_result`` and ``VisionTransformer.forward`` (atw617/OV-Stitcher @91a9489),
over the segmenter's CLIP and its stitched-DINO provider's weights, with the official cost structure:
DINO's *whole* tower on all windows (``get_intermediate_layers(n=2)``, the last block's ``qkv`` caught by a
hook), its ``q``, ``k``, ``v`` and tokens stitched one by one; the region masks as Python lists, the scope
mask as a sum of per-region outer products over the image's DINO cells; CLIP's blocks run **window by
window** with one class token per region of the *whole image* inside each window's sequence, through
``nn.MultiheadAttention`` and an ``(M + 1 + h*w)``-square mask; the spatial branch's blocks re-run on the
stitched tokens; the last block run again for the class tokens; the map correction with one boolean mask
and one ``torch.mode`` per region. DBSCAN is the head's connected components. Everything in fp32 (the
official code runs fp16 on a GPU). Both sides read the same region map (random rectangles standing for SAM
2's masks) from an ``.npz`` file; logits and labels are compared.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..ops.windows import crop_windows, stitch_grid
from .corrclip import _block, official_postprocess, official_scope, region_scene
from .timing import best_ms as _best_ms


class OfficialStyleOVStitcher:
    """The official OV-Stitcher computation on one image (see the module doc)."""

    def __init__(self, seg: Any) -> None:
        self.seg = seg
        self.head = seg.head
        self.dino = seg.features[self.head.dino]
        self.visual = seg.backbone.visual

    def _dino(self, raw_canvas: torch.Tensor, boxes, pad) -> torch.Tensor:
        """DINO on every window (whole tower, hook on the last qkv), stitched; ``[N, C]`` normalised."""
        model, kept = self.dino.model, {}
        hook = model.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: kept.setdefault("qkv", o))
        try:
            windows = self.dino._windows(raw_canvas, boxes, pad)
            square = windows.shape[-2] == windows.shape[-1]
            tokens = self.dino._embed(windows, square)
            outs = []
            for blk in model.blocks:
                outs.append(tokens)
                tokens = blk(tokens)
            penultimate = model.norm(outs[-1])
        finally:
            hook.remove()
        ph = self.dino.patch_size[0]
        n, rows, cols = windows.shape[0], windows.shape[-2] // ph, windows.shape[-1] // ph
        prefix = model.num_prefix_tokens
        qkv = kept["qkv"][:, prefix:].reshape(n, rows * cols, 3, -1).permute(2, 0, 1, 3)
        size = tuple(raw_canvas.shape[-2:])

        def stitched(t):
            return stitch_grid(t.transpose(1, 2).reshape(n, -1, rows, cols), boxes, pad, ph, size).flatten(1).T

        q, k, v = (stitched(t) for t in qkv)
        blk = model.blocks[-1]
        heads = blk.attn.num_heads
        q, k, v = (t.reshape(t.shape[0], heads, -1).transpose(0, 1) for t in (q, k, v))
        attn = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)) * blk.attn.scale, dim=-1), v)
        attn = attn.transpose(0, 1).reshape(q.shape[1], -1)
        x = stitched(penultimate[:, prefix:]) + F.linear(attn, blk.attn.proj.weight, blk.attn.proj.bias)
        x = x + blk.mlp(blk.norm2(x))
        return F.normalize(x, dim=-1)

    @torch.no_grad()
    def predict(self, image: np.ndarray, regions: np.ndarray) -> Dict[str, Any]:
        seg, head, v = self.seg, self.head, self.visual
        text = seg.encoded_vocabulary.text
        raw_canvas, x = seg.preprocessor(image, seg.device)
        canvas = tuple(x.shape[-2:])
        boxes, pad = seg.windows.plan(canvas)
        dino = self._dino(raw_canvas, boxes, pad)                                   # [N, C]
        dp = self.dino.patch_size[0]
        rows, cols = canvas[0] // dp, canvas[1] // dp
        ids = torch.from_numpy(regions.astype(np.int64)).int()
        masks = F.interpolate(ids[None, None].float(), size=canvas, mode="nearest").int()
        masks = F.interpolate(masks.float(), size=(rows, cols), mode="nearest").int()[0, 0]
        weights = official_scope(dino, masks, head.merge_eps, head.tau)

        crops = crop_windows(x, boxes, pad)
        n = crops.shape[0]
        patch = seg.backbone.patch_size[0]
        h, w = crops.shape[-2] // patch, crops.shape[-1] // patch
        tokens = seg.backbone.embed(crops)                                          # [n, 1 + h*w, C]
        full = F.interpolate(masks[None, None].float(), size=canvas, mode="nearest")[0]
        win_masks = F.interpolate(crop_windows(full, boxes, pad, 0.0), size=(h, w), mode="nearest")[:, 0].int()
        regions_m = torch.stack([r == win_masks for r in torch.unique(masks)], dim=1)  # [n, M, h, w]
        mct = regions_m.shape[1]
        xs = torch.cat([tokens[:, :1].repeat(1, mct, 1), tokens], dim=1)            # [n, M + 1 + h*w, C]
        allowed = torch.zeros(n, xs.shape[1], xs.shape[1], dtype=torch.bool)
        allowed[:, mct:, mct:] = True
        allowed[:, :mct, mct] = True
        allowed[:, :mct, mct + 1:] = regions_m.flatten(2)
        attn_masks = ~allowed

        def stitched(t):  # [n, h*w, C] -> [Nc, C]
            return stitch_grid(t.transpose(1, 2).reshape(n, -1, h, w), boxes, pad, patch, canvas,
                               valid="window").flatten(1).T

        blocks = v.transformer.resblocks
        depth = len(blocks)
        spatial_n = head.num_spatial(depth)
        spatial = []
        for idx, blk in enumerate(blocks[:-1]):
            if depth - 2 - spatial_n <= idx <= depth - 3:
                c = blk.attn.embed_dim
                qkv = F.linear(blk.ln_1(xs), blk.attn.in_proj_weight, blk.attn.in_proj_bias)
                q, k, vv = qkv[:, mct + 1:].chunk(3, -1)
                q, k, vv = stitched(q), stitched(k), stitched(vv)
                a = torch.softmax((q @ k.T) * (c // blk.attn.num_heads) ** -0.5, dim=-1) @ vv
                y = stitched(xs[:, mct + 1:]) + blk.attn.out_proj(a)
                spatial.append(y + blk.mlp(blk.ln_2(y)))
            xs = torch.cat([_block(blk, xs[i:i + 1], attn_masks[i]) for i in range(n)])  # window by window
        blk = blocks[-1]
        c = blk.attn.embed_dim
        wv, bv = blk.attn.in_proj_weight[2 * c:], blk.attn.in_proj_bias[2 * c:]
        v_main = stitched(F.linear(blk.ln_1(xs[:, mct:]), wv, bv)[:, 1:])
        v_side = F.linear(blk.ln_1(torch.stack(spatial).mean(0)), wv, bv)
        clip_grid = (canvas[0] // patch, canvas[1] // patch)
        vals = torch.stack([v_main, v_side]).transpose(1, 2).reshape(2, c, *clip_grid)
        vals = F.interpolate(vals, size=(rows, cols), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        both = blk.attn.out_proj(torch.bmm(weights.expand(2, -1, -1), vals))
        tok = torch.cat([_block(blk, xs[i:i + 1], attn_masks[i]) for i in range(n)])[:, :mct]   # [n, M, C]
        wgh, wgw = crops.shape[-2] // dp, crops.shape[-1] // dp
        expand = F.interpolate(regions_m.float(), size=(wgh, wgw), mode="nearest").flatten(2)  # [n, M, cells]
        semantic = expand.transpose(1, 2) @ tok                                          # [n, cells, C]
        semantic = stitch_grid(semantic.transpose(1, 2).reshape(n, -1, wgh, wgw), boxes, pad, dp, canvas).flatten(1).T
        out = v.ln_post(torch.stack([both[0], both[1], semantic]))
        out = out[0] + head.alpha * out[1] + head.beta * out[2]
        feats = F.normalize(out @ v.proj, dim=-1)
        logits = (feats @ text.T).T.reshape(1, -1, rows, cols)
        logits = F.interpolate(logits, size=canvas, mode="bilinear")
        logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear")[0]
        return {"logits": logits, "labels": official_postprocess(logits, seg, ids)}


def benchmark_ovstitcher(clip_model: str = "ViT-B-16", pretrained: Optional[str] = None, size=(375, 500),
                         regions: int = 40, repeats: int = 1, dino_weights: Optional[str] = None,
                         tiny_dino: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Time OV-Stitcher (configs/_base_/ovstitcher.py, without the class-biased templates: random text)
    both ways on one random image of ``size`` (height, width) with ``regions`` random regions."""
    import ovdense
    from ..config import load_config, segmenter_kwargs

    base = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "configs", "_base_", "ovstitcher.py")
    kwargs = segmenter_kwargs(load_config(base))
    work = tempfile.mkdtemp(prefix="bench_ovstitcher_")
    name = kwargs["head"]["dino"]
    dino = dict(kwargs["features"][name], weights=dino_weights)
    if tiny_dino is not None:  # tests: a small DINO of the same patch size
        dino["model_kwargs"] = dict(tiny_dino)
    kwargs["features"] = {name: dino, "regions": dict(type="regions", directory=work)}
    kwargs["backbone"] = dict(clip_model=clip_model, pretrained=None if pretrained in (None, "none") else pretrained)
    kwargs["text_encoder"] = dict(templates="openai80", cache_dir="")  # random embeddings: no text is encoded
    torch.manual_seed(0)
    seg = ovdense.OVSegmenter(**kwargs, device="cpu")
    image, ids, loaded = region_scene(seg, size, regions, work)
    official = OfficialStyleOVStitcher(seg)
    with torch.no_grad():  # warm both paths
        seg.predict(loaded)
        official.predict(image, ids)
    device = seg.device
    ours = {}
    ours["predict"], mine = _best_ms(lambda: seg.predict(loaded), repeats, device)
    ctx = seg.encode_image(loaded)
    base_ms, ref = _best_ms(lambda: official.predict(image, ids), repeats, device)
    logits = seg.query_logits(ctx, seg.encoded_vocabulary)
    return {
        "image": f"{size[1]}x{size[0]}", "canvas": list(ctx.resized_size), "regions": int(len(np.unique(ids))),
        "windows": len(seg.windows.plan(tuple(ctx.resized_size))[0]), "clip": clip_model,
        "threads": torch.get_num_threads(), "ovdense_ms": ours, "official_style_ms": base_ms,
        "speedup": base_ms / ours["predict"], "max_logit_diff": float((logits - ref["logits"]).abs().max()),
        "labels_equal": float((mine.label_map == ref["labels"]).mean()),
    }


def format_ovstitcher(info: Dict[str, Any]) -> str:
    return "\n".join([
        f"OV-Stitcher, {info['clip']} (random weights unless given) + DINO ViT-B/8, {info['image']} image "
        f"(canvas {info['canvas'][0]}x{info['canvas'][1]}), {info['windows']} windows, {info['regions']} region ids, "
        f"{info['threads']} threads, CPU, fp32", "",
        "| path | ms / image |", "|---|---|",
        f"| official-style (windows one by one, region tokens in every window's sequence, masks as lists) | "
        f"{info['official_style_ms']:.0f} |",
        f"| ovdense `predict` | {info['ovdense_ms']['predict']:.0f} |", "",
        f"speedup {info['speedup']:.2f}x; max logit difference {info['max_logit_diff']:.1e}; "
        f"labels equal on {100 * info['labels_equal']:.2f} % of pixels"])
