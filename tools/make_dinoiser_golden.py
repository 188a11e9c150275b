"""Make tests/fixtures/goldens/dinoiser.npz by running the official CLIP-DINOiser code.

The official code is not part of this repository. Export it, and open_clip 2.24 (the official pin:
its hooks assume open_clip's sequence-first blocks), to scratch folders::

    mkdir -p /tmp/dinoiser_official
    git -C <wysoczanska/clip_dinoiser clone> archive HEAD models | tar x -C /tmp/dinoiser_official
    pip install --target /tmp/oc224 open_clip_torch==2.24.0 --no-deps
    python tools/make_dinoiser_golden.py --official /tmp/dinoiser_official --open-clip /tmp/oc224

What it runs (wysoczanska/clip_dinoiser @a954aae): ``CLIP_DINOiser`` built by its own ``__init__``
(hooks on ``resblocks[-2]`` and ``resblocks[-3].ln_2``, the two convolutions) around the official
``MaskClip`` / ``MaskClipHead`` (``extract_feat``, ``extract_v``, ``cls_seg``), with ``forward``
(weighted pooling, ``gamma`` 0.2, FOUND with ``delta`` 0.99 when ``apply_found``), under mmseg-0.x's
``slide_inference`` / ``whole_inference`` with ``DinoCLIP_Infrencer.encode_decode`` (re-typed below:
mmseg's code, a bilinear resize of each window's output to the window, the sum over windows divided
by the coverage, a resize to the image and a softmax), on

* the tiny CLIP of the CorrCLIP goldens (``corrclip_tiny_clip.npz``: 12 blocks, width 32, 2 heads,
  patch 16, 112 px) built with open_clip 2.24 as a GELU model (the LAION ViT-B-16 activation);
  ``MaskClip``'s ``create_model_from_pretrained`` is bypassed (the model is given, ``img_size``
  112, ``patch_size`` 16);
* random convolutions ``obj_proj`` (32 -> 32, 3 x 3, replicate padding) and ``bkg_decoder``
  (32 -> 1; weights x 10 so the background map spans (0, 1)), fp16-valued, saved in the golden
  under the official checkpoint keys;
* the de-meaned queries of the CorrCLIP golden as ``class_embeddings`` (7 classes, class 0 the
  background; no text encoder);
* uint8 images made from ``inputs.npz`` as the other goldens do, divided by 255 (``ImageToTensorV2``).

mmcv, mmseg and omegaconf are stand-ins in ``sys.modules`` (``mmseg.ops.resize`` is
``F.interpolate``). Outputs per case: ``<case>_avg`` (the averaged window probabilities, before
mmseg's softmax, which the test applies itself) on a ``::3`` pixel subsample, and ``<case>_labels``
(the argmax of mmseg's output, every pixel).
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "fixtures" / "goldens"
CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
VISION = dict(image_size=112, layers=12, width=32, patch_size=16, head_width=16)
TEXT = dict(context_length=16, vocab_size=64, width=32, heads=2, layers=1)
EMBED_DIM = 64
IN_DIM = 32
SUB = 3
#: name -> (input, mode, crop, stride, apply_found)
CASES = {
    "slide": ("img", "slide", 112, 56, True),
    "small": ("img", "slide", 192, 96, True),   # image below the crop in height: 168 x 192 windows, padded
    "whole": ("img", "whole", 0, 0, False),     # 168 x 224 padded to 176 x 224
    "square": ("crop", "whole", 0, 0, True),
    "nofound": ("img", "slide", 112, 56, False),
}


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x[0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def resize(input, size=None, scale_factor=None, mode="nearest", align_corners=None, warning=True):
    return F.interpolate(input, size, scale_factor, mode, align_corners)


def stub_modules(model):
    class Registry:
        def __init__(self, *a, **k):
            pass

        def register_module(self, *a, **k):
            return lambda cls: cls

    mmcv, mmcv_utils = types.ModuleType("mmcv"), types.ModuleType("mmcv.utils")
    mmcv_utils.Registry = Registry
    mmseg, ops = types.ModuleType("mmseg"), types.ModuleType("mmseg.ops")
    ops.resize = resize
    omegaconf = types.ModuleType("omegaconf")
    omegaconf.OmegaConf = types.SimpleNamespace(load=lambda path: {"model": None},
                                                to_container=lambda c, resolve=True: c)
    sys.modules.update({"mmcv": mmcv, "mmcv.utils": mmcv_utils, "mmseg": mmseg, "mmseg.ops": ops,
                        "omegaconf": omegaconf})


def encode_decode(model, img):
    """``DinoCLIP_Infrencer.encode_decode``."""
    return resize(model(img), size=img.shape[-2:], mode="bilinear", align_corners=False)


def slide_inference(model, img, crop, stride, num_classes):
    """mmseg 0.x ``EncoderDecoder.slide_inference`` (rescale to the same size: a no-op)."""
    h_img, w_img = img.shape[-2:]
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, num_classes, h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out = encode_decode(model, img[:, :, y1:y2, x1:x2])
            preds += F.pad(out, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official models/")
    parser.add_argument("--open-clip", required=True, help="folder with open_clip_torch 2.24 (pip --target)")
    args = parser.parse_args()
    sys.path[:0] = [args.open_clip, args.official]
    import open_clip  # noqa: E402
    from open_clip.model import CLIP  # noqa: E402

    assert Path(open_clip.__file__).resolve().is_relative_to(Path(args.open_clip).resolve()), open_clip.__file__
    visual = {k: torch.from_numpy(v.astype(np.float32)) for k, v in np.load(GOLDENS / "corrclip_tiny_clip.npz").items()}
    torch.manual_seed(0)
    clip = CLIP(EMBED_DIM, VISION, TEXT, quick_gelu=False).eval()
    clip.visual.load_state_dict(visual)
    assert not getattr(clip.visual.transformer, "batch_first", False)

    stub_modules(None)
    from models.maskclip import maskclip as official_maskclip  # noqa: E402

    queries = torch.from_numpy(np.load(GOLDENS / "corrclip.npz")["queries"]).float()
    mc = official_maskclip.MaskClip.__new__(official_maskclip.MaskClip)
    torch.nn.Module.__init__(mc)
    head = official_maskclip.MaskClipHead.__new__(official_maskclip.MaskClipHead)
    torch.nn.Module.__init__(head)
    head.register_buffer("class_embeddings", queries / queries.norm(dim=-1, keepdim=True))
    head.proj = torch.nn.Conv2d(VISION["width"], EMBED_DIM, 1, bias=False)
    head.proj.weight = torch.nn.Parameter(clip.visual.proj.t()[:, :, None, None])
    mc.decode_head = head
    mc.patch_size, mc.img_size = VISION["patch_size"], (VISION["image_size"],) * 2
    mc.clip_T = official_maskclip.OPENAI_NORMALIZE
    mc.hook_features = {}
    mc.backbone = clip

    def hook_fn_forward(module, input, output):  # MaskClip.__init__'s hook
        mc.hook_features["v"] = output

    clip.visual.transformer.resblocks[-2].register_forward_hook(hook_fn_forward)
    mc._positional_embd = torch.nn.Parameter(clip.visual.positional_embedding.data.clone())

    import models.builder  # noqa: E402

    models.builder.build_model = lambda config, class_names: mc
    from models.clip_dinoiser import clip_dinoiser as official  # noqa: E402

    official.build_model = lambda config, class_names: mc
    torch.manual_seed(1)
    model = official.CLIP_DINOiser("maskclip", class_names=None, in_dim=IN_DIM).eval()
    model.obj_proj = official.nn.Conv2d(VISION["width"], IN_DIM, (3, 3), padding=1, padding_mode="replicate")
    model.bkg_decoder = official.nn.Conv2d(VISION["width"], 1, (1, 1))
    with torch.no_grad():
        model.bkg_decoder.weight.mul_(10.0)
        for p in list(model.obj_proj.parameters()) + list(model.bkg_decoder.parameters()):
            p.copy_(p.half().float())
    out = {f"ckpt/{k}": v.detach().numpy() for k, v in model.state_dict().items()
           if k.split(".")[0] in ("obj_proj", "bkg_decoder")}
    out["queries"] = queries.numpy()

    inputs = np.load(GOLDENS / "inputs.npz")
    for case, (src, mode, crop, stride, found) in CASES.items():
        model.apply_found = found
        u8 = to_uint8(inputs[src])
        img = torch.from_numpy(u8).float()[None] / 255.0
        with torch.no_grad():
            if mode == "slide":
                avg = slide_inference(model, img, crop, stride, queries.shape[0])
            else:
                avg = encode_decode(model, img)
        probs = F.softmax(avg, dim=1)
        out[f"{case}_avg"] = avg[0].numpy()[:, ::SUB, ::SUB]
        out[f"{case}_labels"] = probs[0].argmax(0).numpy().astype(np.int8)
        print(case, tuple(img.shape[-2:]), np.bincount(out[f"{case}_labels"].ravel().astype(np.int64), minlength=7))
    np.savez_compressed(GOLDENS / "dinoiser.npz", **out)
    print("wrote", GOLDENS / "dinoiser.npz", (GOLDENS / "dinoiser.npz").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
