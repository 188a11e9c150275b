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

from ovdense.synthetic.world import (CLASS_NAMES, NUM_STUFF, SyntheticWorld,  # noqa: E402
                                     caption_for)

FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_clip")
CONFIG_PATH = os.path.join(FIXTURE_DIR, "synth-vit-tiny.json")
MODEL_NAME = "synth-vit-tiny"
WORLD_SEED = 0
HELDOUT_START = 1_000_000  # scene indices >= this are never used for training
PROMPT = "a photo of a {}."


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
    model.eval()
    v = model.visual
    tf = class_text_features(model, tokenizer)
    scenes = [world.sample(start + i) for i in range(n)]
    x0 = v._embeds(to_tensor([s.image for s in scenes]))
    for blk in v.transformer.resblocks[:-1]:
        x0 = blk(x0)
    last = v.transformer.resblocks[-1]
    nh = last.attn.num_heads
    gt = np.stack([s.label_map for s in scenes])
    K = len(CLASS_NAMES)
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
        logits = (x @ tf.T).reshape(len(scenes), g, g, K).permute(0, 3, 1, 2)
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
    p.add_argument("--out", default=FIXTURE_DIR)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--crop-prob", type=float, default=0.5)
    p.add_argument("--synonym-prob", type=float, default=0.25)
    p.add_argument("--aux-weight", type=float, default=0.5,
                   help="weight of the contrastive loss on the auxiliary readout (0: plain CLIP)")
    p.add_argument("--aux", choices=("attn", "both", "value_mean"), default="both",
                   help="auxiliary readouts: CLS attention without residual/MLP (attn), plus CLS-attention "
                        "pooled patch outputs with identity mixing (both), or mean value path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=0, help="zero-shot + dense probe every N steps (0: end only)")
    p.add_argument("--fp32", action="store_true", help="save fp32 instead of fp16")
    p.add_argument("--config", default=CONFIG_PATH)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    open_clip.add_model_config(args.config)
    name = os.path.splitext(os.path.basename(args.config))[0]
    model = open_clip.create_model(name)
    tokenizer = open_clip.get_tokenizer(name)
    world = SyntheticWorld(image_size=model.visual.image_size[0], seed=WORLD_SEED)

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
    log(f"# classes: {CLASS_NAMES}")

    decay, no_decay = [], []
    for n_, p_ in model.named_parameters():
        (no_decay if (p_.ndim < 2 or "embedding" in n_ or "logit_scale" in n_) else decay).append(p_)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    t0 = time.time()
    ema = None
    log("step loss loss_ema lr logit_scale elapsed_s")
    for step in range(args.steps):
        model.train()
        images, captions, keys = make_batch(world, step, args.batch_size, args.crop_prob,
                                            args.synonym_prob, args.seed)
        x = to_tensor(images)
        t = tokenizer(captions)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        imf, *auxf = encode_image_train(model, x, args.aux)
        txf = F.normalize(model.encode_text(t), dim=-1)
        scale = model.logit_scale.exp()
        key_ids = {k: j for j, k in enumerate(dict.fromkeys(keys))}
        kid = torch.tensor([key_ids[k] for k in keys])
        target = (kid[:, None] == kid[None, :]).float()
        target = target / target.sum(1, keepdim=True)
        loss = contrastive(scale * imf @ txf.T, target)
        if args.aux_weight > 0:
            for f_ in auxf:
                loss = loss + args.aux_weight * contrastive(scale * f_ @ txf.T, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % args.log_every == 0 or step == args.steps - 1:
            log(f"{step} {loss.item():.4f} {ema:.4f} {lr_at(step):.2e} {model.logit_scale.exp().item():.1f} "
                f"{time.time() - t0:.1f}")
        if args.eval_every and step and step % args.eval_every == 0:
            zs = zero_shot(model, tokenizer, world)
            dp = dense_probe(model, tokenizer, world)
            log(f"# eval step {step}: zero-shot objects {zs[0]:.3f} backgrounds {zs[1]:.3f} dense "
                + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in dp.items()))
    train_s = time.time() - t0

    zs = zero_shot(model, tokenizer, world, n=300)
    dp = dense_probe(model, tokenizer, world, n=100)
    log(f"# training wall time {train_s:.0f} s, final loss (ema) {ema:.4f}")
    log(f"# zero-shot accuracy on held-out single-object images (300, {len(world.thing_ids)} thing classes, "
        f"prompt '{PROMPT}'): {zs[0]:.4f}")
    log(f"# zero-shot accuracy on held-out background-only images (75, all {len(CLASS_NAMES)} classes): {zs[1]:.4f}")
    log("# dense probe (mIoU / pixel acc, 100 held-out scenes, 8x8 patch logits upsampled): "
        + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in dp.items()))

    sd = model.state_dict()
    if not args.fp32:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    out_pt = os.path.join(args.out, "synth_clip.pt")
    torch.save(sd, out_pt)
    log(f"# saved {out_pt} ({os.path.getsize(out_pt) / 1e6:.2f} MB)")
    logf.close()


if __name__ == "__main__":
    main()
