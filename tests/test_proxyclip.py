"""ProxyCLIP: the official golden, a reference written from the formulas, the quirk switches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ovdense
from conftest import golden
from ovdense.registry import FEATURES, build

P8 = dict(type="timm_vit", model_name="vit_small_patch8_224", model_kwargs=dict(depth=2, embed_dim=32, num_heads=2))


def test_proxyclip_equals_the_official_golden(golden_backbone):
    """Official ``encode_image(x, external_feats=vfm, beta=1.2, gamma=3.0)`` on the tiny OpenAI CLIP:
    the projected features on the 14 x 14 VFM grid, equal after normalisation to 1e-5."""
    ref = golden("proxyclip")
    head = ovdense.build_head("proxyclip").eval()
    x, vfm = torch.from_numpy(ref["x"]), torch.from_numpy(ref["vfm"])
    with torch.no_grad():
        out = head(golden_backbone.prefix(x), golden_backbone, {"vfm": vfm})
    expected = F.normalize(torch.from_numpy(ref["feats"]), dim=-1).T.reshape(1, -1, 14, 14)
    assert out.grid == (14, 14)
    assert (out.features - expected).abs().max() < 1e-5


def reference(backbone, crops, vfm, beta=1.2, gamma=3.0):
    """ProxyCLIP window by window from the formulas, with the last block's own weights (not the
    BlockView's projections): explicit cosines, threshold, mask, softmax, bilinear values."""
    block = backbone.visual.transformer.resblocks[-1]
    attn = block.attn
    outs = []
    for i in range(len(crops)):
        view = backbone.prefix(crops[i:i + 1])
        y = block.ln_1(view.x[0])                                      # [N, C]
        width = y.shape[-1]
        v = y @ attn.in_proj_weight[2 * width:].T + attn.in_proj_bias[2 * width:]
        heads = attn.num_heads
        h, w = view.grid
        _, c, rows, cols = vfm[i:i + 1].shape
        f = vfm[i].reshape(c, -1)
        f = f / f.norm(dim=0, keepdim=True)
        s = f.T @ f
        s = (s - s.mean() * beta) * gamma
        s[s < 0] = float("-inf")
        a = torch.softmax(s, dim=-1)
        per_head = []
        for hd in range(heads):
            vh = v[1:, hd * (width // heads):(hd + 1) * (width // heads)].T.reshape(1, -1, h, w)
            vh = F.interpolate(vh, size=(rows, cols), mode="bilinear", align_corners=False)[0]
            per_head.append(a @ vh.reshape(vh.shape[0], -1).T)
        z = attn.out_proj(torch.cat(per_head, dim=-1))
        feats = backbone.visual.ln_post(z) @ backbone.visual.proj
        outs.append(F.normalize(feats, dim=-1).T.reshape(1, -1, rows, cols))
    return torch.cat(outs)


def test_proxyclip_equals_a_reference_from_the_formulas_on_non_square_batched_windows(tiny_backbone):
    torch.manual_seed(0)
    provider = build(FEATURES, P8).eval()
    crops = torch.randn(3, 3, 48, 80)
    raw = torch.randint(0, 256, (3, 3, 48, 80), dtype=torch.uint8)
    head = ovdense.build_head("proxyclip").eval()
    with torch.no_grad():
        vfm = provider(raw)
        out = head(tiny_backbone.prefix(crops), tiny_backbone, {"vfm": vfm})
        ref = reference(tiny_backbone, crops, vfm)
    assert out.grid == (6, 10) == head.output_grid((48, 80), tiny_backbone, {"vfm": provider})
    torch.testing.assert_close(out.features, ref, atol=1e-5, rtol=1e-5)


def test_quirk_switches(tiny_backbone):
    """``threshold_mean="batch"`` couples windows (as a batched official call), ``"window"`` does
    not; ``official_nonsquare`` changes nothing on square windows and reproduces the official
    reshapes (rows x rows grid) on non-square ones."""
    torch.manual_seed(1)
    provider = build(FEATURES, P8).eval()
    raw = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    raw[1] = raw[1] // 8  # a darker second window: another mean affinity
    crops = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        vfm = provider(raw)
        view = tiny_backbone.prefix(crops)
        window = ovdense.build_head("proxyclip")(view, tiny_backbone, {"vfm": vfm}).features
        batch = ovdense.build_head(dict(type="proxyclip", threshold_mean="batch"))(view, tiny_backbone,
                                                                                  {"vfm": vfm}).features
        single = ovdense.build_head(dict(type="proxyclip", threshold_mean="batch"))(
            tiny_backbone.prefix(crops[:1]), tiny_backbone, {"vfm": vfm[:1]}).features
        official = ovdense.build_head(dict(type="proxyclip", official_nonsquare=True))(view, tiny_backbone,
                                                                                      {"vfm": vfm}).features
    torch.testing.assert_close(single, window[:1], atol=1e-6, rtol=0)
    assert (batch - window).abs().max() > 1e-3
    torch.testing.assert_close(official, window, atol=0, rtol=0)
    wide = torch.randint(0, 256, (1, 3, 48, 96), dtype=torch.uint8)  # 6 x 12 VFM tokens, 3 x 6 CLIP patches
    head = ovdense.build_head(dict(type="proxyclip", official_nonsquare=True))
    with torch.no_grad():
        crops = torch.randn(1, 3, 48, 96)
        out = head(tiny_backbone.prefix(crops), tiny_backbone, {"vfm": provider(wide)})
        intended = ovdense.build_head("proxyclip")(tiny_backbone.prefix(crops), tiny_backbone, {"vfm": provider(wide)})
    assert out.grid == (6, 6) == head.output_grid((48, 96), tiny_backbone, {"vfm": provider})
    assert intended.grid == (6, 12)
    assert torch.isfinite(batch).all()
    with pytest.raises(ValueError, match="threshold_mean"):
        ovdense.build_head(dict(type="proxyclip", threshold_mean="image"))


def test_a_token_without_positive_affinity_attends_to_itself():
    """A uniform window (every cosine 1 > 1 / beta): the official softmax of an all -inf row is NaN;
    the default lets each token keep its own value, ``empty_rows="nan"`` keeps the NaN."""
    vfm = torch.ones(1, 8, 3, 4)
    weights = ovdense.build_head("proxyclip").affinity(vfm)
    torch.testing.assert_close(weights[0], torch.eye(12))
    assert torch.isnan(ovdense.build_head(dict(type="proxyclip", empty_rows="nan")).affinity(vfm)).all()
    mixed = torch.randn(1, 8, 3, 4)
    torch.testing.assert_close(ovdense.build_head(dict(type="proxyclip", empty_rows="nan")).affinity(mixed),
                               ovdense.build_head("proxyclip").affinity(mixed))


def test_proxyclip_segments_through_the_segmenter_with_a_provider(tiny_backbone):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="proxyclip", features=dict(vfm=P8),
                              preprocess=dict(short_side=None), windows=dict(crop=48, stride=32, pad_to=16),
                              device="cpu", text_encoder=dict(cache_dir=""))
    seg.set_classes(["a", "b", "c"], embeddings=torch.randn(3, tiny_backbone.embed_dim))
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    res = seg.predict(image, return_scores=True)
    assert res.label_map.shape == (60, 90) and np.isfinite(res.scores).all()
    ctx = seg.encode_image(image)
    assert ctx.features.shape[-2:] == (6, 6)  # 48 px windows on the patch-8 grid
    with pytest.raises(ValueError, match="feature provider"):
        ovdense.OVSegmenter(backbone=tiny_backbone, head="proxyclip", device="cpu")
