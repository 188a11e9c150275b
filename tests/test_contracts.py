"""Contracts every registered stage keeps, parametrised over the registries so they grow with them.

A new head, feature provider, refiner or proposal source is covered here as soon as it is
registered; one that needs constructor arguments to be small adds a line to ``TINY``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ovdense
from ovdense.registry import FEATURES, HEADS, PROPOSALS, REFINERS, build, names
from ovdense.structures import DenseFeatures
from ovdense.heads.base import Head

#: Small constructor arguments per registered name (tests only).
TINY = {
    "timm_vit": dict(model_name="vit_small_patch16_224", model_kwargs=dict(depth=2, embed_dim=48, num_heads=2)),
    "pamr": dict(steps=3, dilations=(1, 3)),
}
PROVIDER_FOR_TESTS = dict(type="timm_vit", **TINY["timm_vit"])


def tiny(registry, name):
    return build(registry, dict(type=name, **TINY.get(name, {})))


def _aux_for(head, raw):
    """Auxiliary features a head requires, from the test provider."""
    torch.manual_seed(0)
    provider = build(FEATURES, PROVIDER_FOR_TESTS).eval()
    return {n: provider(raw) for n in head.requires}


# ---------------------------------------------------------------------------------- heads
@pytest.mark.parametrize("name", names(HEADS))
def test_head_contract(name, tiny_backbone):
    """DenseFeatures on the patch grid, normalised, batch 2 == two batch 1, non-square grid,
    finite in bf16."""
    head = tiny(HEADS, name).eval()
    torch.manual_seed(0)
    crops = torch.randn(2, 3, 48, 80)  # 3 x 5 patches
    raw = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    aux = _aux_for(head, raw)
    with torch.no_grad():
        view = tiny_backbone.prefix(crops)
        out = head(view, tiny_backbone, aux)
        ones = [head(tiny_backbone.prefix(crops[i:i + 1]), tiny_backbone, {k: v[i:i + 1] for k, v in aux.items()})
                for i in range(2)]
    assert isinstance(out, DenseFeatures)
    assert out.features.shape == (2, tiny_backbone.embed_dim, 3, 5) and out.grid == (3, 5)
    assert out.features.dtype == torch.float32
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.features, DenseFeatures.cat(ones).features, atol=1e-5, rtol=1e-5)
    for key, value in out.extras.items():
        assert value.shape[0] == 2, f"extra {key!r} needs a leading batch dimension"

    import copy

    low = copy.deepcopy(tiny_backbone).to(dtype=torch.bfloat16)
    with torch.no_grad():
        half = head(low.prefix(crops.to(torch.bfloat16)), low, aux).features
    assert torch.isfinite(half).all()
    assert (half * out.features).sum(1).min() > 0.9  # bf16 stays close to fp32


def test_head_needing_a_provider_gets_uint8_windows_once(tiny_backbone):
    """A head that requires auxiliary features receives the provider's output of the uint8
    windows; with two such heads the provider still runs once per window batch."""
    calls = []

    class ProbeHead(Head):
        requires = ("dino",)

        def forward(self, view, backbone, aux=None):
            calls.append(aux["dino"])
            return super().forward(view, backbone, aux)

        def mix(self, view, aux=None):
            return torch.nn.functional.scaled_dot_product_attention(view.q, view.k, view.v)

    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head=ProbeHead(), features=dict(dino=PROVIDER_FOR_TESTS),
                              preprocess=dict(short_side=None), windows=dict(crop=64, stride=32), device="cpu",
                              text_encoder=dict(cache_dir=""))
    seg.set_classes(["a", "b"], embeddings=torch.randn(2, tiny_backbone.embed_dim))
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    res = seg.predict(image)
    assert res.label_map.shape == (64, 96)
    raw = torch.from_numpy(image).permute(2, 0, 1)
    windows = torch.stack([raw[:, :, 0:64], raw[:, :, 32:96]])
    with torch.no_grad():
        expected = seg.features["dino"](windows)
    torch.testing.assert_close(calls[0], expected)
    assert expected.shape == (2, 48, 4, 4)

    runs = []
    provider_forward = seg.features["dino"].forward
    seg.features["dino"].forward = lambda x: runs.append(1) or provider_forward(x)
    calls.clear()
    seg.predict_heads(image, [ProbeHead(), ProbeHead()])
    assert len(runs) == 1 and len(calls) == 2

    with pytest.raises(ValueError, match="feature provider"):
        ovdense.OVSegmenter(backbone=tiny_backbone, head=ProbeHead(), device="cpu")


# ---------------------------------------------------------------------------------- feature providers
@pytest.mark.parametrize("name", names(FEATURES))
def test_feature_provider_contract(name):
    """uint8 windows in, ``[B, C, h, w]`` finite features out; batch 2 == two batch 1."""
    torch.manual_seed(0)
    provider = tiny(FEATURES, name).eval()
    raw = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
    with torch.no_grad():
        out = provider(raw)
        ones = torch.cat([provider(raw[:1]), provider(raw[1:])])
    assert out.ndim == 4 and out.shape[0] == 2 and torch.isfinite(out).all()
    torch.testing.assert_close(out, ones, atol=1e-5, rtol=1e-5)


def test_timm_vit_normalises_itself_and_reads_local_weights(tmp_path):
    """The provider equals the timm model on the image normalised with the model's own mean/std,
    and loads official-style checkpoints (``teacher`` wrapper, ``backbone.`` prefix) from disk."""
    import timm

    torch.manual_seed(1)
    model = timm.create_model("vit_small_patch16_224.dino", pretrained=False, num_classes=0, dynamic_img_size=True,
                              depth=2, embed_dim=48, num_heads=2).eval()
    path = tmp_path / "dino.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, path)
    provider = build(FEATURES, dict(type="timm_vit", model_name="vit_small_patch16_224.dino", weights=str(path),
                                    model_kwargs=dict(depth=2, embed_dim=48, num_heads=2))).eval()
    raw = torch.randint(0, 256, (1, 3, 64, 80), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        tokens = model.forward_features((raw.float() - mean) / std)[:, model.num_prefix_tokens:]
        ours = provider(raw)
    assert ours.shape == (1, 48, 4, 5)
    torch.testing.assert_close(ours, tokens.reshape(1, 4, 5, 48).permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="not found"):
        build(FEATURES, dict(type="timm_vit", weights=str(tmp_path / "missing.pth")))


# ---------------------------------------------------------------------------------- refiners
@pytest.mark.parametrize("name", names(REFINERS))
def test_refiner_contract(name):
    """Shape kept, constants stay constant, and a band refined with ``halo_rows`` of context
    equals the same rows of the whole image (what banded full-resolution output relies on)."""
    refiner = tiny(REFINERS, name).eval()
    torch.manual_seed(0)
    logits = torch.randn(5, 70, 40)
    guide = torch.randn(3, 70, 40)
    with torch.no_grad():
        whole = refiner(logits, guide)
        const = refiner(torch.full((2, 70, 40), 0.25), guide)
    assert whole.shape == logits.shape and torch.isfinite(whole).all()
    torch.testing.assert_close(const, torch.full((2, 70, 40), 0.25), atol=1e-6, rtol=0)
    halo = refiner.halo_rows
    for r0, r1 in [(0, 10), (25, 37), (60, 70)]:
        a0, a1 = max(0, r0 - halo), min(70, r1 + halo)
        with torch.no_grad():
            band = refiner(logits[:, a0:a1], guide[:, a0:a1])[:, r0 - a0:r1 - a0]
        torch.testing.assert_close(band, whole[:, r0:r1], atol=1e-6, rtol=0)


def test_pamr_band_without_its_halo_differs():
    """The halo contract is not vacuous: too little context changes PAMR's result."""
    refiner = build(REFINERS, dict(type="pamr", steps=3, dilations=(1, 3)))
    torch.manual_seed(0)
    logits, guide = torch.randn(5, 70, 40), torch.randn(3, 70, 40)
    whole = refiner(logits, guide)
    band = refiner(logits[:, 20:50], guide[:, 20:50])
    assert (band[:, 5:25] - whole[:, 25:45]).abs().max() > 1e-4


# ---------------------------------------------------------------------------------- proposal sources
def _result(has_background):
    rng = np.random.default_rng(0)
    label = rng.integers(-1 if not has_background else 0, 4, (30, 40))
    label[5:15, 5:20] = 2
    scores = rng.random((4, 30, 40)).astype(np.float32)
    return ovdense.SegmentationResult(label_map=label, class_names=["bg", "a", "b", "c"],
                                      has_background=has_background, scores=scores)


@pytest.mark.parametrize("name", names(PROPOSALS))
@pytest.mark.parametrize("has_background", [True, False])
def test_proposal_source_contract(name, has_background):
    """Masks lie inside their class, boxes bound their masks exactly, unlabelled pixels and the
    background class (only when the result has one) give no instance; empty in, empty out."""
    source = tiny(PROPOSALS, name)
    res = _result(has_background)
    dets = source(res)
    assert dets.mask.shape[1:] == res.label_map.shape and len(dets) > 0
    assert (0 in dets.class_id.tolist()) == (not has_background)
    for mask, box, cls, conf in zip(dets.mask, dets.xyxy, dets.class_id, dets.confidence):
        assert mask.any() and np.all(res.label_map[mask] == cls)
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert 0.0 <= conf <= 1.0
    empty = ovdense.SegmentationResult(label_map=np.full((6, 7), -1), class_names=["a"], has_background=False)
    none = source(empty)
    assert len(none) == 0 and none.mask.shape == (0, 6, 7) and none.xyxy.shape == (0, 4)


# ---------------------------------------------------------------------------------- registry errors
def test_unknown_names_and_keys_fail_clearly():
    with pytest.raises(KeyError, match="unknown head 'nope'; available: .*naclip"):
        ovdense.build_head("nope")
    with pytest.raises(TypeError, match="gaussian_sd"):
        ovdense.build_head(dict(type="naclip", gaussian_sd=3))
    with pytest.raises(TypeError, match="step"):
        build(REFINERS, dict(type="pamr", step=3))


def test_prefix_taps_are_the_intermediate_block_outputs(tiny_backbone):
    """``prefix(taps=...)`` keeps the tokens leaving the asked blocks: equal to running the
    blocks one by one through open_clip's own forward; the last prefix block's tap is ``x``."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 48, 64)
    blocks = tiny_backbone.visual.transformer.resblocks
    with torch.no_grad():
        view = tiny_backbone.prefix(images, taps=(0, -2))
        x = tiny_backbone.embed(images)
        outputs = []
        for blk in blocks[:-1]:
            x = blk(x)
            outputs.append(x)
    assert sorted(view.taps) == [0, len(blocks) - 2]
    torch.testing.assert_close(view.taps[0], outputs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(view.taps[len(blocks) - 2], view.x)
    with pytest.raises(ValueError, match="taps"):
        tiny_backbone.prefix(images, taps=(-1,))


def test_a_head_declaring_taps_receives_them(tiny_backbone):
    seen = {}

    class TapHead(Head):
        taps = (0,)

        def mix(self, view, aux=None):
            seen.update(view.taps)
            return view.v

    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head=TapHead(), preprocess=dict(short_side=None),
                              windows=dict(crop=0), device="cpu")
    seg.dense_features(torch.randn(1, 3, 64, 64))
    assert list(seen) == [0] and seen[0].shape == (1, 17, tiny_backbone.visual.transformer.width)


def test_band_height_counts_refiner_memory_and_never_drops_below_the_halo(tiny_backbone):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, device="cpu", max_chunk_mb=512,
                              refiners=[dict(type="pamr", steps=10, dilations=(8, 16))])
    pamr_floats = seg.refiners[0].working_floats_per_pixel(20)
    rows = seg._band_rows(20, 1000, halo=160)
    assert rows == 512 * 2**20 // 4 // ((40 + pamr_floats) * 1000) - 320 > 160  # memory-bound
    assert seg._band_rows(20, 4000, halo=160) == 160                    # the halo floor
    plain = ovdense.OVSegmenter(backbone=tiny_backbone, device="cpu", max_chunk_mb=64)
    assert plain._band_rows(20, 1000, halo=0) == 64 * 2**20 // 4 // (40 * 1000)
