"""Make tests/fixtures/goldens/ovstitcher.npz by running the official OV-Stitcher code.

The official code is not part of this repository. It is atw617/OV-Stitcher at commit
91a94894e4e4b277de2c26faba43b46c2a41204d: ``ov_stitcher_segmentor.py``, ``open_clip/model.py`` and
``open_clip/transformer.py`` (the repository's later snapshots carry only a README). The rest of its
bundled ``open_clip`` package, ``myutils.py`` and ``prompts`` are CorrCLIP's (zdk258/CorrCLIP
``CorrCLIPv1``, on which OV-Stitcher builds), and DINO's ``vision_transformer.py`` is
facebookresearch/dino's, which OV-Stitcher loads through ``torch.hub`` (CASS's repository carries the
same file). Export them to a scratch folder, OV-Stitcher's two ``open_clip`` files over CorrCLIP's,
and point this script at it::

    mkdir -p /tmp/ovstitcher_official && cd /tmp/ovstitcher_official
    git -C <zdk258/CorrCLIP clone> archive HEAD:CorrCLIPv1 open_clip myutils.py prompts | tar x
    git -C <MICV-yonsei/CASS clone> archive HEAD dino | tar x
    C=91a94894e4e4b277de2c26faba43b46c2a41204d
    for f in ov_stitcher_segmentor.py open_clip/model.py open_clip/transformer.py; do
        git -C <atw617/OV-Stitcher clone with commit $C> show $C:$f > $f; done
    pip install --target /tmp/sklx scikit-learn
    python tools/make_ovstitcher_golden.py --official /tmp/ovstitcher_official --extra-path /tmp/sklx

What it runs: ``OVStitcherSegmentation.predict`` with pre-generated region maps read from ``.npz``
files (``mask_generator=None``, the published protocol): sliding windows (each zero-padded to a
multiple of 56), DINO's penultimate features of the windows stitched onto the image's patch grid and
its last block redone over the whole stitched image, the official region merging (DBSCAN), scope
reconstruction, the main and spatial branches (the spatial one: the 5 lower CLIP blocks' q, k, v
stitched over the whole image), the semantic branch (one mask class token per region and window),
the background merge, ``prob_thd`` and the map correction. The segmentor is built with ``__new__``
and given the attributes its methods read (no text encoder, no ``torch.hub``). It runs on

* the tiny random CLIP of the CorrCLIP golden: ``corrclip_tiny_clip.npz`` loaded into the visual
  tower of a CLIP built with the official bundled ``open_clip`` (the CorrCLIP tool's ``VISION``,
  ``TEXT``, ``EMBED_DIM``: 12 blocks so that the spatial branch averages the official 5 lower
  blocks; width 32, 2 heads, patch 16, 112 px, QuickGELU; embed dim 64);
* the tiny random DINO of the CASS goldens (``cass_tiny_dino.npz``: patch 8, width 128, 2 heads,
  depth 2; the official ``dino/vision_transformer.py``). Its last block's projection, norm2 and MLP
  and its final norm are zero in that file (CASS reads only the last block's q and k), which makes
  OV-Stitcher's DINO features zero and its scope attention NaN; they are filled from other tensors
  of the same file as ``DINO_FILL`` says (the source transposed if a matrix, reversed if a vector;
  ``dino_fill_sums`` holds each filled tensor's sum);
* the query embeddings ``Q`` of ``inputs.npz``, less their component along the mean image feature
  of a first run (random CLIP features share one direction), as ``query_features`` (saved as
  ``queries``), with class indices ``0, 0, 1, 2, 3, 4, 5`` (background with two names), logit
  scale 40;
* uint8 images made from ``inputs.npz`` as the other goldens do, and random blob region maps
  (``<case>_regions``; 0 = unsegmented).

Cases (``CASES``: input, columns kept, crop, stride, ``prob_thd``, regions seed):

* ``slide``: ``img`` (168 x 224), crop 112, stride 56: 2 x 3 overlapping windows, the lower row at
  y = 56, i.e. 3.5 CLIP patches, placed on CLIP row 3 by the official floor division;
* ``wide``: ``img_square`` (``img`` continued by its mirror image below to 224 x 224), crop 224,
  stride 112, ``prob_thd`` 0.2: one 224 px window, larger than the tiny CLIP's 112 px (position
  interpolation in CLIP and DINO). Crop 224 / stride 112 on ``img`` itself, as first planned, fails
  in the official code: its one window is 168 x 224, 168 is not a multiple of the CLIP patch, and
  ``VisionTransformer.stitch_features_from_batch`` reshapes the 10 token rows as ceil(168 / 16) = 11
  (RuntimeError). Window sides must be multiples of 112 here (56 for the padding, 16 for CLIP), and
  windows must be ``slide_crop`` square, as the semantic branch resizes the region masks to
  ``slide_crop // 8`` squared (a 112 x 224 window fails there: 28 x 28 tokens reshaped as 14 x 28);
* ``square``: ``crop`` (112 x 112), crop 112, stride 112: one window;
* ``few_regions``: ``img``, crop 112, stride 56, one region and the unsegmented rest (no merging);
* ``odd``: ``img`` cut to its first 150 columns, crop 112, stride 56: the last window column starts
  at x = 38, neither a multiple of 16 nor of 8, so the official floor division places it on patch
  columns 2 (CLIP) and 4 (DINO) of grids of 150 // 16 = 9 and 150 // 8 = 18 columns; its regions
  (seed 33) are the only ones in which DBSCAN merges two regions (distance 0.174 < eps 0.2; in the
  other cases the closest pair is at 0.209 or more);
* ``padded``: ``crop`` cut to its first 96 columns, crop 112, stride 112: one 112 x 96 window,
  zero-padded by 8 columns on each side: DINO's stitching drops exactly the padded token columns,
  CLIP's keeps token columns 1 to 6 (ceil(8 / 16) = 1 dropped, 96 // 16 = 6 kept, the last one half
  padding), i.e. CLIP features placed 8 px left of the pixels they saw.

Conditioning: the scope reconstruction lets an unsegmented patch attend wherever ``similarity >
similarity.mean()``, a hard threshold over all pairs of DINO cells, and with hundreds of thousands of
pairs some lie within ~1e-6 of it. The closest decided pairs are 5.9e-7 (``slide``), 2.1e-7
(``wide``), 2.0e-6 (``square``), 3.4e-8 (``few_regions``), 1.0e-6 (``odd``) and 3.4e-6 (``padded``)
from the mean; a re-implementation whose DINO similarities differ by more flips those entries and
moves the logits around the two cells by ~1e-3 (in the official code, noise of 1e-6 on the
similarities moves ``few_regions`` by 6e-4, noise of 1e-7 nothing beyond 2e-7). ``slide_dino_feats``
(the same image and windows as ``few_regions``) gives the official similarities. DBSCAN's distances
are 0.0097 or more from its ``eps``.

Everything runs in fp32 on the CPU: ``.half()`` of the inputs is made a no-op at run time (the
official files are not edited). mmseg, mmengine and transformers are replaced by stand-ins in
``sys.modules`` (none of their behaviour is used). Saved (``savez_compressed``): per case
``<case>_regions`` (int16), ``<case>_logits`` (the output of ``forward_slide``: cosines at the input
resolution before the logit scale, [7, H, W]) and ``<case>_probs`` (``seg_logit`` after the
background merge, [6, H, W]), both on a ``::3`` pixel subsample, and ``<case>_labels`` (after the
map correction, every pixel, int16); ``queries`` (float32 [7, 64]), ``query_idx`` and
``dino_fill_sums``; and, for ``slide`` only, intermediates: ``slide_dino_feats`` (the stitched,
normalised DINO features given to ``clip.encode_image``, [1, N, 128]) and ``slide_feat_shape``
(the stitched DINO grid, N its product: 21 x 28).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "fixtures" / "goldens"
# the CorrCLIP golden's tiny CLIP (its visual weights are corrclip_tiny_clip.npz), tiny DINO spec, queries,
# subsample, stand-ins and helpers: shared with tools/make_corrclip_golden.py
from make_corrclip_golden import (CLIP_MEAN, CLIP_STD, DINO_SPEC, EMBED_DIM, QUERY_IDX, SUB, TEXT,  # noqa: E402
                                  VISION, Sample, blob_regions, stub_modules, to_uint8)

#: name -> (input, columns kept (None: all), slide_crop, slide_stride, prob_thd, regions seed)
CASES = {
    "slide": ("img", None, 112, 56, 0.0, 1),
    "wide": ("img_square", None, 224, 112, 0.2, 2),
    "square": ("crop", None, 112, 112, 0.0, 3),
    "few_regions": ("img", None, 112, 56, 0.0, None),
    "odd": ("img", 150, 112, 56, 0.0, 33),  # seed 33: DBSCAN merges two of its regions
    "padded": ("crop", 96, 112, 112, 0.0, 6),
}
DEBUG_CASE = "slide"  # the case whose intermediates are saved
#: Tensors of cass_tiny_dino.npz that are zero (CASS reads only the last block's q and k) but that OV-Stitcher uses
#: (the last block's projection, norm2 and MLP, the final norm): each is filled with the tensor named here,
#: transposed if it is a matrix, reversed if it is a vector.
DINO_FILL = {
    "blocks.1.attn.proj.weight": "blocks.0.attn.proj.weight",
    "blocks.1.attn.proj.bias": "blocks.0.attn.proj.bias",
    "blocks.1.norm2.weight": "blocks.1.norm1.weight",
    "blocks.1.norm2.bias": "blocks.1.norm1.bias",
    "blocks.1.mlp.fc1.weight": "blocks.0.mlp.fc2.weight",
    "blocks.1.mlp.fc1.bias": "blocks.0.mlp.fc1.bias",
    "blocks.1.mlp.fc2.weight": "blocks.0.mlp.fc1.weight",
    "blocks.1.mlp.fc2.bias": "blocks.0.mlp.fc2.bias",
    "norm.weight": "blocks.0.norm1.weight",
    "norm.bias": "blocks.0.norm1.bias",
}


def case_input(inputs, src: str, cols=None) -> np.ndarray:
    """A CLIP-normalised input of ``inputs.npz``; ``img_square``: ``img`` (168 x 224) continued by its
    mirror image below (rows 167, 166, ..., 112) to 224 x 224; ``cols``: the columns kept."""
    arr = np.concatenate([inputs["img"], inputs["img"][:, :, ::-1][:, :, :56]], axis=2) if src == "img_square" \
        else inputs[src]
    return arr if cols is None else arr[..., :cols]


def tiny_dino_state() -> dict:
    """cass_tiny_dino.npz with its zero tensors filled as ``DINO_FILL`` says."""
    state = {k: torch.from_numpy(v).float() for k, v in np.load(GOLDENS / "cass_tiny_dino.npz").items()}
    for dst, src in DINO_FILL.items():
        assert not state[dst].any(), f"{dst} is not zero in cass_tiny_dino.npz"
        state[dst] = state[src].T.contiguous() if state[src].ndim == 2 else state[src].flip(0)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official files")
    parser.add_argument("--extra-path", default=None, help="a folder with scikit-learn (DBSCAN)")
    parser.add_argument("--out", default=str(GOLDENS / "ovstitcher.npz"), help="where to write the golden")
    args = parser.parse_args()
    sys.path[:0] = [args.official, str(Path(args.official) / "dino")]
    if args.extra_path:
        sys.path.append(args.extra_path)
    stub_modules()
    import ov_stitcher_segmentor as official  # noqa: E402
    from vision_transformer import VisionTransformer  # noqa: E402
    from open_clip.model import CLIP  # noqa: E402

    torch.manual_seed(0)
    clip = CLIP(EMBED_DIM, VISION, TEXT, quick_gelu=True).eval()
    visual = np.load(GOLDENS / "corrclip_tiny_clip.npz")  # fp16 values, shared with the CorrCLIP golden
    clip.visual.load_state_dict({k: torch.from_numpy(visual[k].astype(np.float32)) for k in visual.files})

    dino = VisionTransformer(**DINO_SPEC, qkv_bias=True).eval()
    dino.load_state_dict(tiny_dino_state())

    seg = official.OVStitcherSegmentation.__new__(official.OVStitcherSegmentation)
    nn.Module.__init__(seg)
    seg.clip, seg.dino = clip, dino
    patch = dino.patch_embed.patch_size
    seg.dino_patch_size = patch[0] if isinstance(patch, tuple) else patch
    seg.dummy = nn.Linear(1, 1)
    seg.unnorm = official.UnNormalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    seg.norm = official.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    seg.template_path = None
    seg.query_features = torch.from_numpy(np.load(GOLDENS / "inputs.npz")["Q"]).float()
    seg.query_idx = torch.tensor(QUERY_IDX)
    seg.num_queries, seg.num_classes = len(QUERY_IDX), max(QUERY_IDX) + 1
    seg.logit_scale, seg.device, seg.mask_generator_type = 40, torch.device("cpu"), None

    kept = {}
    encode_image = clip.encode_image

    def encode_and_keep(*a, **k):  # the intermediates around the CLIP visual tower
        out = encode_image(*a, **k)
        kept.update(dino_feats=k["dino_feats"].clone(), image_features=out.clone(), feat_shape=tuple(k["feat_shape"]),
                    coords=k["coords"], paddings=k["paddings"])
        return out

    clip.encode_image = encode_and_keep

    inputs = np.load(GOLDENS / "inputs.npz")
    half = torch.Tensor.half
    torch.Tensor.half = lambda self, *a, **k: self  # fp32 throughout
    out = {"query_idx": np.array(QUERY_IDX),
           # the sums of the filled DINO tensors (DINO_FILL's order), to check a rebuilt tiny DINO
           "dino_fill_sums": np.array([float(dino.state_dict()[k].double().sum()) for k in DINO_FILL])}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seg.instance_mask_path = tmp
            for case, (src, cols, crop, stride, thd, rseed) in [("probe", CASES["slide"])] + list(CASES.items()):
                arr = case_input(inputs, src, cols)
                u8 = to_uint8(arr)
                x = (torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD)
                regions = blob_regions(u8.shape[1:], rseed)
                np.savez(Path(tmp) / f"{case}.npz", instance_mask=regions)
                seg.slide_crop, seg.slide_stride, seg.prob_thd = crop, stride, thd
                kept.clear()
                slide = seg.forward_slide
                seg.forward_slide = lambda *a, **k: kept.setdefault("logits", slide(*a, **k))
                sample = Sample(Path(tmp) / f"{case}.png", tuple(u8.shape[1:]))
                try:
                    with torch.inference_mode():
                        seg.predict(x[None], [sample])
                finally:
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
                if case == DEBUG_CASE:
                    out[f"{case}_dino_feats"] = kept["dino_feats"].numpy().astype(np.float32)
                    out[f"{case}_feat_shape"] = np.array(kept["feat_shape"], dtype=np.int64)
                windows = [tuple(c.tolist()) for c in kept["coords"]]
                print(case, tuple(u8.shape[1:]), "windows (y1, x1, y2, x2)", windows, "paddings",
                      sorted(set(kept["paddings"])), "feat_shape", kept["feat_shape"], "labels",
                      np.bincount(out[f"{case}_labels"].ravel(), minlength=6))
    finally:
        torch.Tensor.half = half
    np.savez_compressed(args.out, **out)
    print("wrote", args.out, f"{Path(args.out).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
