#!/usr/bin/env python
"""Train a tiny segment-anything ``Sam`` on synthetic world v2 (CPU, minutes). SYNTHETIC.

The model is built from segment-anything's own modules (``segment_anything.modeling``:
``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``, ``Sam``) at a
small size, so ``SamPredictor`` and ``SamAutomaticMaskGenerator`` use it unchanged:

* image encoder: ``img_size=224`` (the 160 x 224 scene keeps its size; ``SamPredictor``
  pads it to 224 x 224), patch 8 (28 x 28 embedding), ``embed_dim=96``, depth 4, 4 heads,
  14 x 14 windowed attention in blocks 0-2 and global attention in block 3 (SAM's layout),
  absolute positions only, ``out_chans=64``;
* prompt encoder: ``embed_dim=64``, ``image_embedding_size=(28, 28)``, ``mask_in_chans=16``;
* mask decoder: ``transformer_dim=64``, ``TwoWayTransformer(depth=2, embedding_dim=64,
  mlp_dim=256, num_heads=4)``, 3 multimask outputs (112 x 112 low-res masks), IoU head
  depth 3 / hidden 64.

(``model.json`` holds these numbers; :func:`build_tiny_sam` builds the model from it;
:data:`MODEL_CONFIG`; ``--config`` overrides it, e.g. for the first stage's 160 px input.)

The input size bounds what any model can reach: :func:`resolution_ceiling` pushes every
ground-truth segment through the low-res grid and back, which gives point mIoU 0.904 at
160 px (thin bars 0.74, small objects 0.78) and 0.985 at 224 px.

Recipe (SA-1B's, simplified): scenes from the TRAINING range of ``WorldV2(seed=0)`` only,
generated on the fly.  Every step: a batch of images through the image encoder once, then
several prompts per image (stuff regions and things, small/thin things over-sampled) through
the prompt encoder + mask decoder in one batched call per prompt kind (the image embedding is
repeated per prompt with ``index_select``, no Python loop over prompts):

* one positive point at a random pixel of the segment: 3 multimask outputs, the mask loss is
  taken on the best of the 3 (lowest focal + dice);
* a box (the tight box, jittered by up to 10 % of its side, max 4 px) or 2-3 points
  (positive points of the segment plus sometimes one negative point outside): the single
  mask output (token 0), as SAM does for non-ambiguous prompts;

mask loss = 20 x focal (gamma 2; no alpha class balancing by default, ``--focal-alpha 0.25``
restores DETR's) + 1 x dice, by default (``--loss-at full``, SAM's) on the logits upsampled to
the original image by ``Sam.postprocess_masks`` against the binary GT; ``--loss-at low`` takes
the valid part of the low-res logits against area-downsampled soft GT instead (cheaper; it
teaches fractional logits at boundaries, hence low stability scores).  IoU head: MSE between
each predicted IoU and the true IoU of that predicted mask binarised at the original
resolution (exactly what the predictor returns), for every output mask (weight 1).  AdamW
(wd 0.05), warm-up then cosine decay over the run (time-based when ``--minutes`` limits it),
gradient clipping at 1.  ``--init FOLDER`` warm-starts from a saved model (its position
embedding resized when ``--config`` changes the input size, :func:`warm_start`).

The shipped fixture is two stages (``command`` in the fixture folder has both):

    python tools/train_tiny_sam.py --out STAGE1 --minutes 80 --threads 1 --loss-at low --lr 1e-3 \
        --config '{"img_size": 160, "encoder_window_size": 10}'
    python tools/train_tiny_sam.py --out tests/fixtures/synth_sam --init STAGE1 --minutes 90 \
        --threads 2 --lr 4e-4

(batch 4 images x 8 prompts).  ``--evaluate tests/fixtures/synth_sam`` prints the README's
held-out figures.

Writes ``synth_sam.pt`` (fp16 state dict of the ``Sam``), ``model.json`` and ``train_log.txt``.
Loading with segment-anything alone: see :func:`build_tiny_sam` (copied in the fixture README).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from segment_anything.modeling import (ImageEncoderViT, MaskDecoder,  # noqa: E402
                                       PromptEncoder, Sam, TwoWayTransformer)
from segment_anything.utils.transforms import ResizeLongestSide  # noqa: E402

from ovdense.synthetic import WorldV2  # noqa: E402

FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_sam")
WORLD_SEED = 0

MODEL_CONFIG = {
    "img_size": 224,
    "patch_size": 8,
    "encoder_embed_dim": 96,
    "encoder_depth": 4,
    "encoder_num_heads": 4,
    "encoder_window_size": 14,
    "encoder_global_attn_indexes": [3],
    "use_rel_pos": False,
    "prompt_embed_dim": 64,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_mlp_dim": 256,
    "decoder_num_heads": 4,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 64,
    "pixel_mean": [123.675, 116.28, 103.53],
    "pixel_std": [58.395, 57.12, 57.375],
}


def build_tiny_sam(model_json=None, weights=None) -> Sam:
    """Build the tiny ``Sam`` from segment-anything's modules; ``model_json`` is a path or a
    dict (default :data:`MODEL_CONFIG`), ``weights`` an optional state-dict path."""
    if model_json is None:
        cfg = dict(MODEL_CONFIG)
    elif isinstance(model_json, dict):
        cfg = dict(model_json)
    else:
        with open(model_json) as f:
            cfg = json.load(f)
    emb = cfg["img_size"] // cfg["patch_size"]
    d = cfg["prompt_embed_dim"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg["img_size"], patch_size=cfg["patch_size"],
            embed_dim=cfg["encoder_embed_dim"], depth=cfg["encoder_depth"],
            num_heads=cfg["encoder_num_heads"], mlp_ratio=4.0,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True,
            use_rel_pos=cfg["use_rel_pos"], window_size=cfg["encoder_window_size"],
            global_attn_indexes=tuple(cfg["encoder_global_attn_indexes"]), out_chans=d),
        prompt_encoder=PromptEncoder(
            embed_dim=d, image_embedding_size=(emb, emb),
            input_image_size=(cfg["img_size"], cfg["img_size"]),
            mask_in_chans=cfg["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=cfg["decoder_depth"], embedding_dim=d,
                                          mlp_dim=cfg["decoder_mlp_dim"],
                                          num_heads=cfg["decoder_num_heads"]),
            transformer_dim=d, iou_head_depth=cfg["iou_head_depth"],
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"]),
        pixel_mean=cfg["pixel_mean"], pixel_std=cfg["pixel_std"],
    )
    if weights is not None:
        sd = torch.load(weights, map_location="cpu")
        sam.load_state_dict({k: v.float() for k, v in sd.items()})
    sam.eval()
    return sam


def warm_start(sam: Sam, folder: str) -> None:
    """Load the fixture in ``folder`` into ``sam``; the image encoder's absolute position
    embedding is resized (bicubic) when ``sam`` has another input size.  Everything else in a
    ``Sam`` is size-free (the prompt encoder's Fourier features work on coordinates normalised
    by the input size), so a model trained at one size can be fine-tuned at another."""
    sd = {k: v.float() for k, v in torch.load(os.path.join(folder, "synth_sam.pt"), map_location="cpu").items()}
    key = "image_encoder.pos_embed"
    want = sam.image_encoder.pos_embed.shape
    if key in sd and sd[key].shape != want:
        grid = sd[key].permute(0, 3, 1, 2)  # (1, C, h, w)
        sd[key] = F.interpolate(grid, size=tuple(want[1:3]), mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1)
    sam.load_state_dict(sd)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------

def _sample_segments(scene, k, rng):
    """Pick up to ``k`` segments (stuff + things; small and thin things weighted up)."""
    segs = [s for s in scene.segments if s.area >= 4]
    w = np.array([2.0 if s.kind in ("small", "thin") else 1.0 for s in segs])
    n = min(k, len(segs))
    idx = rng.choice(len(segs), size=n, replace=False, p=w / w.sum())
    return [segs[i] for i in idx]


def _random_pixel(mask, rng, n=1):
    ys, xs = np.nonzero(mask)
    j = rng.integers(0, len(ys), n)
    return np.stack([xs[j], ys[j]], 1).astype(np.float32)  # (n, 2) x, y


def make_batch(world, indices, prompts_per_image, rng, transform):
    """Images (B,3,S',S'') resized like SamPredictor, and prompts in three groups."""
    images, gts = [], []
    groups = {"point": [], "box": [], "multi": []}
    n_multi = int(rng.integers(2, 4))
    for b, i in enumerate(indices):
        scene = world.sample(int(i))
        images.append(transform.apply_image(scene.image))
        H, W = scene.image.shape[:2]
        for seg in _sample_segments(scene, prompts_per_image, rng):
            gts.append(seg.mask)
            g = len(gts) - 1
            r = rng.random()
            if r < 0.6:
                groups["point"].append((b, g, _random_pixel(seg.mask, rng), np.ones(1)))
            elif r < 0.8:
                x, y, w, h = seg.bbox
                jx, jy = min(0.1 * w, 4.0), min(0.1 * h, 4.0)
                box = np.array([x, y, x + w, y + h], np.float32)
                box += rng.uniform(-1, 1, 4).astype(np.float32) * np.array([jx, jy, jx, jy], np.float32)
                box = np.clip(box, 0, [W, H, W, H]).astype(np.float32)
                groups["box"].append((b, g, box))
            else:
                pts = _random_pixel(seg.mask, rng, n_multi)
                labels = np.ones(n_multi)
                if rng.random() < 0.5:  # replace the last point by a negative one
                    pts[-1] = _random_pixel(~seg.mask, rng)[0]
                    labels[-1] = 0
                groups["multi"].append((b, g, pts, labels))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    gt = torch.from_numpy(np.stack(gts))
    return x, gt, groups, (H, W)


# --------------------------------------------------------------------------------------
# model pieces used for batched training
# --------------------------------------------------------------------------------------

def decode(sam, emb, image_idx, points=None, boxes=None):
    """Mask decoder on prompts of several images at once: ``MaskDecoder.predict_masks``
    with the image embedding picked per prompt instead of repeated per image."""
    md = sam.mask_decoder
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    out = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0)
    tokens = torch.cat([out.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse], 1)
    src = emb.index_select(0, image_idx) + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(src.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = md.transformer(src, pos, tokens)
    iou_tok, mask_toks = hs[:, 0], hs[:, 1:1 + md.num_mask_tokens]
    up = md.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([md.output_hypernetworks_mlps[i](mask_toks[:, i])
                         for i in range(md.num_mask_tokens)], 1)
    b, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    return masks, md.iou_prediction_head(iou_tok)


def focal_loss(logits, target, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss averaged over pixels; ``alpha < 0`` switches class balancing off."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - pt) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits, target):
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def lowres_targets(gt, input_size, low, img_size):
    """GT masks (P, H, W) -> soft targets (P, low, low) in the padded low-res frame: area
    resize to the model input size, pad to img_size, average-pool to the low-res grid."""
    t = F.interpolate(gt[:, None].float(), size=tuple(input_size), mode="area")
    t = F.pad(t, (0, img_size - input_size[1], 0, img_size - input_size[0]))
    return F.adaptive_avg_pool2d(t, low)[:, 0]


def mask_iou(pred, target):
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


def group_loss(sam, emb, group, kind, gt_all, input_size, orig_size, transform,
               focal_alpha=-1.0, focal_weight=20.0, loss_at="full"):
    """Loss, oracle IoU sum, IoU-head abs-error sum and count for one prompt group."""
    img_idx = torch.tensor([g[0] for g in group])
    gt = gt_all[torch.tensor([g[1] for g in group])]
    if kind == "box":
        boxes = torch.from_numpy(transform.apply_boxes(np.stack([g[2] for g in group]), orig_size))
        lowres, iou_pred = decode(sam, emb, img_idx, boxes=boxes)
        multimask = False
    else:
        pts = np.stack([transform.apply_coords(g[2], orig_size) for g in group])
        labels = np.stack([g[3] for g in group])
        lowres, iou_pred = decode(sam, emb, img_idx,
                                  points=(torch.from_numpy(pts).float(), torch.from_numpy(labels).int()))
        multimask = kind == "point"
    sl = slice(1, None) if multimask else slice(0, 1)
    lowres, iou_pred = lowres[:, sl], iou_pred[:, sl]
    if loss_at == "full":
        # SAM's way: the logits upsampled to the original size (``Sam.postprocess_masks``, as the
        # predictor does) against the binary GT; sharp logits, so stability scores mean something
        logits = sam.postprocess_masks(lowres, input_size, orig_size)
        target = gt[:, None].float().expand_as(logits)
    else:
        # cheaper: the valid part of the low-res frame against area-downsampled soft targets
        # (teaches fractional logits at boundaries, hence low stability scores)
        img_size = sam.image_encoder.img_size
        target = lowres_targets(gt, input_size, lowres.shape[-1], img_size)
        rows = (input_size[0] * lowres.shape[-1] + img_size - 1) // img_size
        cols = (input_size[1] * lowres.shape[-1] + img_size - 1) // img_size
        logits = lowres[..., :rows, :cols]
        target = target[:, None, :rows, :cols].expand_as(logits)
    per_mask = (focal_weight * focal_loss(logits, target, alpha=focal_alpha)
                + dice_loss(logits, target))  # (P, M)
    best = per_mask.argmin(1)
    mask_loss = per_mask.gather(1, best[:, None]).mean()
    with torch.no_grad():  # IoU-head target: the true IoU at the original resolution
        full = (logits if loss_at == "full" else sam.postprocess_masks(lowres, input_size, orig_size)) > 0
        true_iou = mask_iou(full, gt[:, None].expand_as(full))
    iou_loss = F.mse_loss(iou_pred, true_iou)
    oracle = true_iou.max(1).values.sum().item()
    mae = (iou_pred.detach() - true_iou).abs().sum().item()
    return mask_loss + iou_loss, oracle, mae, len(group), true_iou.numel()


# --------------------------------------------------------------------------------------
# evaluation helpers (also used by tests/test_tiny_sam.py)
# --------------------------------------------------------------------------------------

def eval_point_prompts(sam, n_scenes=8, seed=0, start=None):
    """Point-prompt mIoU of the top-scored of 3 masks (one random pixel of every GT segment
    of held-out scenes) and the IoU head's mean abs error on those chosen masks."""
    from segment_anything import SamPredictor
    world = WorldV2(seed=WORLD_SEED)
    rng = np.random.default_rng(seed)
    pred = SamPredictor(sam)
    start = world.eval_range[0] if start is None else start
    ious, errs, kinds = [], [], []
    for i in range(start, start + n_scenes):
        scene = world.sample(i)
        pred.set_image(scene.image)
        for seg in scene.segments:
            pt = _random_pixel(seg.mask, rng)
            masks, scores, _ = pred.predict(point_coords=pt, point_labels=np.ones(1),
                                            multimask_output=True)
            k = int(np.argmax(scores))
            iou = float((masks[k] & seg.mask).sum() / max((masks[k] | seg.mask).sum(), 1))
            ious.append(iou)
            errs.append(abs(float(scores[k]) - iou))
            kinds.append(seg.kind)
    ious, kinds = np.array(ious), np.array(kinds)
    per_kind = {k: float(ious[kinds == k].mean()) for k in sorted(set(kinds))}
    return {"miou": float(ious.mean()), "iou_mae": float(np.mean(errs)), "n": len(ious),
            "per_kind": per_kind}


def eval_automatic(sam, n_scenes=3, start=None, points_per_side=16, pred_iou_thresh=0.86,
                   stability_score_thresh=0.92, things_only=True):
    """``SamAutomaticMaskGenerator`` recall of GT instances at IoU 0.5/0.75, proposals per image."""
    from segment_anything import SamAutomaticMaskGenerator
    world = WorldV2(seed=WORLD_SEED)
    gen = SamAutomaticMaskGenerator(sam, points_per_side=points_per_side,
                                    pred_iou_thresh=pred_iou_thresh,
                                    stability_score_thresh=stability_score_thresh)
    start = world.eval_range[0] if start is None else start
    best, n_props = [], []
    for i in range(start, start + n_scenes):
        scene = world.sample(i)
        props = gen.generate(scene.image)
        n_props.append(len(props))
        P = np.stack([p["segmentation"] for p in props]) if props else np.zeros((0,) + scene.image.shape[:2], bool)
        gts = scene.instances if things_only else scene.segments
        for g in gts:
            if len(P) == 0:
                best.append(0.0)
                continue
            inter = (P & g.mask).reshape(len(P), -1).sum(1)
            union = (P | g.mask).reshape(len(P), -1).sum(1)
            best.append(float((inter / np.maximum(union, 1)).max()))
    best = np.array(best)
    return {"recall50": float((best >= 0.5).mean()), "recall75": float((best >= 0.75).mean()),
            "mean_best_iou": float(best.mean()), "proposals_per_image": float(np.mean(n_props)),
            "n_gt": int(len(best))}


def resolution_ceiling(config=None, n_scenes=20, start=None):
    """Point-prompt mIoU an ideal model of this input size could reach: every GT segment
    area-downsampled to the decoder's low-res grid (the best soft mask it can output), turned
    back into a full-resolution mask by ``Sam.postprocess_masks`` exactly as the predictor does."""
    config = dict(MODEL_CONFIG if config is None else config)
    sam = build_tiny_sam(config)
    transform = ResizeLongestSide(config["img_size"])
    low = 4 * config["img_size"] // config["patch_size"]
    world = WorldV2(seed=WORLD_SEED)
    start = world.eval_range[0] if start is None else start
    ious, kinds = [], []
    for i in range(start, start + n_scenes):
        scene = world.sample(i)
        input_size = transform.apply_image(scene.image).shape[:2]
        gt = torch.from_numpy(np.stack([g.mask for g in scene.segments]))
        soft = lowres_targets(gt, input_size, low, config["img_size"])
        logits = torch.logit(soft.clamp(1e-4, 1 - 1e-4))[:, None]
        full = sam.postprocess_masks(logits, input_size, scene.image.shape[:2])[:, 0] > 0
        ious += mask_iou(full, gt).tolist()
        kinds += [g.kind for g in scene.segments]
    ious, kinds = np.array(ious), np.array(kinds)
    return {"miou": float(ious.mean()), "n": len(ious),
            "per_kind": {k: float(ious[kinds == k].mean()) for k in sorted(set(kinds))}}


def evaluate_fixture(folder, n_point=40, n_auto=20, threads=2):
    """The figures of the fixture README, on held-out scenes (SYNTHETIC)."""
    torch.set_num_threads(threads)
    with open(os.path.join(folder, "model.json")) as f:
        config = json.load(f)
    sam = build_tiny_sam(config, os.path.join(folder, "synth_sam.pt"))
    out = {"resolution_ceiling": resolution_ceiling(config, n_point),
           "point": eval_point_prompts(sam, n_scenes=n_point)}
    for name, kw in [("auto_sam_defaults", dict(points_per_side=32, pred_iou_thresh=0.88, stability_score_thresh=0.95)),
                     ("auto_0.86_0.92", dict(points_per_side=32, pred_iou_thresh=0.86, stability_score_thresh=0.92)),
                     ("auto_16pts_0.86_0.92",
                      dict(points_per_side=16, pred_iou_thresh=0.86, stability_score_thresh=0.92))]:
        t = time.time()
        out[name] = dict(eval_automatic(sam, n_scenes=n_auto, **kw), seconds_per_image=(time.time() - t) / n_auto, **kw)
    return out


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURE_DIR)
    ap.add_argument("--minutes", type=float, default=80.0, help="wall-time limit of training")
    ap.add_argument("--steps", type=int, default=100000, help="step limit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4, help="images per step")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per image")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (a file OUT/threads holding a number changes it while training)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--focal-alpha", type=float, default=-1.0, help="< 0: no class balancing")
    ap.add_argument("--focal-weight", type=float, default=20.0, help="focal : dice = this : 1")
    ap.add_argument("--loss-at", choices=("full", "low"), default="full",
                    help="mask loss on logits upsampled to the image vs binary GT (SAM's), or on the "
                         "low-res logits vs area-downsampled soft GT (cheaper, soft logits)")
    ap.add_argument("--config", default=None, help="JSON of MODEL_CONFIG overrides")
    ap.add_argument("--save-every", type=float, default=10.0, help="also save the weights every this many minutes")
    ap.add_argument("--init", metavar="FOLDER", default=None,
                    help="warm start from the fixture in FOLDER (its position embedding resized to --config's size)")
    ap.add_argument("--evaluate", metavar="FOLDER", default=None,
                    help="do not train: print the held-out figures of the fixture in FOLDER as JSON")
    args = ap.parse_args(argv)
    if args.evaluate:
        print(json.dumps(evaluate_fixture(args.evaluate, threads=args.threads), indent=2))
        return None

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    config = dict(MODEL_CONFIG, **(json.loads(args.config) if args.config else {}))
    sam = build_tiny_sam(config)
    if args.init:
        warm_start(sam, args.init)
    sam.train()
    transform = ResizeLongestSide(config["img_size"])
    world = WorldV2(seed=WORLD_SEED)
    train_range = world.train_range
    opt = torch.optim.AdamW(sam.parameters(), lr=args.lr, weight_decay=0.05)
    n_params = sum(p.numel() for p in sam.parameters())
    budget = args.minutes * 60
    warm = 30
    log_path = os.path.join(args.out, "train_log.txt")
    log = open(log_path, "w")

    def emit(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    emit(f"tiny SAM (synthetic world v2, seed {WORLD_SEED}); {n_params / 1e6:.3f} M parameters; "
         f"config {json.dumps(config)}; args {vars(args)}")
    def save():
        torch.save({k: v.half() for k, v in sam.state_dict().items()}, os.path.join(args.out, "synth_sam.pt"))
        with open(os.path.join(args.out, "model.json"), "w") as f:
            json.dump(config, f, indent=2)

    threads_file = os.path.join(args.out, "threads")  # a number written here re-sizes torch's threads

    t0 = time.time()
    last_save = t0
    acc = {"loss": 0.0, "oracle": 0.0, "n": 0, "mae": 0.0, "m": 0, "k": 0}
    step = 0
    while step < args.steps:
        elapsed = time.time() - t0
        progress = max(step / args.steps, elapsed / budget if budget > 0 else 1.0)
        if progress >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / warm) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        idx = rng.integers(train_range.start, train_range.stop, args.batch)
        x, gt, groups, orig_size = make_batch(world, idx, args.prompts, rng, transform)
        input_size = tuple(x.shape[-2:])
        emb = sam.image_encoder(sam.preprocess(x))
        loss = 0.0
        total_prompts = sum(len(g) for g in groups.values())
        for kind, group in groups.items():
            if not group:
                continue
            kind_loss, oracle, mae, n, m = group_loss(sam, emb, group, kind, gt, input_size, orig_size, transform,
                                                      args.focal_alpha, args.focal_weight, args.loss_at)
            loss = loss + kind_loss * (n / total_prompts)
            if kind == "point":
                acc["oracle"] += oracle
                acc["n"] += n
                acc["mae"] += mae
                acc["m"] += m
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        acc["loss"] += float(loss.detach())
        acc["k"] += 1
        step += 1
        if step % args.log_every == 0 or step == 1 or step == args.steps:
            emit(f"step {step:5d}  t {time.time() - t0:7.1f}s  lr {lr:.2e}  loss {acc['loss'] / acc['k']:.4f}  "
                 f"point oracle best-of-3 mIoU {acc['oracle'] / max(acc['n'], 1):.3f}  "
                 f"IoU-head MAE {acc['mae'] / max(acc['m'], 1):.3f}")
            acc = {"loss": 0.0, "oracle": 0.0, "n": 0, "mae": 0.0, "m": 0, "k": 0}
        if step % args.log_every == 0 and os.path.isfile(threads_file):  # re-size on a shared machine
            with open(threads_file) as f:
                torch.set_num_threads(max(1, int(f.read().strip() or 1)))
        if time.time() - last_save > args.save_every * 60:
            save()
            last_save = time.time()
    emit(f"done: {step} steps in {time.time() - t0:.1f}s")
    save()
    sam.eval()
    log.close()
    return sam


if __name__ == "__main__":
    main()
