"""Trident: the official golden (tools/make_trident_golden.py), the SAM aggregation from its
formulas, the preprocessor fit, the quirk switches and the wiring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ovdense
from conftest import golden
from ovdense.heads.trident import sam_guidance
from ovdense.preprocess import fit_size
from ovdense.registry import FEATURES, build

#: golden case -> (image, short side, head kwargs); see tools/make_trident_golden.py CASES.
CASES = {
    "square": ("square", 160, dict(cos_fac=1.2, refine_neg_cos=True)),
    "wide": ("wide", 144, dict(cos_fac=0.8, refine_neg_cos=False)),
    "city": ("wide", 144, dict(cos_fac=3.0, refine_neg_cos=False, split_halves=True)),
}
TINY_DINO = dict(type="timm_vit", model_name="vit_small_patch16_224.dino", pos_interp="dino",
                 model_kwargs=dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=4, img_size=112))


def sam_pos_embed(size: int, dim: int) -> np.ndarray:
    """The golden SAM's position embedding (the formula of tools/make_trident_golden.py)."""
    i = np.arange(size, dtype=np.float64)[:, None, None]
    j = np.arange(size, dtype=np.float64)[None, :, None]
    c = np.arange(dim, dtype=np.float64)[None, None, :]
    return (0.5 * np.sin(0.3 * i * (c % 5 + 1) / 8 + 0.2 * j * (c % 7 + 1) / 8 + c))[None].astype(np.float32)


@pytest.fixture(scope="module")
def ref():
    return golden("trident")


@pytest.fixture(scope="module")
def providers(ref):
    cfg = json.loads(str(ref["sam_config"]))
    sam = build(FEATURES, dict(type="sam", model_config=cfg)).eval()
    state = {k[4:]: torch.from_numpy(v).float() for k, v in ref.items() if k.startswith("sam.")}
    grid = cfg["img_size"] // cfg["patch_size"]
    state["pos_embed"] = torch.from_numpy(sam_pos_embed(grid, cfg["encoder_embed_dim"]))
    sam.sam.image_encoder.load_state_dict(state)
    dino = build(FEATURES, TINY_DINO).eval()
    dino.model.load_state_dict({k[5:]: torch.from_numpy(v).float() for k, v in ref.items() if k.startswith("dino.")})
    return dino, sam


def segmenter(backbone, providers, short, **head):
    dino, sam = providers  # the golden's weights (SAM: image scope)
    return ovdense.OVSegmenter(backbone=backbone, head=dict(type="trident", **head), features=dict(dino=dino, sam=sam),
                               preprocess=dict(short_side=short, multiple_of=16, min_fit=112),
                               windows=dict(crop=112, stride=64), device="cpu", text_encoder=dict(cache_dir=""))


def run(backbone, providers, ref, golden_inputs, case, **override):
    image, short, head = CASES[case]
    seg = segmenter(backbone, providers, short, **{**head, **override})
    ctx = seg.encode_image(ref[f"image_{image}"])
    return ctx, seg.query_logits(ctx, torch.from_numpy(golden_inputs["Q"]))


@pytest.mark.parametrize("case", [pytest.param("square", marks=pytest.mark.slow), "wide",
                                  pytest.param("city", marks=pytest.mark.slow)])
def test_trident_equals_the_official_golden(case, golden_backbone, providers, ref, golden_inputs):
    """Official ``get_trident_seg`` (crop 112, stride 64) on the tiny CLIP, DINO and SAM: the logits at
    the input size, equal to 1e-4 (fp32)."""
    ctx, logits = run(golden_backbone, providers, ref, golden_inputs, case)
    assert ctx.whole and tuple(ctx.resized_size) == tuple(ref[f"{case}_canvas"])
    assert len(ctx.boxes) == 1 and ctx.features.shape[0] == 1
    expected = torch.from_numpy(ref[f"{case}_logits"])
    got = logits[:, 1::3, 1::3]
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("override", [dict(sam_threshold=False),
                                      pytest.param(dict(threshold_mean="window"), marks=pytest.mark.slow),
                                      pytest.param(dict(sam_resize=None), marks=pytest.mark.slow)], ids=str)
def test_broken_wiring_changes_the_output(override, golden_backbone, providers, ref, golden_inputs):
    """Without SAM's value-cosine threshold, with per-window DINO means, or without the cv2 resize of
    the SAM image, the logits leave the golden (measured: 0.77, 0.020, 0.78)."""
    expected = torch.from_numpy(ref["wide_logits"])
    _, logits = run(golden_backbone, providers, ref, golden_inputs, "wide", **override)
    assert (logits[:, 1::3, 1::3] - expected).abs().max() > 1e-3


def test_sam_guidance_equals_the_official_formula():
    """``get_sam_sim`` written out with the explicit ``[heads, L, L]`` cosines."""
    torch.manual_seed(0)
    heads, n, d = 3, 30, 8
    probs = torch.rand(heads, n, n).softmax(-1)
    values = torch.randn(heads, n, d)
    for cos_fac, neg in ((1.2, True), (3.0, False), (-2.0, False), (0.0, True)):
        u = F.normalize(values, dim=-1)
        sim = u @ u.transpose(1, 2)
        thresh = cos_fac * sim.mean(dim=0, keepdim=True).mean(dim=-1, keepdim=True)
        if not neg:
            thresh = torch.where(thresh < 0.0, 0.6, thresh)
        thresh = torch.where(thresh > 0.9, 0.9, thresh)
        refined = torch.where(sim > thresh, probs, torch.zeros_like(probs)).mean(0)
        expected = refined / refined.sum(-1, keepdim=True)
        torch.testing.assert_close(sam_guidance(probs, values, cos_fac, neg), expected, atol=1e-6, rtol=1e-5)


def test_fit_size_is_the_official_preprocess_image(ref):
    for (h, w), out in zip(ref["fit_in"], ref["fit_out"]):
        assert fit_size(int(h), int(w), 16, 336) == tuple(int(v) for v in out)


def test_preprocessor_fit_resizes_the_normalised_image():
    from ovdense.preprocess import Preprocessor

    pre = Preprocessor(short_side=None, multiple_of=16, min_fit=0, mean=(0, 0, 0), std=(1, 1, 1))
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    raw, x = pre(image, torch.device("cpu"))
    assert tuple(x.shape[-2:]) == fit_size(40, 50, 16) == (64, 64) and raw.dtype == torch.uint8
    direct = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(64, 64), mode="bilinear",
                           align_corners=False)[0]
    torch.testing.assert_close(x, direct)
    assert (raw.float() - direct).abs().max() <= 0.5


def test_trident_needs_its_sam_provider(golden_backbone, providers, ref):
    with pytest.raises(ValueError, match=r"TridentHead needs the feature provider\(s\) \['sam'\]"):
        ovdense.OVSegmenter(backbone=golden_backbone, head="trident", features=dict(dino=TINY_DINO),
                            preprocess=dict(short_side=160, multiple_of=16, min_fit=112),
                            windows=dict(crop=112, stride=64), device="cpu", text_encoder=dict(cache_dir=""))
    with pytest.raises(ValueError, match="sam_resize"):
        ovdense.build_head(dict(type="trident", sam_resize="pil"))
