"""Time each head under its default protocol, against a plain reference-style baseline.

The protocols are the shipped base configs (``configs/_base_/<head>.py``, read with the
loader of ``OVSegmenter.from_config``); only the backbone weights, device, dtype and window
batch come from the command line. Protocols share the backbone's weights, never its settings
(MaskCLIP's ``pos_interp='size'`` is set on a view of its own).

For every head and dtype:

* batch-1 latency of ovdense (windows of an image in one batch, text embeddings cached) and
  of a plain baseline that runs the same computation the way the official implementations
  do (one window at a time, fp32, explicit attention, text encoded on every run), on the
  same image; their outputs are compared (max logit difference, label maps);
* latency per stage (windows, backbone, head, logits, refine, decode; text once);
* images/s over batches of already decoded images (``--batch-sizes``), with peak memory;
* the backbone's FLOPs, its achieved throughput and the measured matmul peak of the device
  on the backbone's shapes (and the datasheet bf16 peak of known GPUs).

Every time is the best of ``--repeats`` runs (fast path and baseline alternating), the least
disturbed run on a shared machine. Writes ``benchmark.json`` and ``benchmark.md``::

    ovdense benchmark --clip-model ViT-B-16 --pretrained none --heads sclip naclip \
        --size 500x375 --repeats 3 --out runs/bench      # or: python tools/benchmark.py ...
    ovdense benchmark --device cuda --dtype bf16 fp16 --heads sclip \
        --batch-sizes 1 16 64 128 256 --out runs/bench-gpu

Random weights are fine for timing (``--pretrained none``); pass a tag or a file for real ones.

SAM mode (``--sam-masks``, :mod:`ovdense.bench.sam_masks`) times automatic SAM masks, ours
against ``SamAutomaticMaskGenerator`` on the same model and image, and checks the records equal::

    ovdense benchmark --sam-masks --sam-model vit_b --size 640x480 --repeats 1 --out runs/sam-masks

Latency mode (``--latency``, :mod:`ovdense.bench.latency`) times ``predict`` frame by frame under
one shipped config instead (default ``configs/latency/latency_640x480.py``; ``--size`` defaults to
the config's frame size), the vocabulary encoded once and passed per call; it reports p50 / p90 /
max ms per frame and per stage and frames per second::

    ovdense benchmark --latency --config latency_640x480 --frames 20 --out runs/latency

Heads that read a feature provider (``proxyclip``: a DINO ViT-B/8 as ``vfm``; ``cass``: a DINO
ViT-B/8's last-block keys as ``dino``) are timed only when named (``--heads proxyclip cass``).
Their providers are built once per head from the base config and shared by the fast path and the
baseline (random weights unless ``--vfm-weights``; ``--tiny-vfm`` gives the tests a 2-block,
32-wide model of the same architecture). ProxyCLIP's
baseline is :class:`OfficialProxyCLIP` (the official ``forward_slide`` / ``forward_feature``,
one window per call); its rows also give the VFM's own cost per image (``vfm``) and a parity
check in two parts (:func:`official_parity`: ProxyCLIP's threshold is discontinuous, so the
end-to-end logits may differ by ~1e-3 where the computations agree), and the run fails (exit 1,
after writing the report) when an fp32 part differs by more than :data:`PARITY_TOL`::

    ovdense benchmark --clip-model ViT-B-16 --pretrained none --heads proxyclip \
        --size 448x336 --repeats 2 --out runs/bench-proxyclip

CASS's baseline is :class:`~ovdense.bench.official_cass.OfficialCASS` (the official
``forward_slide`` / ``forward_feature``: per window DINO twice -- the window, and a discarded call
at the whole image's short side inside the image prior's ``encode_image`` -- with every block's
attention kept, CLIP on the window and on the whole image, the spectral fusion head by head). Its
parity has the same two parts; the discontinuous step is the Hungarian pairing of DINO and CLIP
heads (``flips``: windows paired differently on the provider's and the official-style keys). With
``--tiny-vfm`` CASS's DINO takes CLIP's width (the official code splits DINO's keys into CLIP's
heads)::

    ovdense benchmark --clip-model ViT-B-16 --pretrained none --heads cass \
        --size 500x375 --repeats 1 --threads 2 --out runs/bench-cass
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import ovdense
from ovdense.bench import latency, roofline
from ovdense.config import configs_dir, find_config, list_configs, load_config, segmenter_kwargs
from ovdense.bench.official_cass import OfficialCASS
from ovdense.bench.official_common import dino_pos_encoding, mha_fast_path, official_dino_model
from ovdense.bench.timing import best_ms as _best_ms
from ovdense.heads.cass import CASSHead
from ovdense.heads.proxyclip import ProxyCLIPHead
from ovdense.io.writers import atomic_path, write_json
from ovdense.ops.bilinear import resize_rows
from ovdense.ops.windows import centred_padding, crop_windows, window_boxes
from ovdense.refine import pamr_stacked
from ovdense.registry import FEATURES, build
from ovdense.runtime import resolve_device, resolve_dtype, synchronize
from ovdense.text import TextEmbedder, read_name_file

#: The heads timed by default, in table order. Each runs under its default protocol, read from
#: the shipped config ``configs/_base_/<head>.py`` (see :func:`protocol`), not from a copy here.
HEADS = ("vanilla", "maskclip", "sclip", "clearclip", "naclip")
#: OVSegmenter options the benchmark sets itself, whatever the config says.
_BENCH_OPTIONS = ("device", "dtype", "batch_size", "compile")
#: Largest max |logit difference| between the fast path and the baseline that counts as equal
#: (fp32 rows; the cosine logits lie in [-1, 1]).
PARITY_TOL = 1e-4
#: Heads whose fp32 rows must be equal to the baseline (``main`` exits 1 otherwise).
STRICT_PARITY = ("proxyclip", "cass")
#: ``model_kwargs`` of the stand-in VFM of ``--tiny-vfm`` (tests): the protocol's timm
#: architecture (patch size, position grid, normalisation), 2 blocks of width 32.
TINY_VFM = dict(depth=2, embed_dim=32, num_heads=2)
#: Heads whose ``--tiny-vfm`` provider takes CLIP's width instead of :data:`TINY_VFM`'s 32: CASS
#: splits DINO's keys into CLIP's heads (the official code needs equal widths).
TINY_VFM_CLIP_WIDTH = ("cass",)


def available_heads() -> List[str]:
    """Heads with a shipped base protocol (``configs/_base_/<head>.py``), :data:`HEADS` first."""
    shipped = [n[len("_base_/"):] for n in list_configs() if n.startswith("_base_/")]
    return [h for h in HEADS if h in shipped] + sorted(h for h in shipped if h not in HEADS)


def protocol(head: str) -> Dict[str, object]:
    """The default protocol of ``head``: the OVSegmenter keyword arguments of the shipped config
    ``configs/_base_/<head>.py``, read with :func:`ovdense.config.load_config` (the loader of
    ``OVSegmenter.from_config``). The backbone section is replaced by its ``pos_interp`` (the
    benchmark's backbone comes from ``--clip-model`` / ``--pretrained``), and the options the
    benchmark sets itself (device, dtype, window batch) are dropped. A new dict on every call."""
    cfg = load_config(find_config(f"_base_/{head}"))
    kwargs = segmenter_kwargs(cfg)
    backbone = dict(kwargs.pop("backbone", None) or {})
    for option in _BENCH_OPTIONS:
        kwargs.pop(option, None)
    kwargs["pos_interp"] = backbone.get("pos_interp", "scale_factor")
    return copy.deepcopy(kwargs)


def describe_protocol(proto: Dict[str, object]) -> Dict[str, object]:
    """``proto`` for the report: template lists are given by their length."""
    out = copy.deepcopy(dict(proto))
    text = dict(out.get("text_encoder") or {})
    templates = text.get("templates")
    if templates is not None and not isinstance(templates, str):
        text["templates"] = f"{len(templates)} templates"
        out["text_encoder"] = text
    return out


def backbone_view(backbone: ovdense.CLIPBackbone, pos_interp: str) -> ovdense.CLIPBackbone:
    """A new backbone object with its own settings (``pos_interp``, positional-embedding cache)
    over the same weights as ``backbone`` (not copied): one per segmenter, so that no protocol
    changes a backbone that another protocol uses."""
    return type(backbone)(backbone.model, pos_interp=pos_interp, name=backbone.name,
                          pretrained=backbone.pretrained)


def provider_specs(head: str, weights: Optional[str] = None, tiny: bool = False,
                   clip_width: Optional[int] = None) -> Dict[str, dict]:
    """The feature providers of ``head``'s protocol (the ``features`` section of its base config)
    as the benchmark builds them: a ``timm_vit`` provider reads ``weights`` instead of the
    config's checkpoint (None: random weights, which time like real ones) and with ``tiny``
    gets the :data:`TINY_VFM` sizes (for the heads of :data:`TINY_VFM_CLIP_WIDTH`, ``clip_width``
    channels instead of 32). Other provider types keep their config spec."""
    out = {}
    for name, spec in (protocol(head).get("features") or {}).items():
        spec = dict(spec)
        if spec.get("type") == "timm_vit":
            spec["weights"] = weights
            if tiny:
                sizes = dict(TINY_VFM)
                if head in TINY_VFM_CLIP_WIDTH and clip_width:
                    sizes["embed_dim"] = int(clip_width)
                spec["model_kwargs"] = dict(spec.get("model_kwargs") or {}, **sizes)
        out[name] = spec
    return out


def build_providers(specs: Dict[str, dict], device) -> Dict[str, nn.Module]:
    """Providers built once from ``specs``, to be shared by every segmenter of a head (fast
    path, baseline, every dtype: providers run in fp32 whatever the segmenter's dtype)."""
    return {name: build(FEATURES, dict(spec)).to(device).eval() for name, spec in specs.items()}


def text_cache_key(embedder: TextEmbedder) -> tuple:
    """What decides a text embedding besides the weights: templates, averaging, extra prompts."""
    return (tuple(embedder.templates), embedder.average, embedder.extra_prompts_digest)


def build_segmenter(head: str, backbone: ovdense.CLIPBackbone, device, dtype: torch.dtype,
                    text: Dict[tuple, TextEmbedder], window_batch: int = 0,
                    text_backbone: Optional[ovdense.CLIPBackbone] = None,
                    providers: Optional[Dict[str, nn.Module]] = None) -> ovdense.OVSegmenter:
    """A segmenter for ``head`` under its shipped protocol (:func:`protocol`) on ``backbone``
    (already in ``dtype``): the weights are shared, the backbone's settings are left as they
    are. ``text`` maps :func:`text_cache_key` to text embedders and is filled as needed, so that
    protocols with the same text recipe share one in-memory cache; a new embedder encodes with
    ``text_backbone`` (default ``backbone``). ``providers``: built feature providers
    (:func:`build_providers`) used instead of the config's ``features`` specs, shared as is."""
    proto = protocol(head)
    bb = backbone_view(backbone, proto.pop("pos_interp"))
    text_cfg = dict(proto.pop("text_encoder", None) or {})
    if providers is not None:
        proto["features"] = dict(providers)
    seg = ovdense.OVSegmenter(backbone=bb, head=proto.pop("head", head), device=device, dtype=dtype,
                              text_encoder=dict(text_cfg, cache_dir=""), batch_size=window_batch or 1024, **proto)
    key = text_cache_key(seg.text)
    if key not in text:
        text[key] = TextEmbedder(text_backbone or backbone, **dict(text_cfg, cache_dir=""))
    seg.text = text[key]  # shared in-memory text cache
    return seg


#: The class list timed: the shipped VOC21 name file (background line first), as the configs use it.
VOC21_NAMES = latency.VOC21_NAMES


def voc21_classes() -> List[List[str]]:
    """The synonym lists of ``configs/names/cls_voc21.txt`` (read once, before any timing)."""
    return read_name_file(os.path.join(configs_dir(), VOC21_NAMES))



@torch.no_grad()
def reference_features(seg: ovdense.OVSegmenter, crop: torch.Tensor) -> torch.Tensor:
    """Dense features computed as the official code does: the blocks before the last run
    through ``nn.MultiheadAttention(need_weights=False)`` outside PyTorch's batch-first fast
    path (OpenAI CLIP's sequence-first blocks reach ``F.multi_head_attention_forward`` and its
    fused attention that way), and the last block builds its attention matrix explicitly
    (bmm + softmax) instead of the heads' fused kernels."""
    with mha_fast_path(False):
        view = seg.backbone.prefix(crop, fused=False)
    tokens = seg.head.finish(view, seg.backbone, seg.head.attention(view) @ view.v)
    feats = F.normalize(seg.backbone.project(tokens[:, 1:]).float(), dim=-1)
    h, w = view.grid
    return feats.reshape(feats.shape[0], h, w, -1).permute(0, 3, 1, 2)


#: OpenAI CLIP's statistics on 0-1 RGB: the official ProxyCLIP un-normalises its crops with these
#: (``OfficialProxyCLIP(official_unnorm=True)``).
_CLIP_UNNORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


class OfficialProxyCLIP:
    """ProxyCLIP's image side as the official code runs it, window by window, in fp32
    (mc-lan/ProxyCLIP ``ProxyCLIPSegmentation.forward_feature`` and ``custom_attn`` of its
    ``open_clip/transformer.py``), over the segmenter's CLIP and its ``vfm`` provider's weights:

    * the CLIP-normalised (and zero-padded) crop is un-normalised (``UnNormalize``: a clone,
      channel by channel) and re-normalised with the VFM's statistics (ImageNet's), image by
      image. The un-normalisation inverts the segmenter's own normalisation exactly; the
      official's ``UnNormalize`` constants (OpenAI's 0-1 statistics, ``official_unnorm=True``)
      are not quite the inverse of its data preprocessor's 3-decimal 0-255 ones, which moves
      DINO's input by about 1e-5 of its range: the same work, but through the discontinuous
      ``-inf`` threshold it flips a few affinities that sit on the threshold (about 20 of the
      3.1 M of a 336 window lie within 1e-5 of it) and moves the logits by up to ~1e-3, so the
      comparison with the fast path (which normalises the uint8 pixels directly) uses the exact
      inverse;
    * DINO runs as ``torch.hub``'s ``get_intermediate_layers(x)[0]``: patch embedding, CLS,
      DINO's ``interpolate_pos_encoding`` computed on every call, every block with its attention
      matrix built explicitly (DINO's ``Attention``), the final norm. A forward hook on the last
      block's ``qkv`` is registered on every call and never removed, as the official does, and its
      output is split into q, k, v (copies the official makes and does not use). The hooks live
      on this object's own copy of the VFM (same weights), so that they never reach the fast
      path's provider; they accumulate over the run (``hooks``), as over an official evaluation;
    * CLIP's blocks before the last as :func:`reference_features` runs them, then the last
      block's ``custom_attn``: the in-projection of q, k and v (the :class:`BlockView`'s), cosine
      affinities of the VFM tokens, the threshold on their mean over the call's batch (one
      window), ``-inf`` masking, the affinities repeated per head before the softmax, the values
      resized bilinearly to the VFM grid, ``bmm``, ``out_proj``, ``ln_post`` and ``proj``;
    * normalised features, ``features @ text.T``, reshaped to the VFM grid.

    Two things differ from the official code, neither on the published protocols' windows: the
    VFM grid is ``H/p x W/p`` (the official takes ``H/p`` twice and swaps CLIP's grid; equal on
    square windows) and everything runs in fp32 (the official runs CLIP and DINO in fp16). On
    CUDA, ``torch.cuda.empty_cache()`` runs after every window, as in the official
    ``forward_slide`` (called from :func:`plain_baseline`).
    """

    def __init__(self, seg: ovdense.OVSegmenter, official_unnorm: bool = False) -> None:
        head = seg.head
        if not isinstance(head, ProxyCLIPHead):
            raise TypeError(f"OfficialProxyCLIP needs a proxyclip segmenter, got {type(head).__name__}")
        provider = seg.features[head.source]
        model = official_dino_model(provider, head.source, "ProxyCLIP")
        if getattr(provider, "layer", -1) not in (-1, len(model.blocks) - 1) or not getattr(provider, "norm", True) \
                or getattr(provider, "input_size", None) is not None or getattr(provider, "pos_interp", "") != "dino":
            raise ValueError("the official-style ProxyCLIP baseline reads DINO's normed last block at the window's "
                             "own size with DINO's position interpolation: the provider must have layer=-1, "
                             "norm=True, input_size=None, pos_interp='dino'")
        if head.official_nonsquare or head.threshold_mean != "window" or head.empty_rows != "self":
            raise ValueError("the official-style baseline compares with the default proxyclip head "
                             "(threshold_mean='window', official_nonsquare=False, empty_rows='self')")
        self.seg, self.beta, self.gamma = seg, head.beta, head.gamma
        self.model = copy.deepcopy(model).eval()  # the official's own DINO: its hooks stay here
        for blk in self.model.blocks:
            blk.attn.fused_attn = False  # DINO's Attention: q k^T, softmax, attn v
        self.patch = int(self.model.patch_embed.patch_size[0])
        self.hooks = 0
        dev = seg.device
        mean, std = np.asarray(seg.preprocessor.mean) / 255.0, np.asarray(seg.preprocessor.std) / 255.0
        if official_unnorm:
            mean, std = _CLIP_UNNORM
        self.unnorm = [(float(m), float(s)) for m, s in zip(mean, std)]
        self.norm_mean = (provider.mean / 255.0).view(3, 1, 1).to(dev)
        self.norm_std = (provider.std / 255.0).view(3, 1, 1).to(dev)

    def _unnormalise(self, img: torch.Tensor) -> torch.Tensor:
        out = torch.clone(img)
        for t, (m, s) in zip(out, self.unnorm):
            t.mul_(s).add_(m)
        return out

    def _pos_encoding(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """DINO's ``interpolate_pos_encoding``, recomputed on every call."""
        return dino_pos_encoding(self.model.pos_embed, tokens, height, width, self.patch)

    def _last_layer(self, x: torch.Tensor) -> torch.Tensor:
        """``get_intermediate_layers(x)[0]``: the normed tokens of the last block, CLS first."""
        m = self.model
        tokens = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        tokens = m.pos_drop(tokens + self._pos_encoding(tokens, x.shape[-2], x.shape[-1]))
        for blk in m.blocks:
            tokens = blk(tokens)
        return m.norm(tokens)

    @torch.no_grad()
    def vfm(self, crop: torch.Tensor) -> torch.Tensor:
        """The VFM features ``[B, C, I, J]`` of CLIP-normalised crops ``[B, 3, H, W]``."""
        imgs = torch.stack([(self._unnormalise(crop[i]) - self.norm_mean) / self.norm_std
                            for i in range(len(crop))])
        captured = {}

        def keep_qkv(module, inputs, output):
            captured["qkv"] = output

        self.model.blocks[-1].attn.qkv.register_forward_hook(keep_qkv)  # every call, never removed
        self.hooks += 1
        feat = self._last_layer(imgs)
        b, n = feat.shape[:2]
        qkv = captured["qkv"].reshape(b, n, 3, self.model.blocks[0].attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        for part in (qkv[0], qkv[1], qkv[2]):  # q, k, v: computed and unused, as in the official code
            part.transpose(1, 2).reshape(b, n, -1)[:, 1:, :]
        rows, cols = imgs.shape[-2] // self.patch, imgs.shape[-1] // self.patch
        return feat[:, 1:, :].reshape(b, rows, cols, -1).permute(0, 3, 1, 2)

    def _custom_attn(self, view, ex_feats: torch.Tensor) -> torch.Tensor:
        """The last block's ``custom_attn`` + ``ln_post`` + ``proj``: ``[B, I*J, D]``."""
        bb = self.seg.backbone
        b, heads, n, d = view.v.shape
        v = view.v.reshape(b * heads, n, d)
        _, _, rows, cols = ex_feats.shape
        q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
        similarity = torch.einsum("bcm,bcn->bmn", q_k, q_k)
        similarity = (similarity - torch.mean(similarity) * self.beta) * self.gamma
        similarity[similarity < 0.0] = float("-inf")
        mask = similarity.to(view.q.dtype).unsqueeze(1).repeat(1, heads, 1, 1)
        attn_weights = F.softmax(mask.reshape(b * heads, mask.shape[2], mask.shape[3]), dim=-1)
        h, w = view.grid
        v = v[:, 1:, :].reshape(b * heads, h, w, d).permute(0, 3, 1, 2)
        v = F.interpolate(v, size=(rows, cols), mode="bilinear", align_corners=False)
        v = v.permute(0, 2, 3, 1).reshape(b * heads, rows * cols, d)
        out = torch.bmm(attn_weights, v)
        out = out.reshape(b, heads, rows * cols, d).transpose(1, 2).reshape(b, rows * cols, heads * d)
        return bb.project(bb.last_block.attn.out_proj(out))

    @torch.no_grad()
    def window_logits(self, crop: torch.Tensor, text: torch.Tensor,
                      ex_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``forward_feature`` of one CLIP-normalised crop, before the upsampling: ``[B, Q, I, J]``.
        ``ex_feats``: VFM features to use instead of running :meth:`vfm` (the parity check)."""
        if ex_feats is None:
            ex_feats = self.vfm(crop)
        with mha_fast_path(False):
            view = self.seg.backbone.prefix(crop, fused=False)
        image_features = self._custom_attn(view, ex_feats).float()
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        logits = image_features @ text.T
        return logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], *ex_feats.shape[-2:])


def official_style(seg: ovdense.OVSegmenter):
    """The official-style image side of heads that read feature providers (None for the others,
    whose baseline is :func:`reference_features`): :class:`OfficialProxyCLIP` or
    :class:`~ovdense.bench.official_cass.OfficialCASS`."""
    if isinstance(seg.head, ProxyCLIPHead):
        return OfficialProxyCLIP(seg)
    if isinstance(seg.head, CASSHead):
        return OfficialCASS(seg)
    if getattr(seg.head, "requires", ()):
        raise ValueError(f"no official-style baseline for head {type(seg.head).__name__}, which reads feature "
                         f"providers {list(seg.head.requires)}")
    return None


def plain_baseline(seg: ovdense.OVSegmenter, image: np.ndarray, classes, official=None,
                   vfm: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """The official implementations' image side, in fp32: one window per forward pass
    (:func:`reference_features`, or ``official.window_logits`` for a head with its own
    official-style path; one that has ``begin_image`` is given the resized image first, as CASS's
    image prior reads it), pad-to-canvas stitching, stacked PAMR. The text embeddings are the
    segmenter's (the baseline's per-image text cost is the measured cold encoding time, added in
    ``run``). ``vfm``: the windows' VFM features ``[n, C, I, J]`` to use instead of running the
    official-style VFM (:func:`official_parity`)."""
    timings = {}
    t0 = time.perf_counter()
    vocab = ovdense.build_vocabulary(classes, background="first")
    text = seg.encoded_vocabulary.text
    t1 = time.perf_counter()
    x = seg.preprocess(image)
    h, w = x.shape[-2:]
    crop_size, whole = seg.windows.crop, seg.windows.whole
    boxes = window_boxes(h, w, crop_size, seg.windows.stride)
    preds = torch.zeros(len(vocab.queries), h, w, device=seg.device)
    count = torch.zeros(1, h, w, device=seg.device)
    ori = image.shape[:2]
    if hasattr(official, "begin_image"):
        official.begin_image(x)
    for k, (y1, y2, x1, x2) in enumerate(boxes):
        crop = x[None, :, y1:y2, x1:x2]
        pad = (0, 0, 0, 0) if whole else centred_padding(y2 - y1, x2 - x1, seg.windows.pad_to)
        if any(pad):
            crop = F.pad(crop, pad)
        if official is not None:
            logit = official.window_logits(crop, text, None if vfm is None else vfm[k:k + 1])
        else:
            feats = reference_features(seg, crop)
            logit = torch.einsum("bdhw,qd->bqhw", feats, text)
        if whole:
            preds = F.interpolate(logit, size=ori, mode="bilinear")[0]
            break
        if logit.shape[-2:] != crop.shape[-2:]:  # CASS's forward_feature resizes to the window itself
            logit = F.interpolate(logit, size=crop.shape[-2:], mode="bilinear")
        if official is not None and seg.device.type == "cuda":
            torch.cuda.empty_cache()  # after every window, as the official forward_slide
        left, right, top, bottom = pad
        logit = logit[:, :, top:top + y2 - y1, left:left + x2 - x1]
        preds += F.pad(logit, (x1, w - x2, y1, h - y2))[0]
        count[:, y1:y2, x1:x2] += 1
    if not whole:
        preds = F.interpolate((preds / count)[None], size=ori, mode="bilinear")[0]
    synchronize(seg.device)
    t2 = time.perf_counter()
    logits = preds
    for refiner in seg.refiners:  # the protocols' only refiner is PAMR
        guide = F.interpolate(x[None], size=ori, mode="bilinear")
        logits = pamr_stacked(guide, logits[None], refiner.steps, refiner.dilations)[0]
    _, labels = seg.decoder(logits, torch.tensor(vocab.query_to_class, device=seg.device), vocab.num_classes,
                            has_background=True)
    synchronize(seg.device)
    t3 = time.perf_counter()
    timings.update(text=(t1 - t0) * 1e3, image=(t2 - t1) * 1e3, refine_decode=(t3 - t2) * 1e3)
    return {"logits": preds, "labels": labels.cpu().numpy(), "timings": timings}


@torch.no_grad()
def stage_times(seg: ovdense.OVSegmenter, image: np.ndarray, feats, repeats: int) -> Dict[str, float]:
    """Latency of each stage of one image, run one stage at a time (all windows in one batch);
    ``feats`` are the image's encoded features (for the stages after the backbone). ``providers``
    is the feature providers the head reads, on the uint8 windows (0 for heads that read none)."""
    dev = seg.device
    needed = [n for n in getattr(seg.head, "requires", ()) if n in seg.features]

    def windows():
        raw, x = seg.preprocessor(image, dev)
        boxes, pad = seg.windows.plan(tuple(x.shape[-2:]))
        return crop_windows(x, boxes, pad), crop_windows(raw, boxes, pad) if needed else None

    windows()
    out: Dict[str, float] = {}
    out["windows"], (crops, raw) = _best_ms(windows, repeats, dev)
    out["backbone"], view = _best_ms(lambda: seg.backbone.prefix(crops), repeats, dev)
    out["providers"], aux = _best_ms(lambda: {n: seg.features[n](raw) for n in needed}, repeats, dev) \
        if needed else (0.0, None)
    out["head"], _ = _best_ms(lambda: seg.head(view, seg.backbone, aux), repeats, dev)
    out["logits"], logits = _best_ms(lambda: seg.query_logits(feats), repeats, dev)

    def refine():
        refined = logits
        if not seg.refiners:  # predict resizes the guide only for a refiner that asks for it
            return refined
        guide = resize_rows(feats.guide, tuple(logits.shape[-2:]), 0, logits.shape[-2])
        for refiner in seg.refiners:
            refined = refiner(refined, guide)
        return refined

    out["refine"], refined = _best_ms(refine, repeats, dev)
    enc = seg.encoded_vocabulary
    out["decode"], _ = _best_ms(
        lambda: seg.decoder(refined, enc.query_to_class, enc.vocabulary.num_classes, True)[1].cpu(), repeats, dev)
    return out


@torch.no_grad()
def throughput(seg: ovdense.OVSegmenter, size, batch_sizes: Sequence[int], windows: int, repeats: int,
               window_batch: int = 0) -> List[Dict[str, float]]:
    """images/s of ``predict`` on lists of already decoded images; all windows of a list share
    forward passes (``window_batch`` caps a pass, 0 = no cap)."""
    w, h = size
    rng = np.random.default_rng(1)
    rows = []
    for n in batch_sizes:
        images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]
        seg.batch_size = window_batch or n * windows
        try:
            seg.predict(images)  # warm-up (and cuDNN / allocator settling)
            roofline.reset_peak_memory(seg.device)
            ms, _ = _best_ms(lambda: seg.predict(images), repeats, seg.device)
        except torch.cuda.OutOfMemoryError as exc:
            print(f"  batch {n}: out of memory ({str(exc).splitlines()[0]}); larger batches skipped", flush=True)
            torch.cuda.empty_cache()
            break
        rows.append({"batch": n, "ms_per_batch": ms, "images_per_s": n * 1e3 / ms,
                     "peak_memory_mb": roofline.peak_memory_mb(seg.device)})
        print(f"  batch {n:4d}: {n * 1e3 / ms:9.2f} images/s  peak {rows[-1]['peak_memory_mb']:.0f} MB", flush=True)
    return rows


@torch.no_grad()
def backbone_roofline(seg: ovdense.OVSegmenter, windows: int, window_size, images: int,
                      repeats: int) -> Dict[str, object]:
    """Time the backbone (:meth:`CLIPBackbone.prefix`) on ``windows`` windows in one pass and
    compare its FLOP rate with the device's measured matmul peak on the same shapes (best
    observed time and best observed peak)."""
    crops = torch.randn(windows, 3, *window_size, device=seg.device)
    flops = roofline.backbone_flops(seg.backbone, tuple(window_size), windows)
    tokens, width, mlp = roofline.backbone_matmul_shape(seg.backbone, tuple(window_size), windows)
    seg.backbone.prefix(crops)  # warm-up
    # Best of alternating runs for both, so that a shared machine's drift does not favour one.
    times, peak = [], 0.0
    for _ in range(max(1, repeats)):
        times.append(_best_ms(lambda: seg.backbone.prefix(crops), 1, seg.device)[0])
        peak = max(peak, roofline.matmul_peak_gflops(seg.device, seg.dtype, tokens, width, mlp, repeats=3))
    ms = min(times)
    achieved = flops / (ms / 1e3) / 1e9
    nominal = roofline.nominal_bf16_tflops(seg.device)
    return {"windows_per_pass": windows, "images_per_pass": images, "backbone_ms": ms,
            "backbone_gflop_per_image": flops / images / 1e9, "backbone_gflops_per_s": achieved,
            "matmul_peak_gflops_per_s": peak, "fraction_of_matmul_peak": achieved / peak,
            "nominal_bf16_tflops": nominal,
            "fraction_of_nominal_bf16": None if nominal is None else achieved / (nominal * 1e3)}


@torch.no_grad()
def vfm_cost(seg: ovdense.OVSegmenter, image: np.ndarray, feats, official, provider_ms: float,
             spec: Dict[str, object], repeats: int):
    """The VFM's own cost per image at the protocol's resolution: its FLOPs on the image's
    windows, the fast path's provider on all of them in one batch (``provider_ms``, from
    :func:`stage_times`) and the official-style DINO one window per call
    (:meth:`OfficialProxyCLIP.vfm`; CASS: :meth:`OfficialCASS.image_vfm`, all its DINO calls of
    the image, two per window in sliding mode). Returns the report and the official-style
    features ``[n, C, I, J]``."""
    name = seg.head.source
    provider = seg.features[name]
    windows, size = len(feats.boxes), feats.window_size
    grid = provider.output_grid(size)
    last = "qkv" if getattr(provider, "output", "tokens") != "tokens" else "block"
    flops = roofline.vit_flops(provider.model, grid, windows, last=last)
    x = seg.preprocess(image)
    crops = crop_windows(x, feats.boxes, feats.pad)
    if isinstance(official, OfficialCASS):
        calls = official.dino_grids(tuple(size), tuple(x.shape[-2:]))
        official_flops = windows * sum(roofline.vit_flops(official.model, g, 1) for g in calls)
        official_ms, official_feats = _best_ms(lambda: official.image_vfm(crops, tuple(x.shape[-2:])), repeats,
                                               seg.device)
    else:
        calls, official_flops = [grid], flops
        official_ms, official_feats = _best_ms(lambda: torch.cat([official.vfm(c[None]) for c in crops]),
                                               repeats, seg.device)
    return {"provider": name, "model": getattr(provider, "model_name", type(provider).__name__),
            "weights": spec.get("weights") or "random", "model_kwargs": spec.get("model_kwargs"),
            "windows": windows, "window_size": list(size), "grid": list(grid),
            "tokens_per_window": grid[0] * grid[1], "gflop_per_image": flops / 1e9,
            "ms_per_image": provider_ms, "gflops_per_s": flops / 1e9 / (provider_ms / 1e3),
            "official_ms_per_image": official_ms, "official_gflop_per_image": official_flops / 1e9,
            "official_calls_per_window": [list(g) for g in calls],
            "official_hooks_registered": getattr(official, "hooks", 0)}, official_feats


def threshold_masks(head: ProxyCLIPHead, vfm: torch.Tensor) -> torch.Tensor:
    """Which affinities survive ProxyCLIP's threshold, per window (``[n, IJ, IJ]``, bool):
    ``(S - beta * mean(S)) * gamma >= 0``, the mean over each window as the official per-window calls."""
    f = F.normalize(vfm.float().flatten(2), dim=1)
    sim = torch.einsum("bcm,bcn->bmn", f, f)
    return (sim - sim.mean(dim=(1, 2), keepdim=True) * head.beta) * head.gamma >= 0


@torch.no_grad()
def official_parity(ref: ovdense.OVSegmenter, image: np.ndarray, classes, official,
                    fast_logits: torch.Tensor, provider_feats: torch.Tensor,
                    official_feats: torch.Tensor) -> Dict[str, object]:
    """The parity of a head with an official-style VFM path (CASS: :func:`cass_parity`).

    ProxyCLIP's parity, in two continuous parts, and what the threshold does with them.

    ProxyCLIP's ``-inf`` mask is discontinuous: an affinity on the threshold flips in or out of
    the softmax with a rounding-level change of the VFM features, and moves its row by about
    ``1 / (number of kept affinities)``. Any two float paths to DINO's features (here the official
    un-normalise / re-normalise against the provider's normalisation of the uint8 pixels) differ
    by ~1e-6, and a 336 window has ~6 M affinities, some of which sit within that of the
    threshold; so the end-to-end logits (``max_logit_diff`` of the row) may differ by up to
    ~1e-3 while the computation is the same. The parity is therefore checked as:

    * ``vfm_rel_diff``: max |official-style DINO - provider| / max |provider| on the image's
      windows, and
    * ``logit_diff_same_vfm``: max |logits| difference between the fast path and the
      official-style path run on the provider's VFM features (everything but DINO's forward),

    both <= :data:`PARITY_TOL`; ``threshold_flips`` counts the affinities whose side of the
    threshold differs between the two VFM feature sets (out of ``threshold_entries``; also as
    ``flips`` of ``flip_entries``, the keys every head's parity has)."""
    if isinstance(official, OfficialCASS):
        return cass_parity(ref, image, classes, official, fast_logits, provider_feats, official_feats)
    shared = plain_baseline(ref, image, classes, official, vfm=provider_feats)
    logit_diff = float((shared["logits"] - fast_logits).abs().max())
    scale = float(provider_feats.abs().max())
    vfm_diff = float((official_feats - provider_feats).abs().max()) / max(scale, 1e-12)
    a, b = threshold_masks(ref.head, provider_feats), threshold_masks(ref.head, official_feats)
    flips, entries = int((a != b).sum()), int(a.numel())
    return {"logit_diff_same_vfm": logit_diff, "vfm_rel_diff": vfm_diff,
            "threshold_flips": flips, "threshold_entries": entries,
            "discontinuity": "affinities across the threshold", "flips": flips, "flip_entries": entries,
            "ok": bool(logit_diff <= PARITY_TOL and vfm_diff <= PARITY_TOL)}


@torch.no_grad()
def cass_parity(ref: ovdense.OVSegmenter, image: np.ndarray, classes, official: OfficialCASS,
                fast_logits: torch.Tensor, provider_feats: torch.Tensor,
                official_feats: torch.Tensor) -> Dict[str, object]:
    """CASS's parity, in the two parts of :func:`official_parity`: ``vfm_rel_diff`` (the
    official-style DINO keys against the provider's, relative to the largest key) and
    ``logit_diff_same_vfm`` (the official-style path run on the provider's keys against the fast
    path), both <= :data:`PARITY_TOL`.

    CASS's one discontinuous step is the Hungarian pairing of DINO and CLIP heads: where two
    assignments cost (nearly) the same, a rounding-level change of the keys picks the other one and
    the window's fused graphs change. ``flips`` counts the windows whose pairing differs between
    the official-style path on the provider's keys and on its own keys (out of ``flip_entries``
    windows); with none, the end-to-end difference is continuous as well."""
    shared = plain_baseline(ref, image, classes, official, vfm=provider_feats)
    shared_pairs = list(official.pairings)
    own = plain_baseline(ref, image, classes, official, vfm=official_feats)  # = the timed baseline's logits
    own_pairs = list(official.pairings)
    logit_diff = float((shared["logits"] - fast_logits).abs().max())
    scale = float(provider_feats.abs().max())
    vfm_diff = float((official_feats - provider_feats).abs().max()) / max(scale, 1e-12)
    flips = sum(not np.array_equal(a, b) for a, b in zip(shared_pairs, own_pairs))
    return {"logit_diff_same_vfm": logit_diff, "vfm_rel_diff": vfm_diff,
            "end_to_end_own_keys": float((own["logits"] - fast_logits).abs().max()),
            "discontinuity": "windows with another head pairing", "flips": int(flips),
            "flip_entries": len(official_feats),
            "ok": bool(logit_diff <= PARITY_TOL and vfm_diff <= PARITY_TOL)}


def run(args) -> Dict[str, object]:
    torch.manual_seed(0)
    device = resolve_device(args.device)
    size = tuple(int(v) for v in args.size.split("x"))
    image = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    backbone = ovdense.CLIPBackbone.load(args.clip_model, pretrained, device=device)
    dtypes = list(dict.fromkeys(resolve_dtype(d, device) for d in args.dtype))
    backbones = {dt: backbone if dt == torch.float32 else copy.deepcopy(backbone).to(dtype=dt) for dt in dtypes}
    voc21 = voc21_classes()
    # Text encoding does not depend on the head: time it once, cold (no cache) and cached.
    probe = ovdense.OVSegmenter(backbone=backbone, head="vanilla", device=device, dtype="fp32",
                                text_encoder=dict(cache_dir=""))
    t0 = time.perf_counter()
    probe.set_classes(voc21, background="first")
    text_cold = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    probe.set_classes(voc21, background="first")
    text_warm = (time.perf_counter() - t0) * 1e3
    n_queries, n_templates = probe.vocabulary.num_queries, len(probe.text.templates)
    classes = f"VOC21 ({probe.vocabulary.num_classes} classes, {n_queries} queries x {n_templates} templates)"
    print(f"text: {text_cold:.0f} ms cold ({n_queries} queries x {n_templates} templates), {text_warm:.2f} ms cached",
          flush=True)

    text = {text_cache_key(probe.text): probe.text}  # one text cache per template set

    vfm_weights = None if args.vfm_weights in (None, "none") else args.vfm_weights
    clip_width = backbone.visual.conv1.out_channels
    specs = {head: provider_specs(head, vfm_weights, args.tiny_vfm, clip_width) for head in args.heads}
    providers: Dict[str, Dict[str, nn.Module]] = {}  # built once per head, shared by its segmenters

    def make(head: str, dt: torch.dtype) -> ovdense.OVSegmenter:
        if specs[head] and head not in providers:
            providers[head] = build_providers(specs[head], device)
        seg = build_segmenter(head, backbones[dt], device, dt, text, args.window_batch, text_backbone=backbone,
                              providers=providers.get(head))
        seg.set_classes(voc21, background="first")
        return seg

    rows: List[Dict[str, object]] = []
    for head in args.heads:
        # The plain baseline runs in fp32, whatever the fast path's dtype.
        ref = make(head, torch.float32)
        official = official_style(ref)
        if official is not None:
            pad = ref.windows.plan(tuple(ref.preprocess(image).shape[-2:]))[1]
            if any(pad):
                raise ValueError(
                    f"{head}: the {args.size} image makes padded windows {pad}; there the official VFM sees "
                    f"CLIP's mean colour in the padding and the provider black (README, ProxyCLIP quirk 5), so "
                    f"the two paths cannot be compared: pick a --size whose windows need no padding "
                    f"(e.g. 448x336 under the 336-pixel protocol)")
        ref.predict(image)  # warm-up
        for dt in dtypes:
            seg = make(head, dt)
            seg.predict(image)  # warm-up
            # Fast path and baseline alternate, so that drifts of a shared machine hit both alike.
            fast_ms, base_runs = [], []
            for r in range(max(args.repeats, args.baseline_repeats)):
                if r < args.repeats:
                    ms, res = _best_ms(lambda: seg.predict(image), 1, device)
                    fast_ms.append(ms)
                if r < args.baseline_repeats:
                    base_runs.append(plain_baseline(ref, image, voc21, official))
            latency = min(fast_ms)
            base = min(base_runs, key=lambda b: b["timings"]["image"] + b["timings"]["refine_decode"])
            image_base = base["timings"]["image"] + base["timings"]["refine_decode"]
            feats = seg.encode_image(image)
            fast_logits = seg.query_logits(feats)
            diff = float((base["logits"] - fast_logits).abs().max())
            agree = float(np.mean(base["labels"] == res.label_map))
            stages = stage_times(seg, image, feats, args.repeats)
            thr = throughput(seg, size, args.batch_sizes, len(feats.boxes), args.repeats, args.window_batch)
            best = _best(thr)["batch"] if thr else 1
            roof = backbone_roofline(seg, best * len(feats.boxes), feats.window_size, best, args.repeats)
            # What the image side could reach: the backbone at the matmul peak and every other
            # stage as measured (bound), or the backbone's matrix products alone (ceiling).
            at_peak = roof["backbone_gflop_per_image"] / roof["matmul_peak_gflops_per_s"] * 1e3
            others = sum(v for k, v in stages.items() if k != "backbone")
            folder_base = image_base + text_cold  # the baseline encodes the text again for every image
            proto = describe_protocol(protocol(head))
            if specs[head]:
                proto["features"] = copy.deepcopy(specs[head])  # what ran: the weights given here
            fp32 = dt == torch.float32
            vfm = parity = None
            parity_ok = bool(diff <= PARITY_TOL)
            if official is not None:
                source = seg.head.source
                vfm, official_feats = vfm_cost(seg, image, feats, official, stages["providers"], specs[head][source],
                                               args.repeats)
                vfm.update(share_of_ms_per_image=vfm["ms_per_image"] / latency,
                           share_of_baseline=vfm["official_ms_per_image"] / image_base)
                parity = official_parity(ref, image, voc21, official, fast_logits, feats.aux[source], official_feats)
                parity_ok = parity["ok"]
            row = {
                "head": head, "dtype": str(dt).replace("torch.", ""),
                "protocol": proto, "config": f"configs/_base_/{head}.py",
                "templates": len(seg.text.templates), "windows": len(feats.boxes),
                "ms_per_image": latency, "images_per_s": 1e3 / latency,
                "stages_ms": dict(stages, text_cached=text_warm),
                "text_ms_cold": text_cold, "text_ms_cached": text_warm,
                "baseline_image_ms": image_base, "baseline_with_text_ms": folder_base,
                "baseline_stages_ms": base["timings"],
                "speedup_image": image_base / latency, "speedup_folder": folder_base / latency,
                "speedup_bound_backbone_at_peak": image_base / (others + at_peak),
                "speedup_ceiling_matmuls_only": image_base / at_peak,
                "max_logit_diff": diff, "labels_identical": agree == 1.0, "label_agreement": agree,
                # fp32 rows only (None otherwise); NaN logits are never equal. Heads with an
                # official-style VFM path: the two parts of official_parity (``parity``).
                "parity_tolerance": PARITY_TOL, "parity_ok": parity_ok if fp32 else None,
                "parity_required": fp32 and head in STRICT_PARITY, "parity": parity,
                "roofline": roof, "throughput": thr, "vfm": vfm,
            }
            rows.append(row)
            print(f"{head:10s} {row['dtype']:8s} {row['windows']:2d} win {latency:8.1f} ms/img  baseline "
                  f"{image_base:8.1f}  x{row['speedup_image']:.2f} image  x{row['speedup_folder']:.1f} folder  "
                  f"backbone {roof['fraction_of_matmul_peak']:.0%} of matmul peak  diff {diff:.1e}  "
                  f"labels {agree:.2%} equal", flush=True)
            if vfm is not None:
                print(f"{'':10s} VFM {vfm['model']}: {vfm['windows']} x {vfm['tokens_per_window']} tokens, "
                      f"{vfm['gflop_per_image']:.1f} GFLOP/img, {vfm['ms_per_image']:.1f} ms/img batched "
                      f"({vfm['share_of_ms_per_image']:.0%} of ovdense), {vfm['official_ms_per_image']:.1f} ms/img "
                      f"official-style ({vfm['share_of_baseline']:.0%} of baseline)", flush=True)
                print(f"{'':10s} parity: logits on the same VFM features {parity['logit_diff_same_vfm']:.1e}, VFM "
                      f"features {parity['vfm_rel_diff']:.1e} (relative), {parity['flips']} of "
                      f"{parity['flip_entries']} {parity['discontinuity']}", flush=True)
    return {"device": str(device), "device_name": roofline.device_name(device),
            "dtypes": [str(d).replace("torch.", "") for d in dtypes], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "model": args.clip_model, "pretrained": args.pretrained, "image": args.size,
            "classes": classes, "rows": rows}


def _best(throughput_rows) -> Dict[str, float]:
    """The throughput row with the most images/s ({} when none)."""
    return max(throughput_rows, key=lambda t: t["images_per_s"]) if throughput_rows else {}


def markdown(info) -> str:
    lines = [f"{info['device_name']} ({info['device']}, {info['threads']} threads), torch {info['torch']}, "
             f"{info['model']} weights={info['pretrained']}, image {info['image']}, {info['classes']}", "",
             "| head | dtype | windows | batch-1 ms | best images/s (batch) | peak MB | baseline ms | "
             "speed-up (text cached in both) | vs baseline encoding text | bound: backbone at matmul peak | "
             "ceiling: backbone matmuls only | max logit diff | labels |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        best = _best(r["throughput"])
        thr = f"{best['images_per_s']:.2f} ({best['batch']})" if best else "-"
        mem = f"{best['peak_memory_mb']:.0f}" if best else "-"
        labels = "identical" if r["labels_identical"] else f"{r['label_agreement']:.2%} equal"
        lines.append(f"| {r['head']} | {r['dtype']} | {r['windows']} | {r['ms_per_image']:.1f} | {thr} | {mem} | "
                     f"{r['baseline_image_ms']:.0f} | {r['speedup_image']:.2f}x | {r['speedup_folder']:.1f}x | "
                     f"{r['speedup_bound_backbone_at_peak']:.2f}x | {r['speedup_ceiling_matmuls_only']:.2f}x | "
                     f"{r['max_logit_diff']:.1e} | {labels} |")
    lines += ["", "Stages (ms, one image, all windows in one batch):", "",
              "| head | dtype | windows | backbone | feature providers | head | logits | refine | decode | "
              "text (cached) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        s = r["stages_ms"]
        providers = f"{s['providers']:.1f}" if s.get("providers") else "-"
        lines.append(f"| {r['head']} | {r['dtype']} | {s['windows']:.1f} | {s['backbone']:.1f} | {providers} | "
                     f"{s['head']:.1f} | {s['logits']:.1f} | {s['refine']:.1f} | {s['decode']:.1f} | "
                     f"{s['text_cached']:.2f} |")
    vfm_rows = [r for r in info["rows"] if r.get("vfm")]
    if vfm_rows:
        lines += ["", "The VFM's own cost per image at the protocol's resolution (fast path: the provider on all "
                  "windows in one batch; official style: one window per call, explicit attention; ProxyCLIP: a "
                  "hook registered per call; CASS: every block's attention kept, and in sliding mode a second, "
                  "discarded DINO call per window at the whole image's short side):", "",
                  "| head | dtype | VFM (weights) | windows x size | tokens / window | GFLOP / image | fast path ms | "
                  "GFLOP/s | of fast-path image ms | official-style DINO grids per window | official-style "
                  "GFLOP / image | official-style ms | of baseline image ms |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in vfm_rows:
            v = r["vfm"]
            model = v["model"] + (" tiny" if v.get("model_kwargs") else "")
            lines.append(f"| {r['head']} | {r['dtype']} | {model} ({v['weights']}) | {v['windows']} x "
                         f"{v['window_size'][0]}x{v['window_size'][1]} | {v['tokens_per_window']} | "
                         f"{v['gflop_per_image']:.1f} | {v['ms_per_image']:.1f} | {v['gflops_per_s']:.0f} | "
                         f"{v['share_of_ms_per_image']:.0%} | "
                         f"{' + '.join(f'{g[0]}x{g[1]}' for g in v.get('official_calls_per_window', []))} | "
                         f"{v.get('official_gflop_per_image', float('nan')):.1f} | {v['official_ms_per_image']:.1f} | "
                         f"{v['share_of_baseline']:.0%} |")
        lines += ["", "Parity with the official-style path (a discontinuous step -- ProxyCLIP's -inf threshold, "
                  "CASS's Hungarian head pairing -- can turn rounding-level changes of the VFM features into "
                  "visible ones, so the end-to-end logits are compared in two continuous parts, each <= "
                  f"{PARITY_TOL:g}, and the step's changes are counted):", "",
                  "| head | dtype | end-to-end max logit diff | logits on the same VFM features | VFM features "
                  "(relative) | discontinuous step: changed of all | labels | parity |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in vfm_rows:
            q = r["parity"]
            labels = "identical" if r["labels_identical"] else f"{r['label_agreement']:.2%} equal"
            verdict = {True: "ok", False: "FAILED", None: "-"}[r["parity_ok"]]
            lines.append(f"| {r['head']} | {r['dtype']} | {r['max_logit_diff']:.1e} | {q['logit_diff_same_vfm']:.1e} | "
                         f"{q['vfm_rel_diff']:.1e} | {q['flips']} of {q['flip_entries']} {q['discontinuity']} | "
                         f"{labels} | {verdict} |")
    lines += ["", "Backbone roofline at the best batch (matrix products only; peak measured with the "
              "backbone's own shapes):", "",
              "| head | dtype | windows per pass | backbone ms | GFLOP / image | achieved GFLOP/s | "
              "matmul peak GFLOP/s | of peak | of datasheet bf16 peak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        f = r["roofline"]
        nominal = "-" if f["fraction_of_nominal_bf16"] is None else f"{f['fraction_of_nominal_bf16']:.0%}"
        lines.append(f"| {r['head']} | {r['dtype']} | {f['windows_per_pass']} | {f['backbone_ms']:.1f} | "
                     f"{f['backbone_gflop_per_image']:.1f} | {f['backbone_gflops_per_s']:.0f} | "
                     f"{f['matmul_peak_gflops_per_s']:.0f} | {f['fraction_of_matmul_peak']:.0%} | {nominal} |")
    if any(r["throughput"] for r in info["rows"]):
        lines += ["", "Throughput (already decoded images; all windows of a batch in shared forward passes):", "",
                  "| head | dtype | images per batch | images/s | peak MB |", "|---|---|---|---|---|"]
        for r in info["rows"]:
            for t in r["throughput"]:
                lines.append(f"| {r['head']} | {r['dtype']} | {t['batch']} | {t['images_per_s']:.2f} | "
                             f"{t['peak_memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def _report(out: Optional[str], name: str, info: Dict[str, object], table: str) -> None:
    """Print a mode's table; with ``--out`` also write ``<name>.json`` and ``<name>.md`` there."""
    print(table)
    if out:
        write_json(os.path.join(out, f"{name}.json"), info)
        with atomic_path(os.path.join(out, f"{name}.md")) as tmp, open(tmp, "w") as fh:
            fh.write(table + "\n")


def _sam_masks(args) -> int:
    from .sam_masks import benchmark_automatic_masks, format_automatic_masks

    width, height = (int(v) for v in (args.size or "640x480").split("x"))
    info = benchmark_automatic_masks(args.sam_model, args.sam_checkpoint, args.sam_config,
                                     image_size=(height, width), repeats=args.repeats,
                                     threads=args.threads, device="cpu" if args.device == "auto" else args.device)
    _report(args.out, "sam_masks", info, format_automatic_masks(info))
    unequal = [name for name, r in info["settings"].items() if r["identical"] is False]
    for name in unequal:
        print(f"error: {name}: ovdense's automatic masks differ from SamAutomaticMaskGenerator's", file=sys.stderr)
    return 1 if unequal else 0


def _official_style(args, method: str) -> int:
    """``--corrclip`` / ``--ovstitcher``: the method's ``predict`` against its official-style computation
    (:mod:`ovdense.bench.corrclip`, :mod:`ovdense.bench.ovstitcher`), outputs checked equal."""
    import importlib

    module = importlib.import_module(f"ovdense.bench.{method}")
    width, height = (int(v) for v in (args.size or "500x375").split("x"))
    info = getattr(module, f"benchmark_{method}")(
        args.clip_model, args.pretrained, size=(height, width), repeats=args.repeats,
        dino_weights=None if args.vfm_weights == "none" else args.vfm_weights,
        tiny_dino=TINY_VFM if args.tiny_vfm else None)
    _report(args.out, method, info, getattr(module, f"format_{method}")(info))
    if info["max_logit_diff"] > 1e-3 or info["labels_equal"] < 0.999:  # random ViT-B weights: ~2e-4 of rounding
        print(f"error: ovdense's {method} differs from the official-style computation", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip-model", default="ViT-B-16")
    p.add_argument("--pretrained", default="none", help="open_clip tag, local file, or none (random weights)")
    heads = available_heads()
    p.add_argument("--heads", nargs="+", default=[h for h in HEADS if h in heads], choices=heads,
                   help="heads to time, each under its shipped protocol configs/_base_/HEAD.py")
    p.add_argument("--size", default=None,
                   help="WIDTHxHEIGHT of the test images (default 500x375; --latency: the config's frame size)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", nargs="+", default=["fp32"],
                   help="one or more of fp32, fp16, bf16 (the baseline is fp32)")
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[1],
                   help="images per predict call for the throughput table (e.g. 1 16 64 256 on a GPU)")
    p.add_argument("--window-batch", type=int, default=0,
                   help="cap on windows per forward pass (default 0: all windows of a batch together)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-repeats", type=int, default=None, help="default: --repeats")
    p.add_argument("--out", default=None, help="folder for benchmark.json and benchmark.md")
    p.add_argument("--vfm-weights", default="none",
                   help="local weights of the timm ViT feature providers of heads that read one (ProxyCLIP's DINO "
                        "ViT-B/8), or none (default: random weights)")
    p.add_argument("--tiny-vfm", action="store_true",
                   help=f"tests: build those providers with {TINY_VFM} (same patch size and position grid)")
    lat = p.add_argument_group("latency mode (--latency): per-frame latency of one config, see ovdense.bench.latency")
    lat.add_argument("--latency", action="store_true",
                     help="time predict() frame by frame under one shipped config instead of the heads' protocols")
    lat.add_argument("--config", default=None,
                     help=f"config to time (a shipped name or a file; default {latency.DEFAULT_CONFIG})")
    lat.add_argument("--frames", type=int, default=20, help="timed frames (default 20)")
    lat.add_argument("--warmup", type=int, default=2, help="warm-up calls before timing (default 2)")
    lat.add_argument("--resolution", choices=("model", "input"), default="model",
                     help="predict(resolution=...): label map at the model's canvas (default) or the frame's size")
    lat.add_argument("--fixed-size", action="store_true",
                     help="also time FixedSizePredictor (one static-shape step per frame) on the same frames, "
                          "its label maps checked equal to predict's; reports the ratio")
    lat.add_argument("--cuda-graph", action="store_true",
                     help="with --fixed-size: record the step as a CUDA graph (CUDA devices only)")
    sam = p.add_argument_group("SAM mode (--sam-masks): automatic masks, ovdense vs SamAutomaticMaskGenerator, "
                               "see ovdense.bench.sam_masks")
    sam.add_argument("--sam-masks", action="store_true",
                     help="time automatic SAM masks (ours against segment-anything's, same model and image, "
                          "outputs checked equal) at SAM's defaults, 16 points, and 16 points with thresholds 0")
    sam.add_argument("--sam-model", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    sam.add_argument("--sam-checkpoint", default=None, help="local SAM weights (default: random weights)")
    sam.add_argument("--sam-config", default=None, help="sizes of a small SAM (the tiny fixture's model.json)")
    cc = p.add_argument_group("CorrCLIP / OV-Stitcher modes (--corrclip, --ovstitcher): ovdense vs the official "
                              "computation, see ovdense.bench.corrclip and ovdense.bench.ovstitcher")
    cc.add_argument("--corrclip", action="store_true",
                    help="time CorrCLIP (configs/_base_/corrclip.py, random region maps) against its official-style "
                         "computation on the same image, outputs checked equal; per-stage times")
    cc.add_argument("--ovstitcher", action="store_true",
                    help="time OV-Stitcher (configs/_base_/ovstitcher.py, random region maps) against its "
                         "official-style computation on the same image, outputs checked equal")
    args = p.parse_args(argv)
    if args.sam_masks:
        return _sam_masks(args)
    if args.corrclip or args.ovstitcher:
        if args.threads:
            torch.set_num_threads(args.threads)
        return _official_style(args, "corrclip" if args.corrclip else "ovstitcher")
    if args.config is not None and not args.latency:
        p.error("--config needs --latency (the other modes time the heads' base protocols, see --heads)")
    if (args.fixed_size or args.cuda_graph) and not args.latency:
        p.error("--fixed-size and --cuda-graph need --latency")
    if args.cuda_graph and not args.fixed_size:
        p.error("--cuda-graph needs --fixed-size (it records FixedSizePredictor's step)")
    if args.cuda_graph and resolve_device(args.device).type != "cuda":
        p.error(f"--cuda-graph needs a CUDA device; --device {args.device} is {resolve_device(args.device)}")
    if args.frames < 1 or args.warmup < 0:
        p.error("--frames must be positive and --warmup non-negative")
    if args.size is None and not args.latency:
        args.size = "500x375"
    if args.size is not None and not re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", args.size):
        p.error(f"--size must be WIDTHxHEIGHT in pixels, e.g. 500x375 (got {args.size!r})")
    if any(b < 1 for b in args.batch_sizes):
        p.error("--batch-sizes must be positive")
    if args.repeats < 1 or (args.baseline_repeats is not None and args.baseline_repeats < 1):
        p.error("--repeats and --baseline-repeats must be positive")
    if args.baseline_repeats is None:
        args.baseline_repeats = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.latency:
        info = latency.run(args)
        table = latency.markdown(info)
    else:
        info = run(args)
        table = markdown(info)
    print(table)
    if args.out:
        write_json(os.path.join(args.out, "benchmark.json"), info)
        with atomic_path(os.path.join(args.out, "benchmark.md")) as tmp, open(tmp, "w") as fh:
            fh.write(table)
        print(f"wrote {os.path.join(args.out, 'benchmark.json')} and benchmark.md", flush=True)
    if args.latency:
        fixed = info.get("fixed_size")
        if fixed is not None and not fixed["labels_equal"]:
            print("error: FixedSizePredictor's label maps differ from predict's", file=sys.stderr)
            return 1
        return 0
    unequal = [r for r in info["rows"] if r["parity_required"] and not r["parity_ok"]]
    for r in unequal:
        detail = (f"logits on the same VFM features {r['parity']['logit_diff_same_vfm']:.2e}, VFM features "
                  f"{r['parity']['vfm_rel_diff']:.2e} (relative)" if r.get("parity") else
                  f"logits {r['max_logit_diff']:.2e}")
        print(f"error: {r['head']} ({r['dtype']}): the fast path differs from the official-style baseline "
              f"beyond {PARITY_TOL:g}: {detail}", file=sys.stderr)
    return 1 if unequal else 0


if __name__ == "__main__":
    sys.exit(main())
