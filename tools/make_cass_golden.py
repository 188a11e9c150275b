"""Make tests/fixtures/goldens/cass.npz (and cass_tiny_dino.npz) by running the official CASS code.

The official code is not part of this repository. Export it to a scratch folder and point this
script at it::

    mkdir -p /tmp/cass_official && cd /tmp/cass_official
    git -C <MICV-yonsei/CASS clone> archive HEAD cass_segmentor.py clip dino prompts pamr.py | tar x
    python tools/make_cass_golden.py --official /tmp/cass_official [--extra-path /dir/with/sklearn]

What it runs (MICV-yonsei/CASS, commit 228ecdd): ``CASS_segmentor.forward_feature`` (whole image)
and ``forward_slide`` (crop 112, stride 56) on the tiny OpenAI-format CLIP of the other goldens
(``tiny_openai_clip.pt``, fp32, CPU) with a tiny random DINO ViT built by the official
``dino/vision_transformer.py`` (patch 8, width 128 = CLIP's, 2 heads, depth 2, MLP ratio 2,
``img_size=112``), whose weights are rounded to fp16 values and saved in ``cass_tiny_dino.npz``
(the parameters the last block's keys do not depend on are zero). The segmentor is assembled
without mmseg (a stand-in ``BaseSegmentor``/``MODELS``/``SegDataPreProcessor`` is put in
``sys.modules``; none of their behaviour is used) and without ``clip.load`` (the tiny CLIP is
built with the official ``clip.model.build_model`` and cast to fp32), with the query embeddings
``Q`` of ``inputs.npz`` as ``query_features`` (no text encoder).

Inputs: uint8 images made from ``inputs.npz`` (``u8 = clip(rint(x * std + mean), 0, 255)`` with
mmseg's CLIP mean/std; ``crop`` -> 112x112, ``img`` -> 168x224), normalised again as mmseg does
(float32 ``(u8 - mean) / std``): the official input. The test rebuilds both the same way.

Changes made to the official run, each to make it the computation ovdense's defaults (or
switches) define, all at run time (the official files are not edited):

* ``dino_attn.half()`` in ``VisionTransformer.forward`` is made a no-op (``Tensor.half`` is wrapped
  while the forward runs): the DINO keys stay fp32, as ovdense computes them on the CPU;
* the global torch RNG is seeded with ``SEED`` before every window (``rng="window"``), or once
  before the sliding run (``rng="stream"``);
* ``torch.svd_lowrank`` is the installed torch's (``lowrank_form="left"``) or, for the
  ``*_right`` cases, torch 1.10's algorithm (written out below from torch 1.10's
  ``_lowrank.py``: the official requirements pin torch 1.10.1).

The Hungarian matches are recorded (``<case>_cost``, ``<case>_perm``: the official float32 cost
matrix and ``col_ind`` per window, in call order; the official module's ``linear_sum_assignment``
is wrapped to record them): with two heads every assignment can cost the same in exact arithmetic
(see ``ovdense/heads/cass.py``), so the official pick depends on float rounding and the test
replays it. Logits are stored on a ``1::4`` pixel subsample (rows and columns) to keep the file small.
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "fixtures" / "goldens"
SEED = 0
CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
DINO_SPEC = dict(patch_size=8, embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, img_size=112)
#: Parameters the last block's keys do not depend on (zero in the saved tiny DINO).
UNUSED = ("blocks.1.attn.proj", "blocks.1.norm2", "blocks.1.mlp", "norm.")
#: name -> (input, window mode, official `dataset` name, global_semantics_weight, mean_vector_weight,
#: h_threshold, rng, lowrank form)
CASES = {
    "whole_square": ("crop", "whole", "voc21", 0.1, 0.3, 0.9, "window", "left"),
    "whole_wide": ("img", "whole", "voc20", 0.4, 0.2, 1.0, "window", "left"),
    "slide": ("img", "slide", "context60", 0.25, 0.4, 1.05, "window", "left"),
    "slide_stream": ("img", "slide", "context60", 0.25, 0.4, 1.05, "stream", "left"),
    "slide_city": ("img", "slide", "city_scapes", 0.1, 0.3, 0.5, "window", "left"),
    "whole_square_right": ("crop", "whole", "voc21", 0.1, 0.3, 0.9, "window", "right"),
    "slide_right": ("img", "slide", "context60", 0.25, 0.4, 1.05, "window", "right"),
}


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``inputs.npz`` CLIP-normalised ``[1, 3, H, W]`` -> uint8 ``[3, H, W]``."""
    return np.clip(np.rint(x[0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def normalise(u8: np.ndarray) -> torch.Tensor:
    """mmseg's ``SegDataPreProcessor`` in float32: ``[1, 3, H, W]``."""
    return ((torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD))[None]


def svd_lowrank_torch110(A, q=6, niter=2, M=None):
    """torch 1.10's ``torch.svd_lowrank`` for a dense matrix and ``M=None`` (its ``n > q`` branch:
    basis of ``A^T``, SVD of ``A Q``)."""
    m, n = A.shape[-2:]
    assert M is None and (m < n or n > q)
    A_t = A.transpose(-2, -1)
    R = torch.randn(A_t.shape[-1], q, dtype=A.dtype, device=A.device)
    Q = torch.linalg.qr(A_t @ R).Q
    for _ in range(niter):
        Q = torch.linalg.qr(A @ Q).Q
        Q = torch.linalg.qr(A_t @ Q).Q
    U, S, Vh = torch.linalg.svd(A @ Q, full_matrices=False)
    return U, S, Q @ Vh.mT


def stub_mmseg() -> None:
    """Stand-ins for the three mmseg names ``cass_segmentor`` imports (their behaviour is unused) and for
    ``pkg_resources`` (gone from recent setuptools; ``clip.py`` only reads its ``packaging``)."""
    mmseg = types.ModuleType("mmseg")
    models = types.ModuleType("mmseg.models")
    pre = types.ModuleType("mmseg.models.data_preprocessor")
    segs = types.ModuleType("mmseg.models.segmentors")
    registry = types.ModuleType("mmseg.registry")
    pre.SegDataPreProcessor = lambda **kw: None
    segs.BaseSegmentor = nn.Module
    registry.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    pkg = types.ModuleType("pkg_resources")  # clip/clip.py reads pkg_resources.packaging.version
    import packaging.version

    pkg.packaging = packaging
    sys.modules.setdefault("pkg_resources", pkg)
    for name, mod in {"mmseg": mmseg, "mmseg.models": models, "mmseg.models.data_preprocessor": pre,
                      "mmseg.models.segmentors": segs, "mmseg.registry": registry}.items():
        sys.modules[name] = mod


def tiny_dino(vits) -> dict:
    """The tiny official DINO ViT's weights, rounded to fp16 values, unused ones zeroed."""
    from functools import partial

    torch.manual_seed(1234)
    spec = dict(DINO_SPEC)
    model = vits.VisionTransformer(patch_size=spec["patch_size"], embed_dim=spec["embed_dim"], depth=spec["depth"],
                                   num_heads=spec["num_heads"], mlp_ratio=spec["mlp_ratio"], qkv_bias=True,
                                   norm_layer=partial(nn.LayerNorm, eps=1e-6), img_size=[spec["img_size"]])
    state = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key in ("cls_token", "pos_embed"):
            value.normal_(0, 0.5)  # the official init leaves these near zero: make them matter
        if key.endswith("bias") and "norm" not in key:
            value.normal_(0, 0.05)
        if "norm1" in key:
            value.normal_(1.0 if key.endswith("weight") else 0.0, 0.2)
        if key.startswith(UNUSED):
            value.zero_()
        state[key] = value.half()
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official CASS files")
    parser.add_argument("--extra-path", action="append", default=[], help="appended to sys.path (e.g. sklearn)")
    parser.add_argument("--out", default=str(GOLDENS))
    args = parser.parse_args()
    official = Path(args.official).resolve()
    sys.path[:0] = [str(official), str(official / "dino")]
    sys.path += args.extra_path
    stub_mmseg()
    import cass_segmentor  # noqa: E402  (the official module)
    import vision_transformer as vits  # noqa: E402  (the official DINO ViT)
    from clip.model import build_model  # noqa: E402
    from dino.dino_attention import DinoSelfAttention  # noqa: E402

    torch.set_grad_enabled(False)
    inputs = np.load(GOLDENS / "inputs.npz")
    clip_state = torch.load(GOLDENS / "tiny_openai_clip.pt", map_location="cpu", weights_only=False)
    net = build_model(dict(clip_state)).float().eval()
    dino_state = tiny_dino(vits)

    def make_segmentor(dataset, gw, mvw, hthr):
        seg = cass_segmentor.CASS_segmentor.__new__(cass_segmentor.CASS_segmentor)
        nn.Module.__init__(seg)
        seg.net = seg.cls_net = net
        seg.scale_up = False
        seg.query_features = seg.cls_query_features = torch.from_numpy(inputs["Q"]).float()
        seg.num_queries = len(seg.query_features)
        seg.global_semantics_weight, seg.mean_vector_weight, seg.h_threshold = gw, mvw, hthr
        seg.dataset = dataset
        seg.cluster_info = seg.hierarchical_clustering(seg.query_features)
        seg.net.visual.set_params("reduced", "spectral", 5.0)
        seg.align_corners = False
        seg.dino_type = "dino_vitb8"
        dino = DinoSelfAttention.__new__(DinoSelfAttention)
        nn.Module.__init__(dino)
        dino.patch_size, dino.device = 8, torch.device("cpu")
        from functools import partial

        dino.model = vits.VisionTransformer(
            patch_size=8, embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), img_size=[112]).eval()
        dino.model.load_state_dict({k: v.float() for k, v in dino_state.items()})
        seg.dino_model = dino
        from torchvision import transforms

        seg.inv_normalize = transforms.Normalize(mean=[-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.255],
                                                 std=[1 / 0.229, 1 / 0.224, 1 / 0.255])  # as the official __init__
        return seg

    import clip.model as official_model  # noqa: E402

    assignments = []  # (cost, col_ind) of every official Hungarian match, in call order
    hungarian = official_model.linear_sum_assignment

    def recording(cost):
        rows, cols = hungarian(cost)
        assignments.append((np.array(cost, dtype=np.float32), np.asarray(cols, dtype=np.int64)))
        return rows, cols

    official_model.linear_sum_assignment = recording
    half = torch.Tensor.half
    out = {}
    for name, (src, mode, dataset, gw, mvw, hthr, rng, form) in CASES.items():
        seg = make_segmentor(dataset, gw, mvw, hthr)
        x = normalise(to_uint8(inputs[src]))
        forward_feature = seg.forward_feature
        if rng == "window":
            def per_window(*a, _f=forward_feature):
                torch.manual_seed(SEED)
                return _f(*a)
            seg.forward_feature = per_window
        torch.Tensor.half = lambda self, *a, **k: self  # keep the DINO keys in fp32
        lowrank = torch.svd_lowrank
        if form == "right":
            torch.svd_lowrank = svd_lowrank_torch110
        try:
            torch.manual_seed(SEED)
            logits = seg.forward_feature(x, None) if mode == "whole" else seg.forward_slide(x, 56, 112)
        finally:
            torch.Tensor.half = half
            torch.svd_lowrank = lowrank
        out[name] = logits[0, :, 1::4, 1::4].numpy().astype(np.float32)
        out[f"{name}_cost"] = np.stack([c for c, _ in assignments])
        out[f"{name}_perm"] = np.stack([p for _, p in assignments])
        assignments.clear()
        out[f"{name}_clusters"] = np.asarray(seg.cluster_info, dtype=np.int64)
        print(name, tuple(logits.shape), "clusters", seg.cluster_info.tolist())
    np.savez_compressed(Path(args.out) / "cass.npz", **out)
    np.savez_compressed(Path(args.out) / "cass_tiny_dino.npz", **{k: v.numpy() for k, v in dino_state.items()})


if __name__ == "__main__":
    main()
