"""CorrCLIP: ovdense's path against the official code's computation, same weights, same image
(``ovdense benchmark --corrclip``).

:class:`OfficialStyleCorrCLIP` is written from the official ``CorrCLIPSegmentation.forward_slide`` /
``forward_feature`` / ``postprocess_result`` and ``VisionTransformer.forward`` (zdk258/CorrCLIP,
``CorrCLIPv1``), over the segmenter's CLIP and its DINO provider's weights, with the official cost
structure: one window per call; DINO's *whole* tower run (``get_intermediate_layers``) with the
last block's ``qkv`` caught by a forward hook; one boolean mask per region id (Python lists),
region means in a Python loop, the scope mask built as a sum of per-region outer products over the
``L x L`` DINO tokens; CLIP's tower run with the region class tokens *inside* the sequence through
``nn.MultiheadAttention`` and an ``(R + N) x (R + N)`` attention mask at every block; the last block
run again on the whole sequence for the class tokens; then stitching, the decoder, and the map
correction with one boolean mask and one ``torch.mode`` per region. DBSCAN is the head's connected
components (scikit-learn's DBSCAN on a few dozen regions costs microseconds either way). Everything
runs in fp32 (the official code runs CLIP and DINO in fp16 on a GPU).

The ovdense side is ``OVSegmenter.predict`` under ``configs/_base_/corrclip.py``; its stages are
also timed alone (CLIP prefix with every block's input, DINO ``q+k``, the head, decoding with the
map correction). Both sides read the same region map (random rectangles standing for SAM 2's
masks, painted as CorrCLIP does) from an ``.npz`` file, and the logits and labels are compared.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..heads.corrclip import MERGED_ID, connected_components
from .timing import best_ms as _best_ms
from ..ops.windows import centred_padding, window_boxes


def _block(blk: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """open_clip's residual block on batch-first ``x`` with an attention mask, through
    ``nn.MultiheadAttention`` (in its own layout), as the official blocks run."""
    y = blk.ln_1(x)
    if not blk.attn.batch_first:
        y = y.transpose(0, 1)
    y = blk.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
    if not blk.attn.batch_first:
        y = y.transpose(0, 1)
    x = x + blk.ls_1(y)
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def official_scope(dino: torch.Tensor, masks: torch.Tensor, merge_eps: float, tau: float) -> torch.Tensor:
    """CorrCLIP's (and OV-Stitcher's) mask merging and scope reconstruction as the official code runs
    them: ``dino`` ``[L, C]`` normalised features, ``masks`` ``[rows, cols]`` region ids (merged in
    place) -> attention weights ``[L, L]``; region masks as Python lists, DBSCAN on their mean features,
    the scope mask as a sum of per-region outer products."""
    rows, cols = masks.shape
    similarity = dino @ dino.T
    values = torch.unique(masks)
    if values.shape[0] > 2:  # mask merging
        region_masks = [v == masks for v in values]
        feats = dino.reshape(rows, cols, -1)
        instance = F.normalize(torch.stack([feats[m].mean(dim=0) for m in region_masks]), dim=1)[1:]
        sim = instance @ instance.T
        for k, g in enumerate(connected_components((sim.max() - sim) <= merge_eps).tolist(), start=1):
            masks[region_masks[k]] = g + MERGED_ID
    region_masks = [(v == masks).view(-1) for v in torch.unique(masks)]
    equal = torch.zeros_like(similarity).bool()
    for m in region_masks[1:]:
        equal += torch.outer(m, m)
    m0 = region_masks[0]
    equal += (m0.unsqueeze(0) + m0.unsqueeze(1)) * (similarity > similarity.mean())
    similarity[~equal] = float("-inf")
    return (similarity * tau).softmax(dim=-1)


class OfficialStyleCorrCLIP:
    """The official CorrCLIP window and post-processing computation (see the module doc)."""

    def __init__(self, seg: Any) -> None:
        self.seg = seg
        self.head = seg.head
        self.dino = seg.features[self.head.dino]
        self.visual = seg.backbone.visual

    def _dino_qk(self, raw: torch.Tensor) -> torch.Tensor:
        """DINO's whole tower on the uint8 window; the last block's ``q + k`` (hooked), ``[L, C]``."""
        model, kept = self.dino.model, {}
        hook = model.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: kept.setdefault("qkv", o))
        try:
            x = (raw.float() - self.dino.mean) / self.dino.std
            square = x.shape[-2] == x.shape[-1]
            tokens = self.dino._embed(x, square)
            for blk in model.blocks:
                tokens = blk(tokens)
            model.norm(tokens)
        finally:
            hook.remove()
        qkv = kept["qkv"]
        n = qkv.shape[1]
        qkv = qkv.reshape(1, n, 3, -1).permute(2, 0, 1, 3)
        feats = (qkv[0] + qkv[1])[0, model.num_prefix_tokens:]
        return F.normalize(feats, dim=-1)

    def window_logits(self, crop: torch.Tensor, raw: torch.Tensor, masks: torch.Tensor,
                      text: torch.Tensor) -> torch.Tensor:
        """One window: normalised crop ``[1, 3, H, W]``, its uint8 pixels, its region ids
        ``[1, 1, H, W]`` -> logits ``[1, Q, H, W]``."""
        head, backbone = self.head, self.seg.backbone
        dino_feats = self._dino_qk(raw)
        rows, cols = self.dino.output_grid(tuple(crop.shape[-2:]))
        masks = F.interpolate(masks.float(), size=(rows, cols), mode="nearest").int()[0, 0]
        attn = official_scope(dino_feats, masks, head.merge_eps, head.tau)

        v = self.visual
        x = backbone.embed(crop)                                           # [1, N, C]
        h, w = backbone.grid_for(tuple(crop.shape[-2:]))
        tok_masks = F.interpolate(masks.float()[None, None], size=(h, w), mode="nearest").int()[0, 0]
        regions = torch.stack([t == tok_masks for t in torch.unique(tok_masks)])
        r = regions.shape[0]
        x = torch.cat([x[:, :1].repeat(1, r, 1), x], dim=1)                # the region tokens first
        allowed = torch.zeros(x.shape[1], x.shape[1], dtype=torch.bool)
        allowed[r:, r:] = True
        allowed[:r, r] = True
        allowed[:r, r + 1:] = regions.view(r, -1)
        attn_mask = ~allowed
        blocks = v.transformer.resblocks
        depth = len(blocks)
        spatial_n = head.num_spatial(depth)
        lower = []
        for idx, blk in enumerate(blocks[:-1]):
            x = _block(blk, x, attn_mask)
            if depth - 2 - spatial_n <= idx <= depth - 3:
                lower.append(x[:, r:])
        blk = blocks[-1]
        both = torch.cat([x[:, r:], torch.stack(lower).mean(0)], dim=0)    # main and spatial: [2, N, C]
        c = blk.attn.embed_dim
        vv = F.linear(blk.ln_1(both), blk.attn.in_proj_weight[2 * c:], blk.attn.in_proj_bias[2 * c:])
        vv = vv[:, 1:].transpose(1, 2).unflatten(2, (h, w))
        vv = F.interpolate(vv, size=(rows, cols), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        both = blk.attn.out_proj(torch.bmm(attn.expand(2, -1, -1), vv))
        mct = _block(blk, x, attn_mask)[0, :r]
        paint = F.interpolate(regions[:, None].float(), size=(rows, cols), mode="nearest").flatten(1)
        out = v.ln_post(torch.stack([both[0], both[1], paint.T @ mct]))
        out = out[0] + head.alpha * out[1] + head.beta * out[2]
        feats = F.normalize(out @ v.proj, dim=-1)
        logits = (feats @ text.T).T.reshape(1, -1, rows, cols)
        return F.interpolate(logits, size=crop.shape[-2:], mode="bilinear")

    @torch.no_grad()
    def predict(self, image: np.ndarray, regions: np.ndarray) -> Dict[str, Any]:
        """``forward_slide`` + ``postprocess_result`` on one image: logits ``[Q, H, W]`` and labels."""
        seg = self.seg
        text = seg.encoded_vocabulary.text
        raw_canvas, x = seg.preprocessor(image, seg.device)
        hh, ww = x.shape[-2:]
        ids = torch.from_numpy(regions.astype(np.int64)).int()
        ids_canvas = F.interpolate(ids[None, None].float(), size=(hh, ww), mode="nearest").int()
        preds = torch.zeros(text.shape[0], hh, ww)
        count = torch.zeros(1, hh, ww)
        for y1, y2, x1, x2 in window_boxes(hh, ww, seg.windows.crop, seg.windows.stride):
            crop, raw = x[None, :, y1:y2, x1:x2], raw_canvas[None, :, y1:y2, x1:x2]
            masks = ids_canvas[:, :, y1:y2, x1:x2]
            pad = centred_padding(y2 - y1, x2 - x1, seg.windows.pad_to)
            if any(pad):
                crop, raw = F.pad(crop, pad), F.pad(raw, pad)
                masks = F.pad(masks, pad, value=MERGED_ID)
            logit = self.window_logits(crop, raw, masks, text)
            left, _, top, _ = pad
            logit = logit[:, :, top:top + y2 - y1, left:left + x2 - x1]
            preds += F.pad(logit, (x1, ww - x2, y1, hh - y2))[0]
            count[:, y1:y2, x1:x2] += 1
        logits = F.interpolate((preds / count)[None], size=image.shape[:2], mode="bilinear")[0]
        return {"logits": logits, "labels": official_postprocess(logits, seg, ids)}


def official_postprocess(logits: torch.Tensor, seg: Any, ids: torch.Tensor) -> np.ndarray:
    """CorrCLIP's and OV-Stitcher's ``postprocess_result``: softmax of the scaled logits ``[Q, H, W]``, max
    over the first line's names (the background merge), argmax, ``prob_thd`` to class 0, then the map
    correction with one boolean mask and one ``torch.mode`` per region id (the smallest id skipped)."""
    vocab = seg.encoded_vocabulary.vocabulary
    probs = (logits * seg.decoder.logit_scale).softmax(0)
    q2c = torch.as_tensor(vocab.query_to_class)
    num_cls = vocab.num_classes
    if num_cls != len(q2c):
        first = len(q2c) - num_cls + 1
        probs = torch.cat([probs[:first].max(0, keepdim=True)[0], probs[first:]])
    pred = probs.argmax(0, keepdim=True)
    pred[probs.max(0, keepdim=True)[0] < seg.decoder.background_threshold] = 0
    values = torch.unique(ids)[1:]
    for mask in (values[:, None, None] == ids[None]).unsqueeze(1):
        pred[mask] = torch.mode(pred[mask])[0]
    return pred[0].numpy()


def random_regions(height: int, width: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random rectangles painted as CorrCLIP paints SAM masks (by area, larger on top)."""
    from ..features.regions import paint_regions

    rng = np.random.default_rng(seed)
    masks = np.zeros((count, height, width), dtype=bool)
    for m in masks:
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        m[y:y + rng.integers(8, max(9, height // 3)), x:x + rng.integers(8, max(9, width // 3))] = True
    return paint_regions(masks)


def region_scene(seg: Any, size, regions: int, work: str):
    """``(image, region ids, LoadedImage)``: a random uint8 image of ``size`` (height, width) saved in
    ``work`` with ``regions`` random rectangles as its region file, and 21 classes (the first with 3
    background names) set on ``seg`` with random embeddings."""
    import ovdense
    from PIL import Image

    height, width = size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ids = random_regions(height, width, regions)
    path = os.path.join(work, "image.png")
    Image.fromarray(image).save(path)
    np.savez(os.path.join(work, "image.npz"), instance_mask=ids)
    classes = [["sky", "wall", "tree"]] + [[f"class {i}"] for i in range(20)]
    q = sum(len(c) for c in classes)
    seg.set_classes([", ".join(c) for c in classes], background="first",
                    embeddings=torch.randn(q, seg.backbone.embed_dim))
    return image, ids, ovdense.io.LoadedImage(image, path)


def benchmark_corrclip(clip_model: str = "ViT-B-16", pretrained: Optional[str] = None, size=(375, 500),
                       regions: int = 40, repeats: int = 1, dino_weights: Optional[str] = None,
                       tiny_dino: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Time CorrCLIP (configs/_base_/corrclip.py) both ways on one random image of ``size``
    (height, width) with ``regions`` random regions; random weights unless given."""
    import ovdense
    from ..config import load_config, segmenter_kwargs

    base = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "configs", "_base_", "corrclip.py")
    kwargs = segmenter_kwargs(load_config(base))
    work = tempfile.mkdtemp(prefix="bench_corrclip_")
    dino = dict(kwargs["features"]["dino"], weights=dino_weights)
    if tiny_dino is not None:  # tests: a small DINO of the same patch size
        dino["model_kwargs"] = dict(tiny_dino)
    kwargs["features"] = dict(dino=dino, regions=dict(type="regions", directory=work))
    kwargs["backbone"] = dict(clip_model=clip_model, pretrained=None if pretrained in (None, "none") else pretrained)
    torch.manual_seed(0)
    kwargs["text_encoder"] = dict(kwargs.get("text_encoder") or {}, cache_dir="")
    seg = ovdense.OVSegmenter(**kwargs, device="cpu")
    image, ids, loaded = region_scene(seg, size, regions, work)
    official = OfficialStyleCorrCLIP(seg)
    with torch.no_grad():  # warm both paths (allocator, position-embedding caches)
        seg.predict(loaded)
        official.predict(image, ids)
    device = seg.device
    ours = {}
    ours["predict"], mine = _best_ms(lambda: seg.predict(loaded), repeats, device)
    ctx = seg.encode_image(loaded)
    crops = ovdense.ops.windows.crop_windows(seg.preprocess(image), ctx.boxes, ctx.pad)
    raw = ovdense.ops.windows.crop_windows(ctx.resized_image, ctx.boxes, ctx.pad)
    aux = {"regions": seg._image_map_windows(ctx, "regions")}
    with torch.no_grad():
        ours["clip_prefix"], view = _best_ms(lambda: seg.backbone.prefix(crops, keep_inputs=True), repeats, device)
        ours["dino_qk"], aux["dino"] = _best_ms(lambda: seg.features["dino"](raw), repeats, device)
        ours["head"], _ = _best_ms(lambda: seg.head(view, seg.backbone, aux), repeats, device)
    ours["logits_decode_correction"], _ = _best_ms(lambda: seg.predict(ctx), repeats, device)
    base_ms, ref = _best_ms(lambda: official.predict(image, ids), repeats, device)
    logits = seg.query_logits(ctx, seg.encoded_vocabulary)
    return {
        "image": f"{size[1]}x{size[0]}", "regions": int(len(np.unique(ids))), "windows": len(ctx.boxes),
        "clip": clip_model, "threads": torch.get_num_threads(),
        "ovdense_ms": ours, "official_style_ms": base_ms, "speedup": base_ms / ours["predict"],
        "max_logit_diff": float((logits - ref["logits"]).abs().max()),
        "labels_equal": float((mine.label_map == ref["labels"]).mean()),
    }


def format_corrclip(info: Dict[str, Any]) -> str:
    o = info["ovdense_ms"]
    lines = [f"CorrCLIP, {info['clip']} (random weights unless given) + DINO ViT-B/8, {info['image']} image, "
             f"{info['windows']} windows, {info['regions']} region ids, {info['threads']} threads, CPU, fp32", "",
             "| path | ms / image |", "|---|---|",
             f"| official-style (one window per call, regions as Python lists, tokens in the sequence) | "
             f"{info['official_style_ms']:.0f} |",
             f"| ovdense `predict` | {o['predict']:.0f} |",
             f"| - CLIP prefix (every block's input kept) | {o['clip_prefix']:.0f} |",
             f"| - DINO q+k (up to the last block's qkv) | {o['dino_qk']:.0f} |",
             f"| - head (merge, scope, branches, region tokens) | {o['head']:.0f} |",
             f"| - logits, decode, map correction | {o['logits_decode_correction']:.0f} |", "",
             f"speedup {info['speedup']:.2f}x; max logit difference {info['max_logit_diff']:.1e}; "
             f"labels equal on {100 * info['labels_equal']:.2f} % of pixels"]
    return "\n".join(lines)
