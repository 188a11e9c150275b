"""Make tests/fixtures/goldens/trident.npz by running the official Trident code.

The official code is not part of this repository. Export it to a scratch folder, with the
official DINO ViT (``vision_transformer.py`` of facebookresearch/dino, here the copy in CASS's
repository) as ``dino_vits.py`` with its ``utils.py``, and point this script at it::

    mkdir -p /tmp/trident_official
    git -C <YuHengsss/Trident clone> archive HEAD trident.py open_clip segment_anything seg_utils \\
        prompts pamr.py myutils.py | tar x -C /tmp/trident_official
    git -C <MICV-yonsei/CASS clone> show HEAD:dino/vision_transformer.py > /tmp/trident_official/dino_vits.py
    git -C <MICV-yonsei/CASS clone> show HEAD:dino/utils.py > /tmp/trident_official/utils.py
    python tools/make_trident_golden.py --official /tmp/trident_official

What it runs (YuHengsss/Trident, commit a93b346): ``Trident.get_trident_seg`` in fp32 on the CPU
with the tiny OpenAI-format CLIP of the other goldens (``tiny_openai_clip.pt``, built by the
official ``open_clip.model.build_model_from_openai_state_dict``: its modified VisionTransformer
with ``custom_attn`` / ``guidance_attn``), a tiny random DINO ViT built by the official DINO code
(patch 16, width 32, 2 heads, depth 2, ``img_size=112``) and a tiny random SAM built by the
official (modified) ``segment_anything`` (1024 px, patch 16 as the official code assumes; width 32,
2 heads, depth 2: a windowed block then a global one, relative positions on). The segmentor is
assembled without mmseg (stand-ins in ``sys.modules``; none of their behaviour is used), without
``create_model`` / ``torch.hub`` / a SAM checkpoint, with the query embeddings ``Q`` of
``inputs.npz`` as ``query_features``, window crop 112 and stride 64.

Inputs: uint8 RGB images (``image_<case>``), written as PNG for the official ``cv2.imread``; the
CLIP input is mmseg's ``Resize(scale=(2048, short), keep_ratio=True)`` (``cv2.resize`` bilinear at
mmcv's rounded size) normalised with mmseg's CLIP mean/std in float32, sized so that the
official ``preprocess_image`` keeps it as it is (multiples of 16).

The only change made to the official run: ``Tensor.half`` is a no-op while it runs (the official
code casts the windows to fp16 for its fp16 models; the tiny models are fp32).

Stored: the images, the tiny DINO and SAM weights (fp16 values; SAM's ``pos_embed`` is
:func:`sam_pos_embed`, not stored), SAM's sizes (``sam_config``, the tiny SAM fixture's JSON keys),
per case the official logits at the original size on a ``1::3`` pixel subsample, and the sizes the
official ``preprocess_image`` gives a few canvases (``fit_in``, ``fit_out``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "fixtures" / "goldens"
CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
DINO_SPEC = dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4, img_size=112)
SAM_CONFIG = dict(img_size=1024, patch_size=16, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                  encoder_window_size=8, encoder_global_attn_indexes=[1], use_rel_pos=True, prompt_embed_dim=16,
                  mask_in_chans=4, decoder_depth=1, decoder_mlp_dim=32, decoder_num_heads=2, iou_head_depth=1,
                  iou_head_hidden_dim=16)
CROP, STRIDE = 112, 64
#: case -> (image, short side of the mmseg resize, dataset_type, cos_fac, refine_neg_cos)
CASES = {
    "square": ("square", 160, "PascalVOCDataset", 1.2, True),
    "wide": ("wide", 144, "PascalContext60Dataset", 0.8, False),
    "city": ("wide", 144, "CityscapesDataset", 3.0, False),
}
FIT_SIZES = [(448, 597), (597, 448), (336, 500), (320, 480), (100, 700), (688, 1376), (450, 450)]


def make_images() -> dict:
    """Two uint8 RGB images of blocks of colour with noise (DINO and SAM see structure)."""
    rng = np.random.default_rng(7)
    out = {}
    for name, (h, w) in {"square": (120, 120), "wide": (96, 149)}.items():
        blocks = rng.integers(0, 256, (4, 5, 3)).astype(np.float64)
        ys = np.minimum(np.arange(h) * 4 // h, 3)
        xs = np.minimum(np.arange(w) * 5 // w, 4)
        img = blocks[ys][:, xs] + rng.normal(0, 18, (h, w, 3))
        out[name] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def sam_pos_embed(size: int, dim: int) -> np.ndarray:
    """The tiny SAM's absolute position embedding ``[1, size, size, dim]`` (a formula: not stored)."""
    i = np.arange(size, dtype=np.float64)[:, None, None]
    j = np.arange(size, dtype=np.float64)[None, :, None]
    c = np.arange(dim, dtype=np.float64)[None, None, :]
    return (0.5 * np.sin(0.3 * i * (c % 5 + 1) / 8 + 0.2 * j * (c % 7 + 1) / 8 + c))[None].astype(np.float32)


def rescale_size(h: int, w: int, short: int):
    """mmcv ``imrescale`` size for ``scale=(2048, short)``."""
    factor = min(2048 / max(h, w), short / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def stub_modules() -> None:
    """Stand-ins for mmseg / mmengine (behaviour unused), skimage and openpyxl (imported at module level
    by ``seg_utils`` and ``myutils``, used only by the SAM refinement and the result spreadsheet)."""
    mods = {name: types.ModuleType(name) for name in (
        "mmseg", "mmseg.models", "mmseg.models.segmentors", "mmseg.models.data_preprocessor", "mmseg.registry",
        "mmengine", "mmengine.structures", "skimage", "skimage.measure", "openpyxl")}
    mods["mmseg.models.segmentors"].BaseSegmentor = nn.Module
    mods["mmseg.models.data_preprocessor"].SegDataPreProcessor = lambda **kw: None
    mods["mmseg.registry"].MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    mods["mmengine.structures"].PixelData = dict
    mods["skimage"].measure = mods["skimage.measure"]
    for name, mod in mods.items():
        sys.modules.setdefault(name, mod)


def tiny_dino(vits):
    torch.manual_seed(1234)
    s = DINO_SPEC
    model = vits.VisionTransformer(patch_size=s["patch_size"], embed_dim=s["embed_dim"], depth=s["depth"],
                                   num_heads=s["num_heads"], mlp_ratio=s["mlp_ratio"], qkv_bias=True,
                                   norm_layer=partial(nn.LayerNorm, eps=1e-6), img_size=[s["img_size"]])
    state = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key in ("cls_token", "pos_embed"):
            value.normal_(0, 0.5)
        if key.endswith("bias") and "norm" not in key:
            value.normal_(0, 0.05)
        if "norm" in key:
            value.normal_(1.0 if key.endswith("weight") else 0.0, 0.2)
        state[key] = value.half().float()
    model.load_state_dict(state)
    return model.eval(), state


def tiny_sam(modeling):
    torch.manual_seed(4321)
    c = SAM_CONFIG
    emb, dim = c["img_size"] // c["patch_size"], c["prompt_embed_dim"]
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["encoder_embed_dim"],
            depth=c["encoder_depth"], num_heads=c["encoder_num_heads"], mlp_ratio=4.0,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=c["use_rel_pos"],
            rel_pos_zero_init=True, window_size=c["encoder_window_size"],
            global_attn_indexes=tuple(c["encoder_global_attn_indexes"]), out_chans=dim),
        prompt_encoder=modeling.PromptEncoder(embed_dim=dim, image_embedding_size=(emb, emb),
                                              input_image_size=(c["img_size"], c["img_size"]),
                                              mask_in_chans=c["mask_in_chans"]),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=dim,
                                                   mlp_dim=c["decoder_mlp_dim"], num_heads=c["decoder_num_heads"]),
            transformer_dim=dim, iou_head_depth=c["iou_head_depth"], iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    state = {}
    for key, value in sam.image_encoder.state_dict().items():
        value = value.clone()
        if key == "pos_embed":
            value = torch.from_numpy(sam_pos_embed(emb, c["encoder_embed_dim"]))
        elif "rel_pos" in key:
            value.normal_(0, 0.5)
        elif "norm" in key and value.ndim == 1:
            value.normal_(1.0 if key.endswith("weight") else 0.0, 0.2)
        elif key.endswith("bias"):
            value.normal_(0, 0.05)
        elif key.endswith("qkv.weight"):
            value.mul_(3.0)  # sharper attention than the default init gives
        state[key] = value if key == "pos_embed" else value.half().float()
    sam.image_encoder.load_state_dict(state)
    return sam.eval(), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official Trident files")
    parser.add_argument("--out", default=str(GOLDENS / "trident.npz"))
    args = parser.parse_args()
    official = Path(args.official).resolve()
    sys.path.insert(0, str(official))
    stub_modules()
    import cv2

    import dino_vits  # noqa: E402  (the official DINO ViT)
    import trident  # noqa: E402  (the official module)
    from open_clip.model import build_model_from_openai_state_dict  # noqa: E402  (the official open_clip)
    from seg_utils.utils import preprocess_image  # noqa: E402
    from segment_anything import SamPredictor, modeling  # noqa: E402  (the official segment_anything)
    from torchvision import transforms

    from myutils import UnNormalize  # noqa: E402

    assert "trident_official" in str(Path(modeling.__file__)) or str(official) in str(Path(modeling.__file__))
    torch.set_grad_enabled(False)
    inputs = np.load(GOLDENS / "inputs.npz")
    clip_state = torch.load(GOLDENS / "tiny_openai_clip.pt", map_location="cpu", weights_only=False)
    clip = build_model_from_openai_state_dict(dict(clip_state), cast_dtype=torch.float32).float().eval()
    dino, dino_state = tiny_dino(dino_vits)
    sam, sam_state = tiny_sam(modeling)
    images = make_images()

    def make_segmentor(dataset_type, cos_fac, refine_neg_cos):
        seg = trident.Trident.__new__(trident.Trident)
        nn.Module.__init__(seg)
        seg.clip = clip
        seg.clip_stride = 16
        seg.vfm_model, seg.vfm = "dino", dino
        seg.unnorm = UnNormalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
        seg.norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        seg.query_features = torch.from_numpy(inputs["Q"]).float()
        seg.dataset_type = dataset_type
        seg.slide_stride, seg.slide_crop = STRIDE, CROP
        seg.beta, seg.gamma = 1.2, 3.0
        seg.cos_fac, seg.refine_neg_cos = cos_fac, refine_neg_cos
        seg.sam, seg.sam_heads = sam, SAM_CONFIG["encoder_num_heads"]
        seg.sam_predictor = SamPredictor(sam)
        seg.sam_refine = False
        return seg

    out = {f"image_{k}": v for k, v in images.items()}
    out["sam_config"] = np.array(json.dumps(SAM_CONFIG))
    out.update({f"dino.{k}": v.half().numpy() for k, v in dino_state.items()})
    out.update({f"sam.{k}": v.half().numpy() for k, v in sam_state.items() if k != "pos_embed"})
    half = torch.Tensor.half
    with tempfile.TemporaryDirectory() as tmp:
        for case, (image, short, dataset_type, cos_fac, refine_neg_cos) in CASES.items():
            rgb = images[image]
            path = str(Path(tmp) / f"{image}.png")
            cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            h, w = rescale_size(*rgb.shape[:2], short)
            canvas = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
            x = ((torch.from_numpy(canvas).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD))[None]
            assert h % 16 == 0 and w % 16 == 0, (h, w)
            seg = make_segmentor(dataset_type, cos_fac, refine_neg_cos)
            torch.Tensor.half = lambda self, *a, **k: self
            try:
                logits = seg.get_trident_seg(x, path, [dict(ori_shape=rgb.shape[:2])])
            finally:
                torch.Tensor.half = half
            out[f"{case}_logits"] = logits[0, :, 1::3, 1::3].numpy().astype(np.float32)
            out[f"{case}_canvas"] = np.array([h, w])
            print(case, tuple(rgb.shape), "canvas", (h, w), "logits", tuple(logits.shape),
                  "range", float(logits.min()), float(logits.max()))
    fit = [tuple(preprocess_image(torch.zeros(1, 1, h, w), 16, 336).shape[-2:]) for h, w in FIT_SIZES]
    out["fit_in"], out["fit_out"] = np.array(FIT_SIZES), np.array(fit)
    np.savez_compressed(args.out, **out)
    print("wrote", args.out, Path(args.out).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
