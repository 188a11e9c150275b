#!/usr/bin/env python
"""Train a tiny DINO (self-supervised timm ViT) on synthetic world v2 scenes (CPU, minutes).

The fixture in ``tests/fixtures/synth_dino`` is a plain timm ViT, loadable like a real DINO
backbone::

    TimmViTFeatures(model_name="vit_small_patch16_224.dino",
                    weights="tests/fixtures/synth_dino/synth_dino.pt",
                    model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, img_size=64))

(the name and kwargs are also in ``model.json``). The ``.dino`` tag only selects timm's
pretrained config (ImageNet mean/std, which training uses too); nothing is downloaded.

Recipe (DINO, Caron et al. 2021, scaled down; no labels are used anywhere)
------------------------------------------------------------------------
* Data: training-range scenes of ``WorldV2(seed=0)`` (160 x 224) only. A pool of scenes is
  generated up front and a few scenes of it are replaced by new ones every step. For each
  image a square *view region* (``--region`` px, default 96) is taken at a random place and
  multi-crop is applied inside it: 2 **global crops** (area 40-100 % of the region, resized
  to 64 x 64) and ``--local-crops`` (default 4) **local crops** (area 5-40 %, resized to
  32 x 32), so objects keep about their native size (8 px patches see 8 px of the scene at
  evaluation time). Augmentations: horizontal / vertical flips, mild brightness, contrast and
  saturation jitter, and random grayscale (p 0.1) per crop; no blur or solarisation (the
  scenes are tiny).
* Networks: student and teacher are the same timm ViT (``dynamic_img_size=True``, class
  token, ``num_classes=0``) followed by a DINO head: 3-layer MLP (GELU, hidden ``--hidden``),
  L2-normalised bottleneck (``--bottleneck``), and a weight-normalised prototype layer with
  ``--prototypes`` outputs (its norm fixed to 1, as DINO's ``norm_last_layer``).
* Loss: cross-entropy between the teacher's softmax on each global crop and the student's
  log-softmax on every other crop (globals and locals). Teacher outputs are **centred** (a
  running mean of teacher logits, momentum 0.9) and **sharpened** (temperature 0.04 vs the
  student's 0.1).
* Teacher: exponential moving average of the student (momentum cosine from ``--ema`` to 1),
  never back-propagated; only the teacher is saved.
* Optimiser: AdamW, lr ``--lr`` (linear warm-up over the first 10 % then cosine to 1 %),
  weight decay cosine 0.04 -> 0.4 on weight matrices only, gradient clip 3.0, prototype
  layer frozen for the first 3 % of training.
* Schedules run on *progress* = max(step / steps, elapsed / (minutes * 60)), so a
  time-capped run still finishes its schedules.

Usage (the fixture was made with the command in ``tests/fixtures/synth_dino/command``)::

    python tools/train_tiny_dino.py --out tests/fixtures/synth_dino --minutes 20

Writes ``synth_dino.pt`` (fp16 state dict of the teacher backbone), ``model.json`` (timm
name + kwargs) and ``train_log.txt``; with ``--eval N`` (default 20) it also measures the
patch-affinity AUC (see :func:`patch_affinity_auc`) on N held-out evaluation-range scenes
for the trained and the random-init model and appends it to the log. ``--eval-only`` measures
an existing ``OUT/synth_dino.pt`` (and the tiny CLIP fixture's patch tokens on 64 px windows)
without training.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODEL_NAME = "vit_small_patch16_224.dino"
MODEL_KWARGS = dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, img_size=64)
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_dino")
WORLD_SEED = 0


# --------------------------------------------------------------------------------------
# evaluation: patch-affinity AUC
# --------------------------------------------------------------------------------------


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based ROC AUC (Mann-Whitney U, ties counted half)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties
    bounds = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(s)]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def patch_segments(scene, patch: int) -> np.ndarray:
    """Per-patch segment id (``[h, w]`` int): ``k`` = the segment (``scene.segments[k]``:
    stuff first, then thing instances) covering more than half of the patch's pixels; -1
    where no segment does. Also returns nothing else; the image is cropped down to a
    multiple of ``patch`` like the provider does."""
    H, W = scene.label_map.shape
    h, w = H // patch, W // patch
    seg = np.full((H, W), -1, np.int32)
    for k, s in enumerate(scene.segments):
        seg[s.mask] = k
    seg = seg[: h * patch, : w * patch].reshape(h, patch, w, patch).transpose(0, 2, 1, 3).reshape(h, w, -1)
    out = np.full((h, w), -1, np.int32)
    for k in range(len(scene.segments)):
        frac = (seg == k).mean(-1)
        out[frac > 0.5] = k
    return out


def affinity_pairs(feats: np.ndarray, seg: np.ndarray, n_stuff: int, rng: np.random.Generator,
                   max_pairs: int = 4000, things_only: bool = False):
    """Cosine similarities and labels of patch pairs of one image.

    ``feats`` ``[C, h, w]``, ``seg`` ``[h, w]`` from :func:`patch_segments`. Pairs: every
    unordered pair of labelled patches of which at least one lies in a *thing instance*;
    positive when both lie in the same instance, negative when they lie in different
    segments (another instance, of any class, or stuff). With ``things_only`` both patches
    must lie in thing instances (negatives are then instance-vs-instance only, the harder
    case: same-class instances look alike). Subsampled to ``max_pairs``.
    """
    C = feats.shape[0]
    f = feats.reshape(C, -1).T.astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-12
    s = seg.reshape(-1)
    idx = np.flatnonzero(s >= 0)
    if len(idx) < 2:
        return np.zeros(0), np.zeros(0, bool)
    a, b = np.triu_indices(len(idx), 1)
    sa, sb = s[idx[a]], s[idx[b]]
    keep = ((sa >= n_stuff) & (sb >= n_stuff)) if things_only else ((sa >= n_stuff) | (sb >= n_stuff))
    a, b, sa, sb = a[keep], b[keep], sa[keep], sb[keep]
    if len(a) > max_pairs:
        pick = rng.choice(len(a), max_pairs, replace=False)
        a, b, sa, sb = a[pick], b[pick], sa[pick], sb[pick]
    sim = (f[idx[a]] * f[idx[b]]).sum(1)
    return sim, sa == sb


@torch.no_grad()
def patch_affinity_auc(provider, n_scenes: int = 20, start: int = 0, window: Optional[int] = None,
                       seed: int = 0, max_pairs: int = 4000, things_only: bool = False) -> Dict[str, float]:
    """Patch-affinity ROC AUC of a feature provider on held-out world v2 scenes.

    Scenes ``eval_range[start : start + n_scenes]`` of ``WorldV2(seed=0)``; the full
    160 x 224 image, or with ``window`` its deterministic ``sample_window(i, window)``.
    Scores: cosine similarity of the provider's patch features; pairs and labels as in
    :func:`affinity_pairs`, pooled over scenes. Returns ``auc``, ``n_pos``, ``n_neg``.
    """
    from ovdense.synthetic import WorldV2

    world = WorldV2(seed=WORLD_SEED)
    rng = np.random.default_rng(seed)
    patch = provider.patch_size[0]
    sims, labels = [], []
    scenes = [world.sample_window(i, window) if window else world.sample(i)
              for i in world.eval_range[start: start + n_scenes]]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2)
    all_feats = torch.cat([provider(images[k: k + 10]) for k in range(0, len(scenes), 10)]).numpy()
    for scene, feats in zip(scenes, all_feats):
        seg = patch_segments(scene, patch)
        assert seg.shape == feats.shape[1:], (seg.shape, feats.shape)
        s, pair_labels = affinity_pairs(feats, seg, len(scene.stuff), rng, max_pairs, things_only)
        sims.append(s)
        labels.append(pair_labels)
    sims, labels = np.concatenate(sims), np.concatenate(labels)
    return dict(auc=roc_auc(sims, labels), n_pos=int(labels.sum()), n_neg=int((~labels).sum()))


CLIP_FIXTURES = {  # (folder, model name) of the tiny CLIP fixtures
    "v1": (os.path.join(ROOT, "tests", "fixtures", "synth_clip"), "synth-vit-tiny"),
    "v2": (os.path.join(ROOT, "tests", "fixtures", "synth_clip_v2"), "synth-vit-tiny-v2"),
}


class ClipPatches(torch.nn.Module):
    """Patch tokens (last block, ``ln_post`` applied) of a tiny open_clip CLIP fixture
    (``world="v1"``: ``tests/fixtures/synth_clip``; ``"v2"``: ``tests/fixtures/synth_clip_v2``;
    both 64 px input) as ``[B, C, h, w]``; a comparison for :func:`patch_affinity_auc` on
    64 x 64 windows only (fixed pos-embed)."""

    def __init__(self, world: str = "v1"):
        super().__init__()
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        folder, name = CLIP_FIXTURES[world]
        open_clip.add_model_config(os.path.join(folder, name + ".json"))
        self.visual = open_clip.create_model(name, pretrained=os.path.join(folder, "synth_clip.pt")).visual
        self.visual.eval()
        self.register_buffer("mean", 255.0 * torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", 255.0 * torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1))
        self.patch_size = tuple(self.visual.patch_size)

    @torch.no_grad()
    def forward(self, images):
        x = (images.float() - self.mean) / self.std
        n = len(self.visual.transformer.resblocks)
        return self.visual.forward_intermediates(x, indices=[n - 1], intermediates_only=True,
                                                 normalize_intermediates=True)["image_intermediates"][0]


# --------------------------------------------------------------------------------------
# data: multi-crop views of training scenes
# --------------------------------------------------------------------------------------


class MultiCrop:
    def __init__(self, world, rng: np.random.Generator, pool: int, refresh: int, region: int,
                 n_local: int, global_size: int = 64, local_size: int = 32):
        self.world, self.rng = world, rng
        self.region, self.n_local = region, n_local
        self.global_size, self.local_size = global_size, local_size
        self.next_index = 0
        self.pool = [self._new() for _ in range(pool)]
        self.refresh = refresh

    def _new(self) -> np.ndarray:
        i = self.world.train_range[self.next_index]  # training-range scenes only
        self.next_index += 1
        return self.world.sample(i).image

    def _crop(self, img: np.ndarray, scale, out: int) -> np.ndarray:
        H, W = img.shape[:2]
        area = self.rng.uniform(*scale) * H * W
        ratio = math.exp(self.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch = int(round(min(H, max(4, math.sqrt(area / ratio)))))
        cw = int(round(min(W, max(4, math.sqrt(area * ratio)))))
        y, x = int(self.rng.integers(0, H - ch + 1)), int(self.rng.integers(0, W - cw + 1))
        c = img[y: y + ch, x: x + cw]
        interp = cv2.INTER_AREA if ch > out else cv2.INTER_LINEAR
        c = cv2.resize(c, (out, out), interpolation=interp)
        if self.rng.random() < 0.5:
            c = c[:, ::-1]
        if self.rng.random() < 0.5:
            c = c[::-1]
        return c

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Mild colour jitter on a ``[B, 3, h, w]`` float batch in [0, 255]."""
        B = x.shape[0]
        g = torch.from_numpy(self.rng.uniform(0.8, 1.2, (B, 3))).float()
        bright, contrast, sat = g[:, 0].view(B, 1, 1, 1), g[:, 1].view(B, 1, 1, 1), g[:, 2].view(B, 1, 1, 1)
        x = x * bright
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - grey) * sat + grey
        gs = torch.from_numpy(self.rng.random(B) < 0.1).view(B, 1, 1, 1)
        x = torch.where(gs, grey.expand_as(x), x)
        return x.clamp(0, 255)

    def batch(self, n: int) -> List[torch.Tensor]:
        """``2 + n_local`` uint8-range float tensors ``[n, 3, s, s]`` (globals first)."""
        for _ in range(self.refresh):
            self.pool[int(self.rng.integers(len(self.pool)))] = self._new()
        views: List[List[np.ndarray]] = [[] for _ in range(2 + self.n_local)]
        for k in self.rng.integers(0, len(self.pool), n):
            img = self.pool[k]
            H, W = img.shape[:2]
            r = min(self.region, H, W)
            y, x = int(self.rng.integers(0, H - r + 1)), int(self.rng.integers(0, W - r + 1))
            reg = img[y: y + r, x: x + r]
            for v in range(2):
                views[v].append(self._crop(reg, (0.4, 1.0), self.global_size))
            for v in range(self.n_local):
                views[2 + v].append(self._crop(reg, (0.05, 0.4), self.local_size))
        out = []
        for vs in views:
            t = torch.from_numpy(np.ascontiguousarray(np.stack(vs))).permute(0, 3, 1, 2).float()
            out.append(self._jitter(t))
        return out


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------


def create_backbone(model_name: str = MODEL_NAME, model_kwargs: Optional[dict] = None):
    """The backbone exactly as ``TimmViTFeatures`` builds it."""
    import timm

    return timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                             **dict(MODEL_KWARGS if model_kwargs is None else model_kwargs))


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = False  # norm_last_layer

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1)
        return self.last_layer(x)


class DINOWrapper(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: Sequence[torch.Tensor]):
        # one backbone call per resolution (globals together, locals together)
        out, i = [], 0
        while i < len(views):
            j = i
            while j < len(views) and views[j].shape[-1] == views[i].shape[-1]:
                j += 1
            out.append(self.backbone(torch.cat(views[i:j])))
            i = j
        return self.head(torch.cat(out))


def dino_loss(student_out, teacher_out, center, n_views: int, n_global: int, t_s: float, t_t: float):
    s = F.log_softmax(student_out / t_s, dim=-1).chunk(n_views)
    t = F.softmax((teacher_out - center) / t_t, dim=-1).detach().chunk(n_global)
    total, n = 0.0, 0
    for i, ti in enumerate(t):
        for j, sj in enumerate(s):
            if i == j:
                continue
            total = total + (-ti * sj).sum(-1).mean()
            n += 1
    return total / n


def cosine(progress: float, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=FIXTURE_DIR, help="output folder")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-time cap (schedules follow it)")
    p.add_argument("--steps", type=int, default=100000, help="step cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64, help="images per step")
    p.add_argument("--pool", type=int, default=1500, help="training scenes kept in memory")
    p.add_argument("--refresh", type=int, default=4, help="pool scenes replaced per step")
    p.add_argument("--region", type=int, default=96, help="side of the view region multi-crop works in")
    p.add_argument("--local-crops", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.99, help="initial teacher EMA momentum")
    p.add_argument("--prototypes", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--bottleneck", type=int, default=96)
    p.add_argument("--teacher-temp", type=float, default=0.04)
    p.add_argument("--student-temp", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-only", action="store_true",
                   help="no training: measure the AUCs of OUT/synth_dino.pt (and the tiny CLIP) only")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval", type=int, default=20, help="held-out scenes for the final AUC (0: none)")
    p.add_argument("--eval-every", type=int, default=200, help="steps between teacher AUC checks (5 scenes; 0: none)")
    return p.parse_args(argv)


def evaluate(weights: str, n: int, init_state: Optional[dict] = None, log=print, clip: bool = False) -> dict:
    """AUCs of the trained model, a random-init one (``init_state`` or seed-0 init) and
    optionally the tiny CLIP (64 x 64 windows only)."""
    from ovdense.features.timm_vit import TimmViTFeatures

    torch.manual_seed(0)
    rand = TimmViTFeatures(MODEL_NAME, weights=None, model_kwargs=MODEL_KWARGS)
    if init_state is not None:
        rand.model.load_state_dict(init_state)
    models = [("trained", TimmViTFeatures(MODEL_NAME, weights=weights, model_kwargs=MODEL_KWARGS), (None, 64)),
              ("random-init", rand, (None, 64))]
    if clip:
        models.append(("tiny CLIP (world v1) patch tokens", ClipPatches("v1"), (64,)))
        models.append(("tiny CLIP v2 (world v2) patch tokens", ClipPatches("v2"), (64,)))
    result = {}
    for name, prov, windows in models:
        for window in windows:
            for things_only in (False, True):
                r = patch_affinity_auc(prov, n, window=window, things_only=things_only)
                where = "full 160x224" if window is None else f"{window}x{window} windows"
                neg = "instance vs instance" if things_only else "instance vs any other segment"
                log(f"# affinity AUC ({name}, {n} eval scenes, {where}, {neg}): {r['auc']:.4f} "
                    f"({r['n_pos']} pos / {r['n_neg']} neg pairs)")
                key = (f"auc_{name.split(' (')[0]}_{'full' if window is None else window}"
                       f"{'_things' if things_only else ''}")
                result[key] = r["auc"]
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eval_only:
        return evaluate(os.path.join(args.out, "synth_dino.pt"), args.eval or 20, clip=True)
    torch.manual_seed(args.seed)
    from ovdense.synthetic import WorldV2

    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "train_log.txt")
    logf = open(log_path, "w")

    def log(msg: str):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    t0 = time.time()
    log(f"# train_tiny_dino {' '.join(sys.argv[1:]) if argv is None else ' '.join(argv)}")
    log(f"# args {json.dumps(vars(args))}")
    log(f"# model {MODEL_NAME} {json.dumps(MODEL_KWARGS)}, torch {torch.__version__}, threads {args.threads}")
    student_bb = create_backbone()
    init_state = {k: v.clone() for k, v in student_bb.state_dict().items()}
    dim = student_bb.num_features
    student = DINOWrapper(student_bb, DINOHead(dim, args.prototypes, args.hidden, args.bottleneck))
    teacher = DINOWrapper(create_backbone(), DINOHead(dim, args.prototypes, args.hidden, args.bottleneck))
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    n_bb = sum(p.numel() for p in student_bb.parameters())
    n_head = sum(p.numel() for p in student.head.parameters())
    log(f"# backbone params {n_bb:,}, head params {n_head:,}")
    cfg = student_bb.pretrained_cfg
    mean = 255.0 * torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = 255.0 * torch.tensor(cfg["std"]).view(1, 3, 1, 1)

    decay = [p for n, p in student.named_parameters() if p.requires_grad and p.ndim >= 2
             and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in student.named_parameters() if p.requires_grad and not (
        p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.04), dict(params=no_decay, weight_decay=0.0)],
                            lr=args.lr, betas=(0.9, 0.999))
    last_layer = [p for n, p in student.named_parameters() if "last_layer" in n and p.requires_grad]

    world = WorldV2(seed=WORLD_SEED)
    data = MultiCrop(world, np.random.default_rng(args.seed), args.pool, args.refresh, args.region,
                     args.local_crops)
    log(f"# pool of {args.pool} training scenes built in {time.time() - t0:.1f} s")
    n_views, n_global = 2 + args.local_crops, 2
    center = torch.zeros(1, args.prototypes)
    t_train = time.time()
    budget = args.minutes * 60.0
    loss_ema, step = None, 0
    log("step progress loss loss_ema lr wd ema teacher_entropy elapsed_s")
    from ovdense.features.timm_vit import TimmViTFeatures

    probe = TimmViTFeatures(MODEL_NAME, weights=None, model_kwargs=MODEL_KWARGS) if args.eval_every > 0 else None

    def probe_auc() -> str:
        probe.model.load_state_dict(teacher.backbone.state_dict())
        a = patch_affinity_auc(probe, 5, start=1000)["auc"]  # scenes not used by the final eval
        b = patch_affinity_auc(probe, 5, start=1000, things_only=True)["auc"]
        return f"# probe step {step}: teacher AUC {a:.4f}, things-only {b:.4f}"

    if args.eval_every > 0:
        log(probe_auc())
    while step < args.steps:
        progress = max(step / args.steps, (time.time() - t_train) / budget if budget > 0 else 0.0)
        if progress >= 1.0:
            break
        warm = 0.1
        lr = args.lr * (progress / warm if progress < warm else cosine((progress - warm) / (1 - warm), 1.0, 0.01))
        wd = cosine(progress, 0.04, 0.4)
        m = cosine(progress, args.ema, 1.0)
        opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = lr
        opt.param_groups[0]["weight_decay"] = wd

        views = [(v - mean) / std for v in data.batch(args.batch)]
        with torch.no_grad():
            t_out = teacher(views[:n_global])
        s_out = student(views)
        loss = dino_loss(s_out, t_out, center, n_views, n_global, args.student_temp, args.teacher_temp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        if progress < 0.03:
            for p in last_layer:
                p.grad = None
        opt.step()
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            center.mul_(0.9).add_(t_out.mean(0, keepdim=True), alpha=0.1)
            tp = F.softmax((t_out - center) / args.teacher_temp, -1).mean(0)
            ent = float(-(tp * (tp + 1e-12).log()).sum())
        loss_v = float(loss.detach())
        loss_ema = loss_v if loss_ema is None else 0.95 * loss_ema + 0.05 * loss_v
        step += 1
        if step % args.log_every == 0 or step == 1 or step == args.steps:
            log(f"{step} {progress:.3f} {loss_v:.4f} {loss_ema:.4f} {lr:.2e} {wd:.3f} {m:.4f} {ent:.2f} "
                f"{time.time() - t0:.1f}")
        if args.eval_every > 0 and step % args.eval_every == 0:
            te = time.time()
            log(probe_auc())
            t_train += time.time() - te  # probes do not count against the training budget
    train_s = time.time() - t_train
    log(f"# trained {step} steps in {train_s:.0f} s ({train_s / max(step, 1):.2f} s/step), "
        f"{step * args.batch:,} images x {n_views} crops; final loss EMA {loss_ema:.4f}")

    state = {k: v.half() for k, v in teacher.backbone.state_dict().items()}
    weights = os.path.join(args.out, "synth_dino.pt")
    torch.save(state, weights)
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(dict(model_name=MODEL_NAME, model_kwargs=MODEL_KWARGS, weights="synth_dino.pt",
                       steps=step, train_seconds=round(train_s, 1), seed=args.seed), f, indent=2)
        f.write("\n")
    log(f"# wrote {weights} ({os.path.getsize(weights) / 1e6:.2f} MB)")

    result = dict(steps=step, train_seconds=train_s, loss_ema=loss_ema, weights=weights)
    if args.eval > 0:
        result.update(evaluate(weights, args.eval, init_state, log))
    logf.close()
    return result


if __name__ == "__main__":
    main()
