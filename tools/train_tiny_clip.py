#!/usr/bin/env python
"""Train the tiny open_clip CLIP fixture on the synthetic world (CPU, minutes).

The model is a standard open_clip ``CLIP`` built from
``tests/fixtures/synth_clip/synth-vit-tiny.json`` (ViT with patch 8 on 64 px images, class
token pooling, the standard CLIP BPE tokenizer), trained with a symmetric contrastive loss
on captioned synthetic scenes and random crops of them.  Captions of crops name what the
crop shows, which teaches local (patch-level) features that the training-free dense heads
rely on.  Scenes whose captions name the same set of classes count as positives of each
other (multi-positive targets), so in-batch duplicates do not fight the loss.

Usage (the fixture shipped in the repo was made with the defaults):

    python tools/train_tiny_clip.py --out tests/fixtures/synth_clip

Writes ``synth_clip.pt`` (fp16 state dict; ``open_clip.create_model('synth-vit-tiny',
pretrained=<path>)`` loads it after ``open_clip.add_model_config(<json>)``) and
``train_log.txt``.

World v2 (``--world v2``): the same recipe on ``ovdense.synthetic.world_v2.WorldV2``
(160 x 224 scenes, training-range indices only; batches of native 64 px windows, resized
crops and whole scenes, single objects and backgrounds, see :func:`make_batch_v2`), model
config ``tests/fixtures/synth_clip_v2/synth-vit-tiny-v2.json`` (text context 32), written to
``tests/fixtures/synth_clip_v2``.  The shipped v2 fixture was made with

    python tools/train_tiny_clip.py --world v2 --minutes 27 --eval-every 100 --hard-negatives 1

(``--minutes``: a wall-time budget; the cosine schedule runs over it.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import open_clip  # noqa: E402
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # noqa: E402

from ovdense.synthetic.world import (CLASS_NAMES, SyntheticWorld,  # noqa: E402
                                     caption_for)
from ovdense.synthetic import world_v2 as wv2  # noqa: E402

FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_clip")
CONFIG_PATH = os.path.join(FIXTURE_DIR, "synth-vit-tiny.json")
MODEL_NAME = "synth-vit-tiny"
WORLD_SEED = 0
HELDOUT_START = 1_000_000  # scene indices >= this are never used for training
PROMPT = "a photo of a {}."
# world v2 (``--world v2``): its own fixture folder and config (context 32: v2 captions of a
# whole scene run to ~31 tokens; otherwise the same architecture as v1)
FIXTURE_DIR_V2 = os.path.join(ROOT, "tests", "fixtures", "synth_clip_v2")
CONFIG_PATH_V2 = os.path.join(FIXTURE_DIR_V2, "synth-vit-tiny-v2.json")


def register() -> str:
    open_clip.add_model_config(CONFIG_PATH)
    return MODEL_NAME


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------

_MEAN = np.array(OPENAI_DATASET_MEAN, np.float32) * 255
_STD = np.array(OPENAI_DATASET_STD, np.float32) * 255


def to_tensor(images) -> torch.Tensor:
    x = (np.stack(images).astype(np.float32) - _MEAN) / _STD
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def random_crop(scene, rng, size, min_frac=0.35, max_frac=0.75, min_cover=0.08):
    """A square crop of the scene resized back to ``size``, with the instances it shows."""
    c = int(round(size * rng.uniform(min_frac, max_frac)))
    x0 = int(rng.integers(0, size - c + 1))
    y0 = int(rng.integers(0, size - c + 1))
    img = cv2.resize(scene.image[y0:y0 + c, x0:x0 + c], (size, size), interpolation=cv2.INTER_LINEAR)
    inst = []
    for cid, m in scene.instances:
        sub = m[y0:y0 + c, x0:x0 + c]
        if sub.mean() >= min_cover:
            inst.append((cid, sub))
    return img, inst


def make_batch(world, step, batch_size, crop_prob, synonym_prob, seed):
    images, captions, keys = [], [], []
    size = world.image_size
    for i in range(batch_size):
        rng = np.random.default_rng([seed, step, i, 7])
        scene = world.sample(step * batch_size + i)  # training indices: 0 .. steps*batch
        if rng.random() < crop_prob:
            img, inst = random_crop(scene, rng, size)
        else:
            img, inst = scene.image, scene.instances
        if rng.random() < 0.5:
            img = img[:, ::-1]
        cap = caption_for(inst, rng, synonym_prob=synonym_prob)
        images.append(np.ascontiguousarray(img))
        captions.append(cap)
        keys.append(tuple(sorted({c for c, _ in inst})))
    return images, captions, keys


# --------------------------------------------------------------------------------------
# world v2 data (``--world v2``): training-range indices only
# --------------------------------------------------------------------------------------

V2_MIX = "window=0.4,crop=0.25,scene=0.1,single=0.2,background=0.05"


def parse_mix(text):
    mix = {}
    for part in text.split(","):
        k, v = part.split("=")
        mix[k.strip()] = float(v)
    unknown = set(mix) - {"window", "crop", "scene", "single", "background"}
    if unknown:
        raise ValueError(f"unknown --mix sources: {sorted(unknown)}")
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items() if v > 0}


def _named_segments(scene, y0, x0, h, w, out_px, min_px):
    """(class_id, mask) of the segments of ``scene`` inside the window that keep at least
    ``min_px`` pixels once the window is resized to ``out_px`` x ``out_px``."""
    scale = out_px * out_px / float(h * w)
    named = []
    for seg in scene.segments:
        m = seg.mask[y0:y0 + h, x0:x0 + w]
        if np.count_nonzero(m) * scale >= min_px:
            named.append((seg.class_id, m))
    return named


def v2_item(world, source, rng, size, scene_at, single_index, min_px):
    """One training image (``size`` x ``size`` RGB) and the (class_id, mask) segments its caption names.

    ``source``: ``window`` (a native ``size`` px window of a training scene, what the dense
    heads slide over the scenes; the same as ``WorldV2.sample_window`` / ``SceneV2.crop``),
    ``crop`` (a random square of 40-160 px resized to ``size``), ``scene`` (the whole
    160 x 224 scene resized to ``size`` x ``size``), ``single`` (``sample_single`` of a seen
    thing class) or ``background`` (``sample_background``).  Segments with fewer than
    ``min_px`` pixels at the output size are left out of the caption.
    """
    if source == "single":
        cid = int(rng.choice(wv2.SEEN_THING_IDS))
        sc = world.sample_single(single_index, class_id=cid, size=size)
        return sc.image, _named_segments(sc, 0, 0, size, size, size, min_px)
    if source == "background":
        sc = world.sample_background(single_index, class_id=int(rng.integers(wv2.NUM_STUFF)), size=size)
        return sc.image, _named_segments(sc, 0, 0, size, size, size, min_px)
    scene = scene_at()
    H, W = scene.label_map.shape
    if source == "window":
        c = min(size, H, W)
        y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
        return (np.ascontiguousarray(scene.image[y0:y0 + c, x0:x0 + c]),
                _named_segments(scene, y0, x0, c, c, size, min_px))
    if source == "crop":
        c = int(rng.integers(40, min(H, W) + 1))
        y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
        interp = cv2.INTER_AREA if c > size else cv2.INTER_LINEAR
        img = cv2.resize(scene.image[y0:y0 + c, x0:x0 + c], (size, size), interpolation=interp)
        return img, _named_segments(scene, y0, x0, c, c, size, min_px)
    if source == "scene":
        img = cv2.resize(scene.image, (size, size), interpolation=cv2.INTER_AREA)
        return img, _named_segments(scene, 0, 0, H, W, size, min_px)
    raise ValueError(source)


def hard_negative(named, rng):
    """The segments of ``named`` with one thing's colour or shape swapped for another (a class
    not in ``named`` and never a novel composition), or None when there is no thing."""
    present = {c for c, _ in named}
    things = sorted(c for c in present if c >= wv2.NUM_STUFF)
    if not things:
        return None
    cid = things[int(rng.integers(len(things)))]
    col, shp = wv2.colour_shape_of(cid)
    # seen classes sharing exactly one of colour / shape with ``cid``: shapes of the same
    # colour first, then colours of the same shape (the order the draw below depends on)
    cands = [c for c in wv2.SEEN_THING_IDS if wv2.colour_shape_of(c)[0] == col and c != cid]
    cands += [c for c in wv2.SEEN_THING_IDS if wv2.colour_shape_of(c)[1] == shp and c != cid]
    cands = [c for c in cands if c not in present]
    if not cands:
        return None
    new = cands[int(rng.integers(len(cands)))]
    return [(new if c == cid else c, m) for c, m in named]


def make_batch_v2(world, step, batch_size, mix, seed, size=64, items_per_scene=4, min_px=12,
                  synonym_prob=0.25, count_prob=0.3, hard_neg_prob=0.0, negatives=None):
    """A batch of (images, captions, keys) from world v2's training range only.

    Scene-based items (window / crop / scene) share scenes, ``items_per_scene`` per scene:
    scene ``step * ceil(batch / items_per_scene) + i // items_per_scene``; single-object and
    background images use index ``step * batch + i`` (their own random streams).  Captions
    come from ``world_v2.caption_for`` (shuffled order, stuff synonyms with
    ``synonym_prob``, counts "two red circles" with ``count_prob``).  With ``hard_neg_prob``
    and a ``negatives`` list, (item, caption) pairs are appended to it: the item's caption
    with one thing's colour or shape swapped (:func:`hard_negative`), an extra negative text
    for that image only (never naming a novel composition).
    """
    per_step = -(-batch_size // items_per_scene)
    cache = {}
    sources, probs = list(mix), np.array(list(mix.values()))
    images, captions, keys = [], [], []
    for i in range(batch_size):
        rng = np.random.default_rng([seed, step, i, 17])
        scene_index = wv2.TRAIN_RANGE.start + step * per_step + i // items_per_scene
        single_index = wv2.TRAIN_RANGE.start + step * batch_size + i
        if max(scene_index, single_index) >= wv2.TRAIN_RANGE.stop:
            raise ValueError("ran out of world v2 training indices")

        def scene_at(j=scene_index):
            if j not in cache:
                cache[j] = world.sample(j)
            return cache[j]

        source = sources[int(rng.choice(len(sources), p=probs))]
        img, named = v2_item(world, source, rng, size, scene_at, single_index, min_px)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        cap = wv2.caption_for(named, rng, synonym_prob=synonym_prob, counts=bool(rng.random() < count_prob))
        assert not any(c in wv2.NOVEL_IDS for c, _ in named)
        if negatives is not None and hard_neg_prob > 0:
            nrng = np.random.default_rng([seed, step, i, 23])
            if nrng.random() < hard_neg_prob:
                neg = hard_negative(named, nrng)
                if neg is not None:
                    negatives.append((i, wv2.caption_for(neg, nrng, synonym_prob=synonym_prob,
                                                         counts=bool(nrng.random() < count_prob))))
        images.append(np.ascontiguousarray(img))
        captions.append(cap)
        keys.append(tuple(sorted({c for c, _ in named})))
    return images, captions, keys


@torch.no_grad()
def zero_shot_v2(model, tokenizer, world, per_class=25, n_background=100, start=None, size=64):
    """Zero-shot accuracy on held-out (evaluation-range) world v2 images.

    ``per_class`` single-object crops (``sample_single``) of every thing class, classified
    over the 16 thing classes (chance 1/16); accuracy over the 12 seen classes and over the 4
    novel compositions separately, plus how often a novel crop's prediction gets its colour
    / its shape right.  ``n_background`` stuff-only images (``sample_background``), classified
    over all 20 classes (chance 1/20).  Crop ``j`` of the ``t``-th thing class has index
    ``start + 16 * j + t``; background ``j`` has index ``start + j``.
    """
    model.eval()
    start = wv2.EVAL_RANGE.start if start is None else start
    names = wv2.CLASS_NAMES
    tf = class_text_features(model, tokenizer, names)
    things = list(wv2.THING_IDS)
    res = {}
    if per_class:
        imgs, gt = [], []
        for j in range(per_class):
            for t, cid in enumerate(things):
                imgs.append(world.sample_single(start + len(things) * j + t, class_id=cid, size=size).image)
                gt.append(cid)
        gt = np.array(gt)
        preds = []
        for b in range(0, len(imgs), 128):
            f = F.normalize(model.encode_image(to_tensor(imgs[b:b + 128])), dim=-1)
            preds.append((f @ tf[things].T).argmax(1).numpy())
        pred = np.array(things)[np.concatenate(preds)]
        ok = pred == gt
        novel = np.isin(gt, wv2.NOVEL_IDS)
        per = {names[c]: float(ok[gt == c].mean()) for c in things}
        pc = np.array([wv2.colour_shape_of(c) for c in pred])
        gc = np.array([wv2.colour_shape_of(c) for c in gt])
        res.update(seen=float(ok[~novel].mean()), novel=float(ok[novel].mean()), per_class=per,
                   novel_colour=float((pc[novel, 0] == gc[novel, 0]).mean()),
                   novel_shape=float((pc[novel, 1] == gc[novel, 1]).mean()),
                   novel_confusions={names[c]: {names[int(k)]: int(v) for k, v in
                                                zip(*np.unique(pred[gt == c], return_counts=True))}
                                     for c in wv2.NOVEL_IDS},
                   n_crops=len(gt))
    if n_background:
        bgs = [world.sample_background(start + j, size=size) for j in range(n_background)]
        f = F.normalize(model.encode_image(to_tensor([s.image for s in bgs])), dim=-1)
        pred = (f @ tf.T).argmax(1).numpy()
        gtb = np.array([s.stuff[0].class_id for s in bgs])
        res.update(background=float((pred == gtb).mean()), n_background=n_background)
    return res


@torch.no_grad()
def dense_probe_v2(model, tokenizer, world, n=100, start=None, size=64):
    """The same self-contained dense probes as :func:`dense_probe` on ``n`` held-out 64 px
    windows (``sample_window``) of world v2 evaluation scenes, over all 20 classes."""
    start = wv2.EVAL_RANGE.start if start is None else start
    wins = [world.sample_window(start + i, size) for i in range(n)]
    return dense_probe_images(model, tokenizer, [w.image for w in wins], np.stack([w.label_map for w in wins]),
                              wv2.CLASS_NAMES)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


@torch.no_grad()
def class_text_features(model, tokenizer, names=CLASS_NAMES, template=PROMPT):
    t = tokenizer([template.format(n) for n in names])
    return F.normalize(model.encode_text(t), dim=-1)


@torch.no_grad()
def zero_shot(model, tokenizer, world, n=120, start=HELDOUT_START):
    """Accuracy on held-out single-object images (over the thing classes) and
    background-only images (over all classes)."""
    model.eval()
    tf = class_text_features(model, tokenizer)
    things = world.thing_ids
    scenes = [world.sample_single(start + i) for i in range(n)]
    f = F.normalize(model.encode_image(to_tensor([s.image for s in scenes])), dim=-1)
    pred = (f @ tf[things].T).argmax(1).numpy()
    gt = np.array([things.index(s.instances[-1][0]) for s in scenes])
    obj_acc = float((pred == gt).mean())
    nb = max(n // 4, 3)
    bgs = [world.sample_background(start + i) for i in range(nb)]
    f = F.normalize(model.encode_image(to_tensor([s.image for s in bgs])), dim=-1)
    pred = (f @ tf.T).argmax(1).numpy()
    gt = np.array([s.instances[0][0] for s in bgs])
    bg_acc = float((pred == gt).mean())
    return obj_acc, bg_acc


@torch.no_grad()
def dense_probe(model, tokenizer, world, n=48, start=HELDOUT_START, modes=("vanilla", "maskclip", "qq")):
    """Quick, self-contained dense probes (not the ovdense heads): mIoU per mode."""
    scenes = [world.sample(start + i) for i in range(n)]
    return dense_probe_images(model, tokenizer, [s.image for s in scenes], np.stack([s.label_map for s in scenes]),
                              CLASS_NAMES, modes)


@torch.no_grad()
def dense_probe_images(model, tokenizer, images, gt, names, modes=("vanilla", "maskclip", "qq")):
    """Dense probes on given images and label maps: mIoU / pixel accuracy per mode."""
    model.eval()
    v = model.visual
    tf = class_text_features(model, tokenizer, names)
    x0 = v._embeds(to_tensor(images))
    for blk in v.transformer.resblocks[:-1]:
        x0 = blk(x0)
    last = v.transformer.resblocks[-1]
    nh = last.attn.num_heads
    K = len(names)
    out = {}
    for mode in modes:
        if mode == "vanilla":
            x = last(x0)
        else:
            y = last.ln_1(x0)
            q, k, val = F.linear(y, last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(3, dim=-1)
            if mode == "maskclip":
                o = val
            else:
                B, L, C = q.shape
                qh = q.reshape(B, L, nh, -1).transpose(1, 2)
                kh = k.reshape(B, L, nh, -1).transpose(1, 2)
                vh = val.reshape(B, L, nh, -1).transpose(1, 2)
                a = (qh @ qh.transpose(-1, -2) + kh @ kh.transpose(-1, -2)) * (qh.shape[-1] ** -0.5)
                o = (a.softmax(-1) @ vh).transpose(1, 2).reshape(B, L, C)
            x = last.attn.out_proj(o)
        x = v.ln_post(x[:, 1:]) @ v.proj
        x = F.normalize(x, dim=-1)
        g = int(math.isqrt(x.shape[1]))
        logits = (x @ tf.T).reshape(len(images), g, g, K).permute(0, 3, 1, 2)
        logits = F.interpolate(logits, size=gt.shape[1:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1).numpy()
        cm = np.bincount(gt.ravel() * K + pred.ravel(), minlength=K * K).reshape(K, K)
        iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
        out[mode] = (float(iou.mean()), float(np.diag(cm).sum() / cm.sum()))
    return out


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def contrastive(logits, target):
    """Symmetric InfoNCE with multi-positive targets (rows of ``target`` sum to one)."""
    return 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())


def encode_image_train(model, x, aux="attn"):
    """CLS embedding plus auxiliary readouts of the same forward pass, all L2-normalised.

    The first is exactly ``model.encode_image(x, normalize=True)``.  The auxiliary
    readouts (``aux``):

    * ``"attn"``: the class token read out of the last block through its attention alone
      (the CLS query's attention-weighted sum of values, ``out_proj``, ``ln_post``, ``proj``)
      *without* the block's residual connection and MLP: the path that ClearCLIP / NACLIP
      keep;
    * ``"both"`` (default): that, plus the per-patch outputs of the last block with identity
      attention (residual and MLP kept: MaskCLIP's / SCLIP's path), each projected and
      normalised, pooled with the CLS attention weights;
    * ``"value_mean"``: the mean over patches of the un-mixed value path (tried; it pulls
      background patches towards object words, so it is not used).

    Contrasting these with the captions as well (``--aux-weight``) makes the per-patch
    readouts text-aligned, the property of large CLIP models that the training-free dense
    heads rely on and that a 6-layer model trained for minutes does not get by itself.  The
    supervision is still one caption per image, never a per-pixel label, and the heads
    stay training-free.
    """
    v = model.visual
    h = v._embeds(x)
    for blk in v.transformer.resblocks[:-1]:
        h = blk(h)
    last = v.transformer.resblocks[-1]
    out = last(h)
    cls = F.normalize(v.ln_post(out[:, 0]) @ v.proj, dim=-1)
    B, L, C = h.shape
    nh = last.attn.num_heads
    W, b = last.attn.in_proj_weight, last.attn.in_proj_bias
    y = last.ln_1(h)
    val = F.linear(y, W[2 * C:], b[2 * C:])
    if aux == "value_mean":
        pf = F.normalize(v.ln_post(last.ls_1(last.attn.out_proj(val[:, 1:]))) @ v.proj, dim=-1)
        return cls, F.normalize(pf.mean(1), dim=-1)
    q = F.linear(y[:, :1], W[:C], b[:C]).reshape(B, 1, nh, -1).transpose(1, 2)
    k = F.linear(y, W[C:2 * C], b[C:2 * C]).reshape(B, L, nh, -1).transpose(1, 2)
    vh = val.reshape(B, L, nh, -1).transpose(1, 2)
    a = (q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)).softmax(-1)  # [B, nh, 1, L]
    o = (a @ vh).transpose(1, 2).reshape(B, C)
    af = F.normalize(v.ln_post(last.ls_1(last.attn.out_proj(o))) @ v.proj, dim=-1)
    if aux == "attn":
        return cls, af
    # "both": also the per-patch output of the whole block with identity mixing (residual
    # and MLP kept: MaskCLIP's readout), pooled with the CLS attention weights
    z = h[:, 1:] + last.ls_1(last.attn.out_proj(val[:, 1:]))
    z = z + last.ls_2(last.mlp(last.ln_2(z)))
    pf = F.normalize(v.ln_post(z) @ v.proj, dim=-1)
    w = a[:, :, 0, 1:].mean(1)
    w = w / w.sum(1, keepdim=True)
    pooled = F.normalize((w[..., None] * pf).sum(1), dim=-1)
    return cls, af, pooled


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=("v1", "v2"), default="v1",
                   help="v1: SyntheticWorld 64 px scenes (tests/fixtures/synth_clip); v2: WorldV2 160x224 "
                        "scenes, windows, crops and single objects (tests/fixtures/synth_clip_v2)")
    p.add_argument("--out", default=None, help="output folder (default: the world's fixture folder)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=0.0,
                   help="wall-time budget for the training loop (0: none); with a budget the cosine "
                        "schedule runs over whichever of --steps and --minutes comes first")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--crop-prob", type=float, default=0.5, help="v1: share of random crops")
    p.add_argument("--synonym-prob", type=float, default=0.25)
    p.add_argument("--mix", default=V2_MIX, help="v2: source probabilities of the batch items")
    p.add_argument("--items-per-scene", type=int, default=4, help="v2: batch items cut from one scene")
    p.add_argument("--min-pixels", type=float, default=12,
                   help="v2: a segment is named in a caption when it keeps this many pixels at 64 px")
    p.add_argument("--count-prob", type=float, default=0.3, help="v2: share of captions with counts")
    p.add_argument("--hard-negatives", type=float, default=0.0,
                   help="v2: share of images that also get a hard-negative caption (one thing's colour or "
                        "shape swapped for a seen class), an extra negative in the image-to-text loss")
    p.add_argument("--aux-weight", type=float, default=0.5,
                   help="weight of the contrastive loss on the auxiliary readout (0: plain CLIP)")
    p.add_argument("--aux", choices=("attn", "both", "value_mean"), default="both",
                   help="auxiliary readouts: CLS attention without residual/MLP (attn), plus CLS-attention "
                        "pooled patch outputs with identity mixing (both), or mean value path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=0, help="zero-shot + dense probe every N steps (0: end only)")
    p.add_argument("--eval-per-class", type=int, default=25,
                   help="v2 final evaluation: held-out crops per thing class (0: skip the final evaluation)")
    p.add_argument("--fp32", action="store_true", help="save fp32 instead of fp16")
    p.add_argument("--config", default=None, help="model config json (default: the world's)")
    args = p.parse_args(argv)
    v2 = args.world == "v2"
    if args.out is None:
        args.out = FIXTURE_DIR_V2 if v2 else FIXTURE_DIR
    if args.config is None:
        args.config = CONFIG_PATH_V2 if v2 else CONFIG_PATH

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    open_clip.add_model_config(args.config)
    name = os.path.splitext(os.path.basename(args.config))[0]
    model = open_clip.create_model(name)
    tokenizer = open_clip.get_tokenizer(name)
    size = model.visual.image_size[0]
    if v2:
        world = wv2.WorldV2(seed=WORLD_SEED)
        mix = parse_mix(args.mix)
        names = wv2.CLASS_NAMES
    else:
        world = SyntheticWorld(image_size=size, seed=WORLD_SEED)
        names = CLASS_NAMES

    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "train_log.txt")
    logf = open(log_path, "w")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    n_params = sum(p.numel() for p in model.parameters())
    n_tok = model.token_embedding.weight.numel()
    log(f"# ovdense tiny CLIP: model={name} params={n_params} (token embedding {n_tok}) "
        f"torch={torch.__version__} open_clip={open_clip.__version__} threads={args.threads}")
    log(f"# args: {json.dumps(vars(args), sort_keys=True)}")
    if v2:
        log(f"# world v2: WorldV2(seed={WORLD_SEED}) {world.height}x{world.width}, training indices only "
            f"({wv2.TRAIN_RANGE}); novel compositions never in training: {[names[c] for c in wv2.NOVEL_IDS]}")
    log(f"# classes: {names}")

    decay, no_decay = [], []
    for n_, p_ in model.named_parameters():
        (no_decay if (p_.ndim < 2 or "embedding" in n_ or "logit_scale" in n_) else decay).append(p_)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    budget_s = args.minutes * 60.0

    def progress(step, elapsed, warm_end):
        """Fraction of the cosine part done: by steps, or by time when a budget is set."""
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        if budget_s > 0 and warm_end is not None:
            t = max(t, (elapsed - warm_end) / max(1e-9, budget_s - warm_end))
        return t

    def lr_at(step, t=None):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if t is None:
            t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    def do_eval(final=False):
        if v2:
            zs = zero_shot_v2(model, tokenizer, world, per_class=args.eval_per_class if final else 10,
                              n_background=100 if final else 40)
            dp = dense_probe_v2(model, tokenizer, world, n=100 if final else 32)
            return zs, dp
        return zero_shot(model, tokenizer, world, n=300 if final else 120), \
            dense_probe(model, tokenizer, world, n=100 if final else 48)

    t0 = time.time()
    ema = None
    warm_end = None
    step = -1
    log("step loss loss_ema lr logit_scale elapsed_s")
    for step in range(args.steps):
        elapsed = time.time() - t0
        if step == args.warmup:
            warm_end = elapsed
        t = progress(step, elapsed, warm_end) if step >= args.warmup else 0.0
        if budget_s > 0 and step > 0 and (elapsed >= budget_s or t >= 1.0):
            step -= 1
            break
        model.train()
        negs = []
        if v2:
            images, captions, keys = make_batch_v2(world, step, args.batch_size, mix, args.seed, size,
                                                   args.items_per_scene, args.min_pixels, args.synonym_prob,
                                                   args.count_prob, args.hard_negatives, negs)
        else:
            images, captions, keys = make_batch(world, step, args.batch_size, args.crop_prob,
                                                args.synonym_prob, args.seed)
        x = to_tensor(images)
        tk = tokenizer(captions + [c for _, c in negs])
        lr = lr_at(step, t if budget_s > 0 else None)
        for g in opt.param_groups:
            g["lr"] = lr
        imf, *auxf = encode_image_train(model, x, args.aux)
        txf = F.normalize(model.encode_text(tk), dim=-1)
        scale = model.logit_scale.exp()
        key_ids = {k: j for j, k in enumerate(dict.fromkeys(keys))}
        kid = torch.tensor([key_ids[k] for k in keys])
        target = (kid[:, None] == kid[None, :]).float()
        target = target / target.sum(1, keepdim=True)
        if negs:
            # hard negatives: extra text columns, each a candidate for its own image only
            # (masked out of the other images' rows and out of the text-to-image direction)
            nb = len(captions)
            neg_mask = torch.full((nb, len(negs)), float("-inf"))
            neg_mask[torch.tensor([i for i, _ in negs]), torch.arange(len(negs))] = 0.0
            txf, nf = txf[:nb], txf[nb:]

            def lossf(f_):
                lg = scale * f_ @ txf.T
                i2t = torch.cat([lg, scale * f_ @ nf.T + neg_mask], 1)
                return 0.5 * (torch.sum(-target * F.log_softmax(i2t, 1)[:, :nb], 1).mean()
                              + torch.sum(-target * F.log_softmax(lg.T, 1), 1).mean())
        else:
            def lossf(f_):
                return contrastive(scale * f_ @ txf.T, target)
        loss = lossf(imf)
        if args.aux_weight > 0:
            for f_ in auxf:
                loss = loss + args.aux_weight * lossf(f_)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % args.log_every == 0 or step == args.steps - 1:
            log(f"{step} {loss.item():.4f} {ema:.4f} {lr:.2e} {model.logit_scale.exp().item():.1f} "
                f"{time.time() - t0:.1f}")
        if args.eval_every and step and step % args.eval_every == 0:
            zs, dp = do_eval()
            if v2:
                zs_txt = (f"seen {zs['seen']:.3f} novel {zs['novel']:.3f} (colour {zs['novel_colour']:.3f} "
                          f"shape {zs['novel_shape']:.3f}) backgrounds {zs['background']:.3f}")
            else:
                zs_txt = f"objects {zs[0]:.3f} backgrounds {zs[1]:.3f}"
            log(f"# eval step {step}: zero-shot {zs_txt} dense "
                + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in dp.items()))
    train_s = time.time() - t0
    n_steps = step + 1
    result = {"steps": n_steps, "train_s": train_s, "loss_ema": ema}

    log(f"# training wall time {train_s:.0f} s, {n_steps} steps, final loss (ema) {ema:.4f}")
    if not v2:
        zs, dp = do_eval(final=True)
        log(f"# zero-shot accuracy on held-out single-object images (300, {len(world.thing_ids)} thing classes, "
            f"prompt '{PROMPT}'): {zs[0]:.4f}")
        log(f"# zero-shot accuracy on held-out background-only images (75, all {len(CLASS_NAMES)} classes): "
            f"{zs[1]:.4f}")
        log("# dense probe (mIoU / pixel acc, 100 held-out scenes, 8x8 patch logits upsampled): "
            + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in dp.items()))
        result.update(zero_shot=zs, dense=dp)
    elif args.eval_per_class > 0:
        zs, dp = do_eval(final=True)
        nt = len(wv2.THING_IDS)
        log(f"# SYNTHETIC zero-shot, held-out (evaluation-range) single-object crops (sample_single, "
            f"{zs['n_crops']} = {args.eval_per_class} per class, over the {nt} thing classes, chance "
            f"{1 / nt:.4f}, prompt '{PROMPT}'): seen (12 classes) {zs['seen']:.4f}, "
            f"novel compositions (4) {zs['novel']:.4f}")
        log(f"#   novel crops with the right colour {zs['novel_colour']:.4f} (chance 0.25), right shape "
            f"{zs['novel_shape']:.4f} (chance 0.25)")
        log("#   per class: " + ", ".join(f"{k} {v:.2f}" for k, v in zs["per_class"].items()))
        log("#   novel predictions: " + "; ".join(f"{k} -> {v}" for k, v in zs["novel_confusions"].items()))
        log(f"# SYNTHETIC zero-shot, held-out background-only images (sample_background, {zs['n_background']}, "
            f"over all {len(names)} classes, chance {1 / len(names):.4f}): {zs['background']:.4f}")
        log("# SYNTHETIC dense probe (mIoU / pixel acc, 100 held-out 64 px windows (sample_window), 20 classes, "
            "8x8 patch logits upsampled): " + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in dp.items()))
        result.update(zero_shot=zs, dense=dp)

    sd = model.state_dict()
    if not args.fp32:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    out_pt = os.path.join(args.out, "synth_clip.pt")
    torch.save(sd, out_pt)
    log(f"# saved {out_pt} ({os.path.getsize(out_pt) / 1e6:.2f} MB)")
    logf.close()
    return result


if __name__ == "__main__":
    main()
