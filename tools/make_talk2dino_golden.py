"""Make tests/fixtures/goldens/talk2dino.npz by running the official Talk2DINO code.

The official code is not part of this repository. Export it, and the DINOv2 code its torch.hub
call loads, to scratch folders and point this script at them::

    mkdir -p /tmp/t2d /tmp/dinov2
    git -C <lorebianchi98/Talk2DINO clone> archive HEAD src configs | tar x -C /tmp/t2d
    git -C <facebookresearch/dinov2 clone> archive HEAD dinov2 | tar x -C /tmp/dinov2
    python tools/make_talk2dino_golden.py --official /tmp/t2d --dinov2 /tmp/dinov2

What it runs (lorebianchi98/Talk2DINO@4918c2d, facebookresearch/dinov2@b8931f7): the official
``DINOText.__init__`` (``src/open_vocabulary_segmentation/models/dinotext/dinotext.py``) with
``model_name="dinov2_vitb14_reg"``, ``resize_dim=112``, ``proj_model="ProjectionLayer"`` and a tiny
projection config (``configs/tiny_mlp.yaml``: tanh, one hidden layer, CLIP dim 64, DINO dim 128)
whose checkpoint ``weights/tiny_mlp.pth`` holds :func:`tiny_projection_state`; ``torch.hub.load``
returns a tiny DINOv2 with 4 registers built by the official ``DinoVisionTransformer`` (patch 14,
width 128, 2 heads of 64, depth 2, MLP ratio 2, LayerScale, ``img_size=84``: a 6 x 6 position grid
resized to 8 x 8 at 112 px as torch.hub's models are; ``interpolate_offset=0.1``, no antialiasing)
holding :func:`tiny_dinov2_state`. ``clip.load`` returns a stand-in: the text side starts from fixed
embeddings, the ``Q`` of ``inputs.npz`` (7 x 64), projected by the official
``ProjectionLayer.project_clip_txt`` and normalised as ``build_text_embedding`` does. Then
``generate_masks`` (no PAMR) on uint8 images made from ``inputs.npz`` (``crop`` 112 x 112, ``img``
168 x 224, as tests/test_cass.py makes them), given in BGR as mmseg loads them (``*_bgr`` cases: in
RGB, as the official demo gives them), with and without ``with_bg_clean``; and mmseg 0.30's
``slide_inference`` written out (crop 112, stride 56; the official ``encode_decode`` with a constant
background 0.55 in front when the class list has one), on the 168 x 224 image.

Changes to the official run: ``T.Resize`` gets ``antialias=False`` (what torchvision 0.16, the
official pin, does on tensors; newer torchvision antialiases by default); the stand-ins for
``clip``, ``transformers``, ``einops``, mmcv's registry (``models.builder``), ``utils``
and ``us`` (whose ``normalize``, ``F.normalize(t, dim, eps=1e-6)``, is copied) are put in
``sys.modules`` (none of their behaviour is used). Everything runs in fp32 on the CPU. Scores are
stored on a ``1::4`` pixel subsample. The weights are not stored: both this script and the test
rebuild them from fixed seeds (``*_checksum`` in the file guards against a changed generator).
"""
from __future__ import annotations

import argparse
import os
import sys
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
DIM, DEPTH, HEADS, MLP, PATCH, GRID, REGS = 128, 2, 2, 2, 14, 6, 4
CLIP_DIM, RESIZE = 64, 112
BG_THRESH = 0.55
#: name -> (image, mode, with_bg_clean, channel order fed to generate_masks)
CASES = {
    "crop": ("crop", "whole", False, "bgr"),
    "img": ("img", "whole", False, "bgr"),
    "crop_clean": ("crop", "whole", True, "bgr"),
    "img_clean": ("img", "whole", True, "bgr"),
    "img_rgb": ("img", "whole", False, "rgb"),
    "slide": ("img", "slide", False, "bgr"),
    "slide_clean_bg": ("img", "slide_bg", True, "bgr"),
}


def tiny_dinov2_state() -> dict:
    """The tiny DINOv2's weights in the official layout (``cls_token``, ``pos_embed`` with the CLS
    position, ``register_tokens``, ``mask_token``, ``blocks.<i>.ls1.gamma``...), from a fixed seed."""
    g = torch.Generator().manual_seed(20251)

    def rnd(*shape, scale=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * scale + mean

    hidden = DIM * MLP
    state = {"cls_token": rnd(1, 1, DIM, scale=0.5), "pos_embed": rnd(1, GRID * GRID + 1, DIM, scale=0.5),
             "register_tokens": rnd(1, REGS, DIM, scale=0.5), "mask_token": torch.zeros(1, DIM),
             "patch_embed.proj.weight": rnd(DIM, 3, PATCH, PATCH, scale=0.05),
             "patch_embed.proj.bias": rnd(DIM, scale=0.1)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": rnd(DIM, scale=0.2, mean=1.0), p + "norm1.bias": rnd(DIM, scale=0.2),
            p + "attn.qkv.weight": rnd(3 * DIM, DIM, scale=DIM ** -0.5), p + "attn.qkv.bias": rnd(3 * DIM, scale=0.1),
            p + "attn.proj.weight": rnd(DIM, DIM, scale=DIM ** -0.5), p + "attn.proj.bias": rnd(DIM, scale=0.05),
            p + "ls1.gamma": rnd(DIM, scale=0.3, mean=0.5),
            p + "norm2.weight": rnd(DIM, scale=0.2, mean=1.0), p + "norm2.bias": rnd(DIM, scale=0.2),
            p + "mlp.fc1.weight": rnd(hidden, DIM, scale=DIM ** -0.5), p + "mlp.fc1.bias": rnd(hidden, scale=0.05),
            p + "mlp.fc2.weight": rnd(DIM, hidden, scale=hidden ** -0.5), p + "mlp.fc2.bias": rnd(DIM, scale=0.05),
            p + "ls2.gamma": rnd(DIM, scale=0.3, mean=0.5),
        })
    state.update({"norm.weight": rnd(DIM, scale=0.2, mean=1.0), "norm.bias": rnd(DIM, scale=0.2)})
    return state


def tiny_projection_state() -> dict:
    """The tiny projection's weights in the official ``ProjectionLayer`` layout, from a fixed seed."""
    g = torch.Generator().manual_seed(20252)
    return {"linear_layer.weight": torch.randn(DIM, CLIP_DIM, generator=g) * 0.5,
            "linear_layer.bias": torch.randn(DIM, generator=g) * 0.1,
            "hidden_layers.0.weight": torch.randn(DIM, DIM, generator=g) * DIM ** -0.5,
            "hidden_layers.0.bias": torch.randn(DIM, generator=g) * 0.1}


def checksum(state: dict) -> float:
    return float(sum(v.double().abs().sum() for v in state.values()))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``inputs.npz`` CLIP-normalised ``[1, 3, H, W]`` -> uint8 ``[3, H, W]`` (RGB)."""
    return np.clip(np.rint(x[0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def stub_modules() -> None:
    """Stand-ins for what the official modules import but this run does not use."""
    clip = types.ModuleType("clip")

    class _Text(nn.Module):
        pass

    clip.load = lambda *a, **k: (_Text(), None)
    clip.tokenize = lambda *a, **k: None
    transformers = types.ModuleType("transformers")
    transformers.BertModel = transformers.AutoTokenizer = None
    einops = types.ModuleType("einops")
    einops.rearrange = einops.repeat = None
    builder = types.ModuleType("models.builder")
    builder.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    builder.build_model = None
    utils = types.ModuleType("utils")
    utils.get_logger = lambda *a, **k: None
    us = types.ModuleType("us")  # its misc.py needs mmcv / mmseg; the one function used, as written there
    us.normalize = lambda t, dim, eps=1e-6: nn.functional.normalize(t, dim=dim, eps=eps)
    for name, mod in {"clip": clip, "transformers": transformers, "einops": einops, "models.builder": builder,
                      "utils": utils, "us": us}.items():
        sys.modules[name] = mod


def slide(model, img, text, with_bg, crop=112, stride=56):
    """mmseg 0.30 ``EncoderDecoder.slide_inference`` (before the final resize) around the official
    ``DINOTextSegInference.encode_decode``: ``generate_masks`` per crop, a constant ``bg_thresh`` map
    in front when ``with_bg``."""
    _, _, h_img, w_img = img.shape
    n = len(text) + int(with_bg)
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, n, h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            masks, _ = model.generate_masks(img[:, :, y1:y2, x1:x2], None, text, None)
            if with_bg:
                masks = torch.cat([torch.full_like(masks[:, :1], BG_THRESH), masks], dim=1)
            preds += nn.functional.pad(masks, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported Talk2DINO src/ and configs/")
    parser.add_argument("--dinov2", required=True, help="folder with the exported dinov2/ package")
    parser.add_argument("--out", default=str(GOLDENS / "talk2dino.npz"))
    args = parser.parse_args()
    official = Path(args.official).resolve()
    sys.path[:0] = [str(official), str(official / "src" / "open_vocabulary_segmentation"),
                    str(Path(args.dinov2).resolve())]
    stub_modules()
    torch.set_grad_enabled(False)
    os.chdir(official)  # the official code opens configs/<proj_class>.yaml and weights/<proj_name>.pth from here
    Path("configs/tiny_mlp.yaml").write_text(f"model:\n  act: tanh\n  hidden_layer: True\n  dino_embed_dim: {DIM}\n"
                                             f"  clip_embed_dim: {CLIP_DIM}\n")
    Path("weights").mkdir(exist_ok=True)
    proj_state = tiny_projection_state()
    torch.save(proj_state, "weights/tiny_mlp.pth")

    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block  # noqa: E402
    from dinov2.models.vision_transformer import DinoVisionTransformer  # noqa: E402

    dino_state = tiny_dinov2_state()
    dino = DinoVisionTransformer(img_size=GRID * PATCH, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                                 mlp_ratio=MLP, init_values=1.0, ffn_layer="mlp", block_chunks=0,
                                 num_register_tokens=REGS, interpolate_antialias=False, interpolate_offset=0.1,
                                 block_fn=partial(Block, attn_class=MemEffAttention)).eval()
    dino.load_state_dict(dino_state, strict=True)
    torch.hub.load = lambda *a, **k: dino

    from models.dinotext.dinotext import DINOText  # noqa: E402  (the official module)

    def build(with_bg_clean):
        model = DINOText(model_name="dinov2_vitb14_reg", resize_dim=RESIZE, clip_model_name="ViT-B/16",
                         proj_class="tiny_mlp", proj_name="tiny_mlp", proj_model="ProjectionLayer",
                         with_bg_clean=with_bg_clean).eval()
        model.image_transforms.transforms[0].antialias = False  # torchvision 0.16 on tensors
        return model

    models = {False: build(False), True: build(True)}
    inputs = np.load(GOLDENS / "inputs.npz")
    q = torch.from_numpy(inputs["Q"]).float()
    out = {"dinov2_checksum": np.float64(checksum(dino_state)), "projection_checksum": np.float64(checksum(proj_state))}
    for name, (src, mode, clean, order) in CASES.items():
        model = models[clean]
        text = model.proj.project_clip_txt(q)
        text = text / text.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # us.normalize(text_embs, dim=-1)
        rgb = torch.from_numpy(to_uint8(inputs[src])).float()[None]
        img = rgb[:, [2, 1, 0]] if order == "bgr" else rgb
        if mode == "whole":
            masks, _ = model.generate_masks(img, None, text, None)
        else:  # the 5 non-background queries (class 0 = sky / wall = queries 0, 1) behind a constant
            keep = text[2:] if mode == "slide_bg" else text
            masks = slide(model, img, keep, with_bg=mode == "slide_bg")
        out[name] = masks[0, :, 1::4, 1::4].numpy().astype(np.float32)
        print(name, tuple(masks.shape), float(masks.min()), float(masks.max()))
    np.savez_compressed(args.out, **out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
