"""The feature-affinity refiner against a slow reference written from its definition."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ovdense
from ovdense.registry import REFINERS, build
from test_contracts import PROVIDER_FOR_TESTS, tiny_segmenter


def reference(logits, feats, steps, dilations, temperature):
    """Pixel loops in float64: replicate borders by clamping indices, the pixel itself first."""
    q, h, w = logits.shape
    f = feats.double()
    f = f / f.norm(dim=0, keepdim=True).clamp_min(1e-12)
    offsets = [(0, 0)] + [(dy * d, dx * d) for d in dilations
                          for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))]
    ys = torch.arange(h)[:, None].expand(h, w)
    xs = torch.arange(w)[None, :].expand(h, w)
    index = [((ys + dy).clamp(0, h - 1), (xs + dx).clamp(0, w - 1)) for dy, dx in offsets]
    a = torch.stack([(f * f[:, iy, ix]).sum(0) for iy, ix in index]) / temperature
    alpha = a.softmax(0)
    m = logits.double()
    for _ in range(steps):
        m = sum(alpha[k] * m[:, iy, ix] for k, (iy, ix) in enumerate(index))
    return m.float()


def test_equals_the_reference_and_does_not_depend_on_the_chunk(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS))
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ctx = seg.encode_image(image, requires=["dino"])
    band = ctx.band((0, 40), (40, 30))
    torch.manual_seed(0)
    logits = torch.randn(4, 40, 30)
    outs = []
    for chunk in (7, 48, 1000):
        refiner = build(REFINERS, dict(type="feature_affinity", steps=3, dilations=(1, 4), temperature=0.2,
                                       chunk=chunk))
        outs.append(refiner(logits, band))
    ref = reference(logits, band.map("dino"), 3, (1, 4), 0.2)
    for out in outs:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (outs[0] - logits).abs().max() > 1e-2  # it does propagate


def test_depends_on_the_features_and_needs_its_provider(tiny_backbone):
    image = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    spec = dict(type="feature_affinity", steps=2, dilations=(2,), temperature=0.05)
    a = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS), refiners=[spec])
    b = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS), refiners=[spec])
    torch.manual_seed(5)
    for param in b.features["dino"].parameters():
        torch.nn.init.normal_(param, std=0.05)
    diff = np.abs(a.predict(image, return_scores=True).scores - b.predict(image, return_scores=True).scores).max()
    assert diff > 1e-4
    with pytest.raises(ValueError, match="FeatureAffinityRefiner needs the feature provider"):
        tiny_segmenter(tiny_backbone, refiners=[spec])
    with pytest.raises(ValueError, match="temperature"):
        build(REFINERS, dict(type="feature_affinity", temperature=0))
    vfm = tiny_segmenter(tiny_backbone, features=dict(vfm=PROVIDER_FOR_TESTS),
                         refiners=[dict(spec, source="vfm")])
    assert vfm.predict(image).label_map.shape == (48, 40)


def test_works_after_proxyclip_at_the_model_resolution(tiny_backbone):
    """With refine_at='model' the refiner runs once on the canvas, reading the same provider the
    proxyclip head reads."""
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="proxyclip", features=dict(vfm=PROVIDER_FOR_TESTS),
                              refiners=[dict(type="feature_affinity", source="vfm", steps=2, dilations=(2,))],
                              refine_at="model", preprocess=dict(short_side=32), windows=dict(crop=32, stride=16),
                              device="cpu", text_encoder=dict(cache_dir=""))
    seg.set_classes(["a", "b"], embeddings=torch.randn(2, tiny_backbone.embed_dim))
    res = seg.predict(np.random.default_rng(2).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    assert res.label_map.shape == (80, 120) and res.timings["refine"] > 0
