"""Make tests/fixtures/goldens/corrclip.npz (and corrclip_tiny_clip.npz) by running the official CorrCLIP code.

The official code is not part of this repository. Export it to a scratch folder and point this
script at it (DINO's ``vision_transformer.py`` is facebookresearch/dino's, which CorrCLIP loads
through ``torch.hub``; CASS's repository carries the same file)::

    mkdir -p /tmp/corrclip_official && cd /tmp/corrclip_official
    git -C <zdk258/CorrCLIP clone> archive HEAD:CorrCLIPv1 corrclip_segmentor.py open_clip myutils.py prompts | tar x
    git -C <MICV-yonsei/CASS clone> archive HEAD dino | tar x
    pip install --target /tmp/sklx scikit-learn
    python tools/make_corrclip_golden.py --official /tmp/corrclip_official --extra-path /tmp/sklx

What it runs (zdk258/CorrCLIP ``CorrCLIPv1``): ``CorrCLIPSegmentation.predict`` (sliding windows,
the official region merging, scope reconstruction, spatial and semantic branches, background
merge, ``prob_thd`` and the map correction) with pre-generated region maps read from ``.npz``
files (``mask_generator=None``, the published protocol), on

* a tiny random CLIP built with the official bundled ``open_clip`` (12 blocks so that the
  spatial branch averages the official 5 lower blocks; width 32, 2 heads, patch 16, 112 px,
  QuickGELU), whose visual weights are rounded to fp16 values and saved in
  ``corrclip_tiny_clip.npz``;
* the tiny random DINO of the CASS goldens (``cass_tiny_dino.npz``: patch 8, width 128,
  2 heads, depth 2; the official ``dino/vision_transformer.py``);
* the query embeddings ``Q`` of ``inputs.npz``, less their component along the mean image feature
  of a first run (random CLIP features share one direction), as ``query_features`` (no text
  encoder; saved as ``queries``), with
  class indices ``0, 0, 1, 2, 3, 4, 5`` (background with two names; CorrCLIP's name files have
  synonyms only on their first line, which is what its background merge supports);
* uint8 images made from ``inputs.npz`` as the other goldens do, and random blob region maps
  (``<case>_regions``; 0 = unsegmented).

Everything runs in fp32 on the CPU: ``create_model``'s ``precision='fp16'``, ``.half()`` of DINO
and the inputs are made no-ops at run time (the official files are not edited). mmseg, mmengine
and transformers are replaced by stand-ins in ``sys.modules`` (none of their behaviour is used).
Outputs per case: ``<case>_logits`` (the stitched cosines before the logit scale) and
``<case>_probs`` (after the background merge), both on a ``::3`` pixel subsample, and
``<case>_labels`` (after the map correction, every pixel).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "fixtures" / "goldens"
CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
VISION = dict(image_size=112, layers=12, width=32, patch_size=16, head_width=16)
TEXT = dict(context_length=16, vocab_size=64, width=32, heads=2, layers=1)
EMBED_DIM = 64  # the dimension of inputs.npz's Q
DINO_SPEC = dict(patch_size=8, embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, img_size=[112])
QUERY_IDX = [0, 0, 1, 2, 3, 4, 5]
SUB = 3  # logits and probabilities are stored on a ::3 pixel subsample (rows and columns)
#: name -> (input, slide_crop, slide_stride, prob_thd, regions seed)
CASES = {
    "slide": ("img", 112, 56, 0.0, 1),
    "wide": ("img", 224, 112, 0.2, 2),
    "square": ("crop", 112, 112, 0.0, 3),
    "few_regions": ("img", 112, 56, 0.0, None),
}


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x[0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def blob_regions(shape, seed):
    """A region map of random rectangles (ids painted in order, later ones on top), 0 elsewhere;
    ``seed`` None: one region and the unsegmented rest (no merging happens)."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.int32)
    if seed is None:
        out[h // 4: 3 * h // 4, w // 3: w] = 7
        return out
    rng = np.random.default_rng(seed)
    for rid in range(1, 12):
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        out[y:y + rng.integers(16, h // 2), x:x + rng.integers(16, w // 2)] = rid
    return out


def stub_modules():
    seg_mod = types.ModuleType("mmseg.models.segmentors")
    seg_mod.BaseSegmentor = type("BaseSegmentor", (nn.Module,),
                                 {"__init__": lambda self, **k: nn.Module.__init__(self)})
    pre_mod = types.ModuleType("mmseg.models.data_preprocessor")
    pre_mod.SegDataPreProcessor = lambda **k: None
    reg_mod = types.ModuleType("mmseg.registry")
    reg_mod.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda c: c))
    struct_mod = types.ModuleType("mmengine.structures")
    struct_mod.PixelData = lambda **k: k
    tr = types.ModuleType("transformers")
    tr.AutoImageProcessor = tr.Mask2FormerForUniversalSegmentation = None
    for name, mod in {"mmseg": types.ModuleType("mmseg"), "mmseg.models": types.ModuleType("mmseg.models"),
                      "mmseg.models.segmentors": seg_mod, "mmseg.models.data_preprocessor": pre_mod,
                      "mmseg.registry": reg_mod, "mmengine": types.ModuleType("mmengine"),
                      "mmengine.structures": struct_mod, "transformers": tr, "openpyxl": types.ModuleType("openpyxl")
                      }.items():
        sys.modules[name] = mod


class Sample:
    def __init__(self, path, shape):
        self.img_path = str(path)
        self.metainfo = dict(ori_shape=shape)
        self.data = {}

    def set_data(self, data):
        self.data.update(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official files")
    parser.add_argument("--extra-path", default=None, help="a folder with scikit-learn (DBSCAN)")
    args = parser.parse_args()
    sys.path[:0] = [args.official, str(Path(args.official) / "dino")]
    if args.extra_path:
        sys.path.append(args.extra_path)
    stub_modules()
    import corrclip_segmentor as official  # noqa: E402
    from vision_transformer import VisionTransformer  # noqa: E402
    from open_clip.model import CLIP  # noqa: E402

    torch.manual_seed(0)
    clip = CLIP(EMBED_DIM, VISION, TEXT, quick_gelu=True).eval()
    with torch.no_grad():  # fp16-valued weights, a little larger than open_clip's init
        for p in clip.visual.parameters():
            p.copy_(p.half().float())
    visual = {k: v.detach().numpy().astype(np.float16) for k, v in clip.visual.state_dict().items()}
    clip.visual.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in visual.items()})

    dino = VisionTransformer(**DINO_SPEC, qkv_bias=True).eval()
    state = {k: torch.from_numpy(v).float() for k, v in np.load(GOLDENS / "cass_tiny_dino.npz").items()}
    dino.load_state_dict(state)
    dino.half = lambda: dino  # keep DINO in fp32

    seg = official.CorrCLIPSegmentation.__new__(official.CorrCLIPSegmentation)
    nn.Module.__init__(seg)
    seg.clip, seg.dino = clip, dino
    seg.dino_qkv_output = None
    seg.dino.blocks[-1].attn.qkv.register_forward_hook(seg._hook_fn_forward_qkv)
    seg.unnorm = official.UnNormalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    seg.norm = official.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    seg.query_features = torch.from_numpy(np.load(GOLDENS / "inputs.npz")["Q"]).float()
    seg.query_idx = torch.tensor(QUERY_IDX)
    seg.num_queries, seg.num_classes = len(QUERY_IDX), max(QUERY_IDX) + 1
    seg.logit_scale, seg.device, seg.mask_generator_type = 40, torch.device("cpu"), None
    seg.dtype = torch.float32

    inputs = np.load(GOLDENS / "inputs.npz")
    half = torch.Tensor.half
    torch.Tensor.half = lambda self, *a, **k: self  # fp32 throughout
    out = {"query_idx": np.array(QUERY_IDX)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seg.instance_mask_path = tmp
            for case, (src, crop, stride, thd, rseed) in [("probe", CASES["slide"])] + list(CASES.items()):
                u8 = to_uint8(inputs[src])
                x = (torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD)
                regions = blob_regions(u8.shape[1:], rseed)
                np.savez(Path(tmp) / f"{case}.npz", instance_mask=regions)
                seg.slide_crop, seg.slide_stride, seg.prob_thd = crop, stride, thd
                kept = {}
                slide = seg.forward_slide
                seg.forward_slide = lambda *a, **k: kept.setdefault("logits", slide(*a, **k))
                sample = Sample(Path(tmp) / f"{case}.png", tuple(u8.shape[1:]))
                with torch.inference_mode():
                    seg.predict(x[None], [sample])
                del seg.forward_slide
                if case == "probe":  # random CLIP features share one direction: take it out of the queries
                    q = seg.query_features
                    mean = torch.einsum("qhw,qd->dhw", kept["logits"][0], q).mean((1, 2))
                    mean = mean / mean.norm()
                    q = q - (q @ mean)[:, None] * mean[None]
                    seg.query_features = q / q.norm(dim=1, keepdim=True)
                    out["queries"] = seg.query_features.numpy().astype(np.float32)
                    continue
                out[f"{case}_regions"] = regions.astype(np.int16)
                out[f"{case}_logits"] = kept["logits"][0].numpy().astype(np.float32)[:, ::SUB, ::SUB]
                out[f"{case}_probs"] = sample.data["seg_logit"]["data"].numpy().astype(np.float32)[:, ::SUB, ::SUB]
                out[f"{case}_labels"] = sample.data["pred_sem_seg"]["data"][0].numpy().astype(np.int16)
                print(case, out[f"{case}_logits"].shape, np.bincount(out[f"{case}_labels"].ravel()))
    finally:
        torch.Tensor.half = half
    np.savez_compressed(GOLDENS / "corrclip.npz", **out)
    np.savez_compressed(GOLDENS / "corrclip_tiny_clip.npz", **visual)
    print("wrote", GOLDENS / "corrclip.npz", GOLDENS / "corrclip_tiny_clip.npz")


if __name__ == "__main__":
    main()
