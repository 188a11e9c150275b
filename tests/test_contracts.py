"""Contracts every registered stage keeps, parametrised over the registries so they grow with them.

A new head, feature provider, refiner, decoder rule, proposal source or region scorer is
covered here as soon as it is registered; one that needs constructor arguments to be small
adds a line to ``TINY``. The contracts are stated, not today's implementations: every stage
is exercised through the :class:`~ovdense.structures.ImageContext` it gets in a segmenter.
The README "Extending" exercises (``tests/extending``) are registered first, so they are
held to the same contracts.
"""
from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import pytest
import torch

import extending  # noqa: F401  (registers the README "Extending" exercises)
import ovdense
from ovdense.heads.base import Head
from ovdense.registry import DECODE_RULES, FEATURES, HEADS, PROPOSALS, REFINERS, SCORERS, build, names
from ovdense.structures import UNLABELLED, DenseFeatures

#: Small constructor arguments per registered name (tests only).
TINY = {
    "timm_vit": dict(model_name="vit_small_patch16_224", model_kwargs=dict(depth=2, embed_dim=48, num_heads=2)),
    "stitched_vit": dict(model_name="vit_small_patch8_224", pos_interp="timm",
                         model_kwargs=dict(depth=2, embed_dim=32, num_heads=2)),
    "pamr": dict(steps=3, dilations=(1, 3)),
    "sam_encoder": dict(encoder_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                            window_size=2, global_attn_indexes=(1,), use_rel_pos=False,
                                            out_chans=16)),
    "test_dino_affinity": dict(steps=2, dilation=3),
    "feature_affinity": dict(steps=3, dilations=(1, 3), chunk=20),
    "sam_automatic": dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    "sam_vote": dict(masks=dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
    # small regions and a low IoU threshold: SAM is prompted, some prompts kept, some failed
    "trident_sam_refine": dict(minimal_area=4, sam_iou_thresh=0.65),
    # the 3-block tiny CLIP has no block -3 input to tap; no checkpoint: random convolutions
    "dinoiser": dict(feats_idx=-2),
}
#: Entries that need an optional package: skipped without it, and in the slow set (SAM 2's
#: smallest model still embeds 1024 px images).
OPTIONAL = {"sam2": "sam2", "sam2_automatic": "sam2"}
TINY["sam2"] = dict(config="configs/sam2.1/sam2.1_hiera_t.yaml")
TINY["sam2_automatic"] = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def entries(registry):
    """``names(registry)`` as pytest parameters; entries of optional packages are skipped
    without the package and run in the slow set."""
    import importlib.util

    out = []
    for name in names(registry):
        package = OPTIONAL.get(name)
        if package is None:
            out.append(name)
            continue
        missing = importlib.util.find_spec(package) is None
        out.append(pytest.param(name, marks=[pytest.mark.slow,
                                             pytest.mark.skipif(missing, reason=f"needs the optional {package}")]))
    return out


_SAM_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "synth_sam")
#: Providers that stages name and that must be of one kind: SAM stages read the tiny SAM fixture.
NAMED_PROVIDERS = {"sam": dict(type="sam", model_config=os.path.join(_SAM_FIXTURE, "model.json"),
                               checkpoint=os.path.join(_SAM_FIXTURE, "synth_sam.pt")),
                   "sam2": dict(type="sam2", **TINY["sam2"])}
TINY["sam"] = {k: v for k, v in NAMED_PROVIDERS["sam"].items() if k != "type"}
TINY["regions"] = dict(proposals=dict(type="sam_automatic", provider="sam", **TINY["sam_automatic"]))
NAMED_PROVIDERS["regions"] = dict(type="regions", **TINY["regions"])
NAMED_PROVIDERS["stitched_dino"] = dict(type="stitched_vit", **TINY["stitched_vit"])
#: The tiny providers heads and other stages are tested with: CLIP's patch 16 and DINO's patch 8.
TEST_PROVIDERS = {
    16: dict(type="timm_vit", **TINY["timm_vit"]),
    8: dict(type="timm_vit", model_name="vit_small_patch8_224",
            model_kwargs=dict(depth=2, embed_dim=32, num_heads=2)),
}
PROVIDER_FOR_TESTS = TEST_PROVIDERS[16]


def tiny(registry, name):
    return build(registry, dict(type=name, **TINY.get(name, {})))


def head_spec(name, backbone, patch=16):
    """A head's tiny spec for a segmenter on ``backbone`` with the patch-``patch`` test provider:
    :data:`TINY`'s arguments, and for a head that projects the text into its provider's space
    (Talk2DINO) a projection from the backbone's text width to the provider's."""
    spec = dict(type=name, **TINY.get(name, {}))
    if name == "talk2dino":
        width = TEST_PROVIDERS[patch]["model_kwargs"]["embed_dim"]
        spec["projection"] = dict(clip_dim=backbone.embed_dim, dino_dim=width)
    return spec


def providers_for(*stages, patch=16):
    """The configured providers (``features=``) the stages require, all built from the tiny
    test provider of ``patch`` (8 or 16)."""
    wanted = sorted({n for s in stages for n in (*getattr(s, "requires", ()), *getattr(s, "context_requires", ()))})
    out = {n: dict(NAMED_PROVIDERS.get(n, TEST_PROVIDERS[patch])) for n in wanted}
    for n in wanted:  # providers that read other providers (regions from SAM masks)
        if n in NAMED_PROVIDERS:
            out.update({m: spec for m, spec in providers_for(build(FEATURES, NAMED_PROVIDERS[n])).items()
                        if m not in out})
    return out


def _aux_for(head, raw, patch=16):
    """Auxiliary features a head requires, from the test provider (a provider that reads the
    image's context, such as region maps, gives random integer ids on the windows' pixels)."""
    torch.manual_seed(0)
    out = {}
    for n, spec in providers_for(head, patch=patch).items():
        if n not in head.requires:  # read from the context by the head itself, not given as aux
            continue
        provider = build(FEATURES, spec).eval()
        if provider.reads_context:
            out[n] = torch.randint(0, 5, (raw.shape[0], 1) + tuple(raw.shape[-2:])).float()
        else:
            out[n] = provider(raw)
    return out


def prefix_for(head, backbone, crops):
    """The BlockView a segmenter gives ``head``: its taps, and every block's input if it asks."""
    return backbone.prefix(crops, taps=head.taps, keep_inputs=head.keeps_block_inputs)


def check_head_output(head, backbone, out, window_size, providers):
    """What every head's output must be: DenseFeatures on the grid the head declares, float32,
    unit-norm features of the width it declares (CLIP's unless it scores windows itself, see
    ``Head.feature_dim``), and extras with a leading batch dimension."""
    grid = head.output_grid(window_size, backbone, providers)
    assert isinstance(out, DenseFeatures)
    assert out.grid == tuple(grid), f"{type(head).__name__} returned grid {out.grid}, declares {grid}"
    dim = head.feature_dim(backbone, providers)
    assert out.features.shape[1] == dim and out.features.dtype == torch.float32
    if dim != backbone.embed_dim:  # features outside CLIP's space: the head must score the text itself
        assert callable(getattr(head, "window_logits", None)), f"{type(head).__name__} needs window_logits"
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(len(out), *grid), atol=1e-5, rtol=0)
    assert set(out.extras) == set(head.extras), "extras must be the ones the head declares"
    for key, value in out.extras.items():
        assert value.shape[0] == len(out), f"extra {key!r} needs a leading batch dimension"


def tiny_segmenter(backbone, head="maskclip", features=None, **kwargs):
    """A CPU segmenter on the tiny CLIP: no resize, 32 px windows at stride 16, 4 random classes."""
    kwargs = {"preprocess": dict(short_side=None), "windows": dict(crop=32, stride=16), **kwargs}
    torch.manual_seed(0)  # providers built from specs get the same random weights in every call
    seg = ovdense.OVSegmenter(backbone=backbone, head=head, features=features or {}, device="cpu",
                              text_encoder=dict(cache_dir=""), **kwargs)
    torch.manual_seed(1)
    seg.set_classes(["bg", "a", "b", "c"], embeddings=torch.randn(4, backbone.embed_dim))
    return seg


def context_of(seg, shape=(70, 40), seed=0):
    """An ImageContext of a random image whose left third is flat (a region of constant colour)."""
    image = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    image[:, : shape[1] // 3] = (30, 120, 60)
    return seg.encode_image(image)


# ---------------------------------------------------------------------------------- heads
def _head_cases():
    """Every head; heads that read providers once with each tiny provider (patch 16 and 8)."""
    for name in names(HEADS):
        patches = (16, 8) if tiny(HEADS, name).requires else (16,)
        for patch in patches:
            yield pytest.param(name, patch, id=f"{name}-p{patch}")


@pytest.mark.parametrize("name, patch", list(_head_cases()))
def test_head_contract(name, patch, tiny_backbone):
    """DenseFeatures on the grid the head declares, normalised, batch 2 == two batch 1,
    non-square grid, finite in bf16."""
    head = tiny(HEADS, name).eval()
    torch.manual_seed(0)
    crops = torch.randn(2, 3, 48, 80)  # 3 x 5 CLIP patches, 6 x 10 patch-8 cells
    raw = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    aux = _aux_for(head, raw, patch)
    providers = {n: build(FEATURES, spec) for n, spec in providers_for(head, patch=patch).items()}
    with torch.no_grad():
        view = prefix_for(head, tiny_backbone, crops)
        out = head(view, tiny_backbone, aux)
        ones = [head(prefix_for(head, tiny_backbone, crops[i:i + 1]), tiny_backbone,
                     {k: v[i:i + 1] for k, v in aux.items()}) for i in range(2)]
    check_head_output(head, tiny_backbone, out, (48, 80), providers)
    assert len(out) == 2
    torch.testing.assert_close(out.features, DenseFeatures.cat(ones).features, atol=1e-5, rtol=1e-5)

    low = copy.deepcopy(tiny_backbone).to(dtype=torch.bfloat16)
    with torch.no_grad():
        half = head(prefix_for(head, low, crops.to(torch.bfloat16)), low, aux).features
    assert torch.isfinite(half).all()
    assert (half * out.features).sum(1).min() > 0.9  # bf16 stays close to fp32


@pytest.mark.parametrize("name", names(HEADS))
def test_head_host_work_contract(name, tiny_backbone):
    """A head that leaves ``host_work`` False touches no host tensor in a warmed-up fixed-size step
    (so a CUDA graph can record it; checked on the meta device); one that declares it is refused by
    ``cuda_graph=True``; a head that works on the whole image is refused by FixedSizePredictor."""
    from host_work import step_on_meta
    from ovdense.fixed_size import FixedSizePredictor

    backbone = copy.deepcopy(tiny_backbone)  # moved to the meta device below
    head = build(HEADS, head_spec(name, backbone))
    seg = tiny_segmenter(backbone, head=head, features=providers_for(head))
    image_scope = [n for n, p in seg.features.items() if getattr(p, "scope", "window") != "window"]
    if head.context_requires or getattr(head, "finish_context", None) is not None or image_scope:
        with pytest.raises(ValueError, match="use predict"):
            FixedSizePredictor(seg, (48, 80))
        return
    if head.host_work:
        with pytest.raises(ValueError, match="CUDA graph cannot record"):
            FixedSizePredictor(seg, (48, 80), cuda_graph=True)
        return
    labels, _, found = step_on_meta(FixedSizePredictor(seg, (48, 80)))
    assert tuple(labels.shape) == (48, 80) and not found, found


class _ProviderGridHead(Head):
    """A DINO-fed head whose features live on the provider's grid (patch 8 here)."""

    requires = ("dino",)

    def __init__(self, declare_provider_grid=True):
        super().__init__()
        self.declare_provider_grid = declare_provider_grid

    def output_grid(self, window_size, backbone, providers=None):
        if not self.declare_provider_grid:
            return super().output_grid(window_size, backbone, providers)
        ph, pw = providers["dino"].patch_size
        return window_size[0] // ph, window_size[1] // pw

    def forward(self, view, backbone, aux=None):
        clip = super().forward(view, backbone, aux).features
        grid = aux["dino"].shape[-2:]
        up = torch.nn.functional.interpolate(clip, size=grid, mode="bilinear", align_corners=False)
        return DenseFeatures(torch.nn.functional.normalize(up, dim=1))

    def mix(self, view, aux=None):
        return view.v


def test_head_grid_contract_holds_a_provider_grid_head_and_catches_a_wrong_declaration(tiny_backbone):
    """With the patch-8 provider a head may return the provider's grid if it declares it; the
    same head declaring CLIP's grid fails the contract check (so the check is not vacuous)."""
    raw = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    crops = torch.randn(2, 3, 48, 80)
    for declares, ok in ((True, True), (False, False)):
        head = _ProviderGridHead(declares).eval()
        providers = {n: build(FEATURES, spec) for n, spec in providers_for(head, patch=8).items()}
        with torch.no_grad():
            out = head(tiny_backbone.prefix(crops), tiny_backbone, {"dino": providers["dino"](raw)})
        assert out.grid == (6, 10)
        if ok:
            check_head_output(head, tiny_backbone, out, (48, 80), providers)
        else:
            with pytest.raises(AssertionError, match="declares"):
                check_head_output(head, tiny_backbone, out, (48, 80), providers)
    seg = tiny_segmenter(tiny_backbone, head=_ProviderGridHead(), features=providers_for(_ProviderGridHead(), patch=8))
    res = seg.predict(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    assert res.label_map.shape == (40, 56)


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
@pytest.mark.parametrize("name", entries(FEATURES))
def test_feature_provider_contract(name, tiny_backbone):
    """uint8 windows in, ``[B, C, h, w]`` finite features out; batch 2 == two batch 1. A provider
    that reads the image's context instead is image-scope and gives ``[1, C, H, W]`` covering the
    input image (its pixels, or the grid ``context_grid(context)`` it declares over the canvas),
    computed once per image."""
    torch.manual_seed(0)
    provider = tiny(FEATURES, name).eval()
    if provider.reads_context:
        assert provider.scope == "image"
        seg = tiny_segmenter(tiny_backbone, features={name: dict(type=name, **TINY.get(name, {})),
                                                      **providers_for(provider)})
        ctx = context_of(seg, shape=(30, 40))
        out = ctx.feature_map(name)
        grid = provider.context_grid(ctx) if hasattr(provider, "context_grid") else (30, 40)
        assert out.ndim == 4 and out.shape[0] == 1 and tuple(out.shape[-2:]) == tuple(grid)
        assert torch.isfinite(out).all() and ctx.feature_map(name) is out
        return
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
@pytest.mark.parametrize("name", entries(REFINERS))
def test_refiner_contract(name, tiny_backbone):
    """Run through the context a segmenter gives it: shape kept, constants stay constant, and a
    band refined with ``halo_rows`` of context equals the same rows of the whole image (what
    banded full-resolution output relies on); a bare guide tensor is accepted for refiners
    that read only the guide."""
    refiner = tiny(REFINERS, name).eval()
    seg = tiny_segmenter(tiny_backbone, features=providers_for(refiner), refiners=[refiner])
    ctx = context_of(seg)
    size = (70, 40)
    torch.manual_seed(0)
    logits = torch.randn(5, 70, 40)
    with torch.no_grad():
        whole = refiner(logits, ctx.band((0, 70), size))
        const = refiner(torch.full((2, 70, 40), 0.25), ctx.band((0, 70), size))
    assert whole.shape == logits.shape and torch.isfinite(whole).all()
    torch.testing.assert_close(const, torch.full((2, 70, 40), 0.25), atol=1e-6, rtol=0)
    halo = refiner.halo_rows
    for r0, r1 in [(0, 10), (25, 37), (60, 70)]:
        band = ctx.band((r0, r1), size, halo)
        a0, a1 = band.rows
        assert (a0, a1) == (max(0, r0 - halo), min(70, r1 + halo))
        with torch.no_grad():
            out = refiner(logits[:, a0:a1], band)[:, r0 - a0:r1 - a0]
        torch.testing.assert_close(out, whole[:, r0:r1], atol=1e-6, rtol=0)
    if not refiner.requires:
        guide = ctx.band((0, 70), size).guide
        torch.testing.assert_close(refiner(logits, guide), whole, atol=0, rtol=0)


@pytest.mark.parametrize("name", entries(REFINERS))
def test_segmenter_output_with_each_refiner_is_the_same_in_bands(name, tiny_backbone):
    """The whole chain, banded (tiny ``max_chunk_mb``) vs one band: identical labels."""
    refiner_spec = dict(type=name, **TINY.get(name, {}))
    probe = tiny(REFINERS, name)
    image = np.random.default_rng(3).integers(0, 256, (90, 50, 3), dtype=np.uint8)
    labels = []
    for chunk in (512, 0.02):
        seg = tiny_segmenter(tiny_backbone, features=providers_for(probe), refiners=[refiner_spec],
                             max_chunk_mb=chunk)
        labels.append(seg.predict(image, return_scores=True))
    np.testing.assert_array_equal(labels[0].label_map, labels[1].label_map)
    np.testing.assert_allclose(labels[0].scores, labels[1].scores, atol=1e-6, rtol=0)


def test_pamr_band_without_its_halo_differs():
    """The halo contract is not vacuous: too little context changes PAMR's result."""
    refiner = build(REFINERS, dict(type="pamr", steps=3, dilations=(1, 3)))
    torch.manual_seed(0)
    logits, guide = torch.randn(5, 70, 40), torch.randn(3, 70, 40)
    whole = refiner(logits, guide)
    band = refiner(logits[:, 20:50], guide[:, 20:50])
    assert (band[:, 5:25] - whole[:, 25:45]).abs().max() > 1e-4


@pytest.mark.parametrize("name", entries(DECODE_RULES))
def test_decode_rule_contract(name, tiny_backbone):
    """A rule keeps the probabilities' shape, is local (a band's rows equal the whole map's),
    and the segmenter's banded output with the rule equals a single band's. A label rule maps
    the whole image's labels to labels of the same shape and classes, and the segmenter's
    banded output with it equals a single band's."""
    rule = tiny(DECODE_RULES, name)
    if isinstance(rule, ovdense.rules.WindowRule):  # on the window scores, before stitching
        seg = tiny_segmenter(tiny_backbone, head=_ExtraHead(),
                             decode=dict(rules=[dict(type=name, **TINY.get(name, {}))]))
        torch.manual_seed(1)  # the background rules act only on a vocabulary with a background class
        seg.set_classes(["a", "b", "c"], background="bg", embeddings=torch.randn(4, tiny_backbone.embed_dim))
        ctx = context_of(seg)
        scores = torch.rand(len(ctx.features), 4, *ctx.features.shape[-2:])
        out = rule(scores, ctx, seg.encoded_vocabulary)
        assert out.shape == scores.shape and torch.isfinite(out).all()
        assert not torch.equal(out, scores), "the case must exercise the rule"
        sub = dataclasses.replace(ctx, features=ctx.features[1:2], boxes=ctx.boxes[1:2],
                                  extras={k: v[1:2] for k, v in ctx.extras.items()})
        torch.testing.assert_close(rule(scores[1:2], sub, seg.encoded_vocabulary), out[1:2])  # window by window
        image = np.random.default_rng(5).integers(0, 256, (80, 48, 3), dtype=np.uint8)
        one = seg.predict(image)
        seg.max_chunk_mb = 0.01
        np.testing.assert_array_equal(seg.predict(image).label_map, one.label_map)
        return
    if isinstance(rule, ovdense.rules.LabelRule):
        features = {n: NAMED_PROVIDERS.get(n, PROVIDER_FOR_TESTS) for n in rule.requires}
        for spec in list(features.values()):
            features.update(providers_for(build(FEATURES, spec)))
        seg = tiny_segmenter(tiny_backbone, features=features,
                             decode=dict(rules=[dict(type=name, **TINY.get(name, {}))]))
        ctx = context_of(seg, shape=(30, 40))
        labels = torch.from_numpy(np.random.default_rng(3).integers(0, 4, (30, 40)))
        if rule.needs_scores:  # the rule also reads and returns the probabilities [C, H, W]
            scores = torch.from_numpy(np.random.default_rng(4).random((4, 30, 40), dtype=np.float32)).softmax(0)
            out, new_scores = rule(labels, ctx, seg.encoded_vocabulary.vocabulary, scores)
            assert new_scores.shape == scores.shape and torch.isfinite(new_scores).all()
        else:
            out = rule(labels, ctx, seg.encoded_vocabulary.vocabulary)
        assert out.shape == labels.shape and out.dtype == torch.int64
        assert set(out.unique().tolist()) <= set(labels.unique().tolist())
        one = seg.predict(ctx)
        seg.max_chunk_mb = 0.001
        np.testing.assert_array_equal(seg.predict(ctx).label_map, one.label_map)
        return
    head = _ExtraHead()
    seg = tiny_segmenter(tiny_backbone, head=head, features={n: dict(PROVIDER_FOR_TESTS) for n in rule.requires
                                                              if n not in head.extras},
                         decode=dict(rules=[dict(type=name, **TINY.get(name, {}))]))
    ctx = context_of(seg)
    vocab = seg.encoded_vocabulary.vocabulary
    probs = torch.rand(4, 70, 40)
    whole = rule(probs, ctx.band((0, 70), (70, 40)), vocab)
    assert whole.shape == probs.shape and torch.isfinite(whole).all()
    for r0, r1 in [(0, 9), (30, 52)]:
        torch.testing.assert_close(rule(probs[:, r0:r1], ctx.band((r0, r1), (70, 40)), vocab), whole[:, r0:r1],
                                   atol=1e-6, rtol=0)
    image = np.random.default_rng(5).integers(0, 256, (80, 48, 3), dtype=np.uint8)
    one = seg.predict(image)
    seg.max_chunk_mb = 0.01
    np.testing.assert_array_equal(seg.predict(image).label_map, one.label_map)


class _ExtraHead(Head):
    """MaskCLIP's mixing with a per-window ``background`` extra map (the first feature
    channel's sign), for rules that read a head's extra."""

    extras = ("background",)
    keep_residual = False
    keep_ffn = False

    def mix(self, view, aux=None):
        return view.v

    def forward(self, view, backbone, aux=None):
        dense = super().forward(view, backbone, aux)
        return DenseFeatures(dense.features, {"background": (dense.features[:, :1] > 0).float()})


# ---------------------------------------------------------------------------------- proposal sources
def _result(has_background):
    """A semantic result over the classes of :func:`_vocabulary` (background first if any)."""
    names = (["bg"] if has_background else []) + ["a", "b", "c"]
    rng = np.random.default_rng(0)
    label = rng.integers(0 if has_background else -1, len(names), (30, 40))
    label[5:15, 5:20] = len(names) - 2
    scores = rng.random((len(names), 30, 40)).astype(np.float32)
    return ovdense.SegmentationResult(label_map=label, class_names=names, has_background=has_background,
                                      scores=scores)


def _vocabulary(seg, has_background):
    torch.manual_seed(2)
    return seg.encode_vocabulary(["a", "b", "c"], background="bg" if has_background else None,
                                 embeddings=torch.randn(4 if has_background else 3, seg.backbone.embed_dim))


def check_detections(dets, size, vocab):
    """Masks inside the image and non-empty, boxes that bound them exactly, class ids in the
    vocabulary (or UNLABELLED), names that match, confidences in [0, 1], no background class."""
    assert dets.mask is not None and dets.mask.shape[1:] == size and dets.mask.dtype == bool
    for mask, box, cls, name, conf in zip(dets.mask, dets.xyxy, dets.class_id, dets.class_name, dets.confidence):
        assert mask.any()
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert cls == UNLABELLED or 0 <= cls < vocab.vocabulary.num_classes
        assert name == ("" if cls == UNLABELLED else vocab.class_names[cls])
        assert 0.0 <= conf <= 1.0
    if vocab.has_background:
        assert 0 not in dets.class_id.tolist(), "the background class is never a detection"


def _proposal_inputs(name, has_background, backbone):
    """The source ``name``, a segmenter with the providers it needs, a 30 x 40 image's context,
    a vocabulary and (for sources that read one) a semantic result over it."""
    source = tiny(PROPOSALS, name)
    seg = tiny_segmenter(backbone, features=providers_for(source))
    result = _result(has_background) if source.needs_result else None
    return source, seg, context_of(seg, shape=(30, 40)), _vocabulary(seg, has_background), result


@pytest.mark.parametrize("name", entries(PROPOSALS))
@pytest.mark.parametrize("has_background", [True, False])
def test_proposal_source_contract(name, has_background, tiny_backbone):
    """``source(context, vocabulary, result)``: detections at the image's size that keep
    :func:`check_detections`; a semantic result is passed only to sources that need one."""
    source, seg, ctx, vocab, result = _proposal_inputs(name, has_background, tiny_backbone)
    dets = source(ctx, vocab, result)
    assert len(dets) > 0
    check_detections(dets, (30, 40), vocab)


@pytest.mark.parametrize("scorer", entries(SCORERS))
@pytest.mark.parametrize("name", entries(PROPOSALS))
@pytest.mark.parametrize("has_background", [True, False])
def test_region_scorer_contract(scorer, name, has_background, tiny_backbone):
    """A scorer classifies any source's proposals: every kept detection has a class of the
    vocabulary (never the background), its mask and box unchanged; the Detector runs the
    same chain end to end."""
    source, seg, ctx, vocab, result = _proposal_inputs(name, has_background, tiny_backbone)
    proposals = source(ctx, vocab, result)
    # built as the Detector builds it (with the segmenter's logit scale, backbone, mean and std)
    built = ovdense.Detector(seg, proposals=dict(type=name, **TINY.get(name, {})),
                             scorer=dict(type=scorer, **TINY.get(scorer, {}))).scorer
    scored = built(proposals, ctx, vocab, result)
    check_detections(scored, (30, 40), vocab)
    assert (scored.class_id >= 0).all() and len(scored) <= len(proposals)
    originals = {m.tobytes(): box.tolist() for m, box in zip(proposals.mask, proposals.xyxy)}
    for m, box in zip(scored.mask, scored.xyxy):
        assert originals[m.tobytes()] == box.tolist()
    dets = ovdense.Detector(seg, proposals=dict(type=name, **TINY.get(name, {})), scorer=scorer).detect(
        ctx.image, vocabulary=vocab)
    check_detections(dets, (30, 40), vocab)
    none = built(proposals[:0], ctx, vocab, result)
    assert len(none) == 0 and none.mask.shape == (0, 30, 40)


def test_connected_components_masks_lie_in_their_class():
    """Connected components of the label map: each mask inside its class; unlabelled pixels and
    the background class (only when the result has one) give no instance; empty in, empty out."""
    source = tiny(PROPOSALS, "connected_components")
    for has_background in (True, False):
        res = _result(has_background)
        dets = source(None, None, res)
        assert (0 in dets.class_id.tolist()) == (not has_background)
        for mask, cls in zip(dets.mask, dets.class_id):
            assert np.all(res.label_map[mask] == cls)
    empty = ovdense.SegmentationResult(label_map=np.full((6, 7), -1), class_names=["a"], has_background=False)
    none = source(None, None, empty)
    assert len(none) == 0 and none.mask.shape == (0, 6, 7) and none.xyxy.shape == (0, 4)
    with pytest.raises(ValueError, match="result"):
        source(None, None, None)


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


def test_registries_hang_under_mmengine_models_and_names_are_unique():
    """mmengine's MODELS builds every entry (``ovdense.<name>``, or a bare name under
    ``default_scope='ovdense'``, as a Runner config sets it); no name is in two kinds."""
    from mmengine.registry import MODELS, DefaultScope

    from ovdense.registry import ALL_REGISTRIES, MODELS as OVDENSE_MODELS

    assert OVDENSE_MODELS.parent is MODELS and MODELS.children["ovdense"] is OVDENSE_MODELS
    refiner = MODELS.build(dict(type="ovdense.pamr", steps=2, dilations=(1,)))
    assert type(refiner).__name__ == "PAMR" and refiner.steps == 2
    with DefaultScope.overwrite_default_scope("ovdense"):
        assert type(MODELS.build(dict(type="naclip"))).__name__ == "NACLIPHead"
    assert MODELS.get("ovdense.no_such_stage") is None
    seen = {}
    for registry in ALL_REGISTRIES:
        assert registry.parent is OVDENSE_MODELS
        for name in names(registry):
            assert name not in seen, f"{name!r} is both a {seen[name]} and a {registry.name}"
            seen[name] = registry.name
