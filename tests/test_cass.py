"""CASS: the official goldens (tools/make_cass_golden.py), a reference from the formulas, the parts
(Ward clusters, Hungarian, randomised SVD, DINO input), the quirk switches and the segmenter seam."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ovdense
from conftest import GOLDENS, golden
from ovdense.features.timm_vit import cass_denorm, pil_square
from ovdense.heads.cass import (min_cost_assignment, randomized_lowrank, spectral_distance, top_eigenvalues,
                                ward_clusters)
from ovdense.registry import FEATURES, build

CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
#: The tiny official DINO of the goldens, as a timm provider of its last block's keys.
TINY_DINO = dict(type="timm_vit", model_name="vit_base_patch8_224.dino", pos_interp="dino", output="k",
                 denorm="cass_official", square_input=True,
                 model_kwargs=dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, img_size=112))
#: golden case -> (input, crop (0: whole image), head kwargs); see tools/make_cass_golden.py CASES.
CASES = {
    "whole_square": ("crop", 0, dict(global_weight=0.1, mean_vector_weight=0.3, h_threshold=0.9)),
    "whole_wide": ("img", 0, dict(global_weight=0.4, mean_vector_weight=0.2, h_threshold=1.0, scale_singular=False)),
    "slide": ("img", 112, dict(global_weight=0.25, mean_vector_weight=0.4, h_threshold=1.05)),
    "slide_stream": ("img", 112, dict(global_weight=0.25, mean_vector_weight=0.4, h_threshold=1.05, rng="stream")),
    "slide_city": ("img", 112, dict(global_weight=0.1, mean_vector_weight=0.3, h_threshold=0.5, scale_singular=False,
                                    global_source="window")),
    "whole_square_right": ("crop", 0, dict(global_weight=0.1, mean_vector_weight=0.3, h_threshold=0.9)),
    "slide_right": ("img", 112, dict(global_weight=0.25, mean_vector_weight=0.4, h_threshold=1.05)),
}


def to_uint8(x):
    return np.clip(np.rint(x[0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def tiny_dino_provider():
    provider = build(FEATURES, TINY_DINO).eval()
    state = {k: torch.from_numpy(v).float() for k, v in np.load(GOLDENS / "cass_tiny_dino.npz").items()}
    provider.model.load_state_dict(state)
    return provider


def segmenter(backbone, crop, **head):
    seg = ovdense.OVSegmenter(backbone=backbone, head=dict(type="cass", **head), features=dict(dino=TINY_DINO),
                              preprocess=dict(short_side=None), windows=dict(crop=crop, stride=56), device="cpu",
                              text_encoder=dict(cache_dir=""))
    seg.features["dino"] = tiny_dino_provider()
    return seg


def official_inputs(golden_inputs, src):
    u8 = to_uint8(golden_inputs[src])
    x = (torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD)
    return x, torch.from_numpy(u8)


def replay_official_matches(monkeypatch, ref, case):
    """The head's Hungarian step returns the official pick of each window, after checking that the
    cost matrix it was given is the official one. With two heads every assignment costs the same in
    exact arithmetic (the spectra never cross, so ``W[i, j]`` separates into ``a_i - b_j``), and the
    official pick follows float rounding (cost differences of 1e-8)."""
    import ovdense.heads.cass as cass

    costs, perms = list(ref[f"{case}_cost"]), list(ref[f"{case}_perm"])

    def replay(cost):
        np.testing.assert_allclose(cost, costs.pop(0), atol=1e-6, rtol=0)
        return perms.pop(0)

    monkeypatch.setattr(cass, "min_cost_assignment", replay)
    return perms


@pytest.mark.parametrize("case", sorted(CASES))
def test_cass_equals_the_official_golden(case, golden_backbone, golden_inputs, monkeypatch):
    """Official ``forward_feature`` (whole image) / ``forward_slide`` (112 / 56) on the tiny CLIP and
    tiny DINO, fp32 DINO keys: the logits at the resized image's size, equal to 2e-6 (the official
    head matches replayed, see :func:`replay_official_matches`)."""
    src, crop, head = CASES[case]
    ref = golden("cass")
    left = replay_official_matches(monkeypatch, ref, case)
    form = "right" if case.endswith("_right") else "left"
    seg = segmenter(golden_backbone, crop, lowrank_form=form, **head)
    x, u8 = official_inputs(golden_inputs, src)
    ctx = seg.encode_normalized([x], raw=[u8])[0]
    got = seg.canvas_logits(ctx, torch.from_numpy(golden_inputs["Q"]))
    assert tuple(got.shape[-2:]) == tuple(x.shape[-2:])
    expected = torch.from_numpy(ref[case])
    assert (got[:, 1::4, 1::4] - expected).abs().max() < 2e-6  # measured: 3.2e-7 at most
    assert not left  # one match per window
    groups = seg.head.query_groups(F.normalize(torch.from_numpy(golden_inputs["Q"]), dim=-1))
    labels = np.empty(7, dtype=np.int64)
    for g, idx in enumerate(groups):
        labels[idx] = g
    official = ref[f"{case}_clusters"]
    assert all(len(set(official[labels == g])) == 1 for g in range(len(groups)))
    assert len(groups) == len(set(official.tolist()))


def test_the_golden_cases_differ_where_the_switches_matter(golden_inputs):
    """The goldens are not vacuous: the torch 1.10 / newer low-rank forms, the per-window / stream
    RNG and the Cityscapes variant all move the logits."""
    ref = golden("cass")
    assert np.abs(ref["whole_square"] - ref["whole_square_right"]).max() > 1e-4
    assert np.abs(ref["slide"] - ref["slide_right"]).max() > 1e-4
    assert np.abs(ref["slide"] - ref["slide_stream"]).max() > 1e-5
    assert np.abs(ref["slide"] - ref["slide_city"]).max() > 1e-3


# ---------------------------------------------------------------------------------- parts
def test_ward_clusters_equal_scipy_fcluster():
    """Ward linkage on cosine distances cut at a threshold: the partitions of scipy's
    ``fcluster(linkage(squareform(cosine_distances(T)), 'ward'), t, 'distance')``."""
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(0)
    for trial in range(6):
        base = rng.normal(size=(5, 16))
        text = np.repeat(base, 4, axis=0) + rng.normal(scale=0.3 + 0.2 * trial, size=(20, 16))
        x = text / np.linalg.norm(text, axis=1, keepdims=True)
        dist = np.clip(1 - x @ x.T, 0, 2)
        np.fill_diagonal(dist, 0)
        z = hierarchy.linkage(squareform((dist + dist.T) / 2, checks=False), method="ward")
        for t in (0.0, 0.3, 0.8, 1.2, 5.0):
            ours = ward_clusters(torch.from_numpy(text), t)
            theirs = hierarchy.fcluster(z, t=t, criterion="distance")
            pairs = ours[:, None] == ours[None, :]
            assert (pairs == (theirs[:, None] == theirs[None, :])).all(), (trial, t)


def test_hungarian_equals_scipy():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 12):
        for _ in range(10):
            cost = rng.normal(size=(n, n)).astype(np.float32)
            np.testing.assert_array_equal(min_cost_assignment(cost), optimize.linear_sum_assignment(cost)[1])


def test_randomized_lowrank_is_torch_svd_lowrank_with_a_given_test_matrix():
    """``form="left"`` is the installed torch's ``svd_lowrank`` after ``torch.manual_seed`` (same
    draws); ``"right"`` (torch 1.10) is its transpose on a symmetric graph."""
    k = torch.randn(30, 8, dtype=torch.float64)
    a = k @ k.T
    torch.manual_seed(3)
    u, s, v = torch.svd_lowrank(a, q=10)
    r = torch.randn(30, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u2, s2, v2 = randomized_lowrank(a, r, form="left")
    torch.testing.assert_close(u2 @ torch.diag(s2) @ v2.T, u @ torch.diag(s) @ v.T, rtol=0, atol=1e-10)
    u3, s3, v3 = randomized_lowrank(a, r, form="right")
    torch.testing.assert_close(u3 @ torch.diag(s3) @ v3.T, (u @ torch.diag(s) @ v.T).T, rtol=0, atol=1e-10)
    asym = a + 0.1 * torch.randn(30, 30, dtype=torch.float64)
    left, right = (randomized_lowrank(asym, r, form=f) for f in ("left", "right"))
    assert (left[0] @ torch.diag(left[1]) @ left[2].T - right[0] @ torch.diag(right[1]) @ right[2].T).abs().max() > 1e-3


def test_spectral_distance_formula():
    d, c = torch.rand(3, 5, dtype=torch.float64), torch.rand(2, 5, dtype=torch.float64)
    w = spectral_distance(d, c)
    for i in range(3):
        for j in range(2):
            p = d[i] / d[i].norm()
            p = torch.sort(p / p.sum()).values
            q = c[j] / c[j].norm()
            q = torch.sort(q / q.sum()).values
            assert abs(float(w[i, j]) - float((p - q).abs().sum())) < 1e-12
    g = torch.randn(2, 6, 6, dtype=torch.float64)
    g = g @ g.mT
    torch.testing.assert_close(top_eigenvalues(g, 3), torch.linalg.eigvalsh(g).flip(-1)[:, :3])


def test_cass_denorm_is_the_official_dino_image():
    """``denorm="cass_official"``: torchvision's ``Normalize(-m/s, 1/s)`` with the 0.255 typo applied to
    the mmseg-normalised image, times 255, truncated; ``"cass"`` fixes only the blue channel."""
    u8 = torch.randint(0, 256, (2, 3, 9, 11), dtype=torch.uint8)
    x = (u8.float() - torch.tensor([122.771, 116.746, 104.094]).view(1, 3, 1, 1)) / \
        torch.tensor([68.501, 66.632, 70.323]).view(1, 3, 1, 1)
    from torchvision import transforms

    inv = transforms.Normalize(mean=[-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.255],
                               std=[1 / 0.229, 1 / 0.224, 1 / 0.255])
    expected = np.stack([(inv(xi).permute(1, 2, 0).numpy() * 255).astype("uint8") for xi in x])
    got = cass_denorm(u8, (0.229, 0.224, 0.255))
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), expected)
    fixed = cass_denorm(u8, (0.229, 0.224, 0.225))
    assert torch.equal(fixed[:, :2], got[:, :2]) and not torch.equal(fixed[:, 2], got[:, 2])
    assert 0 < int(got.min()) and int(got.max()) < 255  # contrast shrinks: nothing saturates


def test_pil_square_resizes_non_square_windows_only():
    from PIL import Image

    u8 = torch.randint(0, 256, (1, 3, 24, 40), dtype=torch.uint8)
    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    pil = Image.fromarray(u8[0].permute(1, 2, 0).numpy()).resize((24, 24), bicubic)
    np.testing.assert_array_equal(pil_square(u8)[0].permute(1, 2, 0).numpy(), np.asarray(pil))
    square = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert pil_square(square) is square


@pytest.mark.parametrize("pos_interp", ["timm", "dino"])
def test_timm_vit_key_output_is_the_last_blocks_qkv(pos_interp):
    """``output="q"|"k"|"v"``: the last block's ``attn.qkv`` of its input (captured by a forward hook on
    timm's own forward), patch tokens, channel ``head * head_dim + d``; ``output_grid`` follows
    ``square_input``."""
    spec = dict(type="timm_vit", model_name="vit_small_patch8_224", pos_interp=pos_interp,
                model_kwargs=dict(depth=2, embed_dim=32, num_heads=2))
    torch.manual_seed(0)
    tokens = build(FEATURES, spec).eval()
    raw = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    captured = []
    blk = tokens.model.blocks[-1]
    handle = blk.attn.qkv.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        tokens(raw)
    handle.remove()
    qkv = captured[0].reshape(2, 1 + 4 * 6, 3, 2, 16)[:, 1:]  # [B, N, 3, heads, d]
    for which, index in (("q", 0), ("k", 1), ("v", 2)):
        provider = build(FEATURES, dict(spec, output=which)).eval()
        provider.load_state_dict(tokens.state_dict())
        with torch.no_grad():
            out = provider(raw)
        expected = qkv[:, :, index].permute(0, 2, 3, 1).reshape(2, 32, 4, 6)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    square = build(FEATURES, dict(spec, output="k", square_input=True)).eval()
    assert square.output_grid((32, 48)) == (4, 4)
    with torch.no_grad():
        assert square(raw).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="output"):
        build(FEATURES, dict(spec, output="attention"))
    with pytest.raises(ValueError, match="denorm"):
        build(FEATURES, dict(spec, denorm="imagenet"))


# ---------------------------------------------------------------------------------- reference
def reference_window(backbone, crop, dino_keys, perm, global_vec, text, gw=0.2, a=0.3, groups=None, seed=0,
                     stretch=True, std=5.0):
    """One window of CASS from the formulas, with the head pairing ``perm`` given: CLIP's last block
    re-computed from its own weights, explicit loops, ``torch.svd_lowrank`` on the global RNG."""
    blk = backbone.visual.transformer.resblocks[-1]
    view = backbone.prefix(crop[None])
    y = blk.ln_1(view.x[0])
    width = y.shape[-1]
    heads = blk.attn.num_heads
    d = width // heads
    k = (y @ blk.attn.in_proj_weight[width:2 * width].T + blk.attn.in_proj_bias[width:2 * width])[1:]
    v = (y @ blk.attn.in_proj_weight[2 * width:].T + blk.attn.in_proj_bias[2 * width:])[1:]
    h, w = view.grid
    n = h * w
    k = k.reshape(n, heads, d).transpose(0, 1)
    v = v.reshape(n, heads, d).transpose(0, 1)
    c = dino_keys.shape[0]
    dk = F.interpolate(dino_keys.reshape(heads, c // heads, *dino_keys.shape[-2:]), size=(h, w), mode="bilinear",
                       align_corners=False).reshape(heads, c // heads, n).transpose(1, 2)
    dk = (dk - dk.min()) / (dk.max() - dk.min()) * (k.max() - k.min()) + k.min()
    s = d ** -0.5
    clip_g = [k[i] @ k[i].T * s for i in range(heads)]
    dino_g = [dk[i] @ dk[i].T * s for i in range(heads)]

    def spectrum(g):
        e = torch.linalg.eigvalsh(g.double()).flip(0)[:20]
        e = e / e.norm()
        return torch.sort(e / e.abs().sum()).values

    torch.manual_seed(seed)
    rows, ci, cj = torch.arange(h * w) // w, torch.arange(h * w) % w, None
    cj = ci
    gauss = torch.exp(-((rows[:, None] - rows[None]) ** 2 + (cj[:, None] - cj[None]) ** 2) / (2 * std ** 2)).float()
    outs = []
    for i in range(heads):
        j = perm[i]
        wd = float((spectrum(dino_g[i]) - spectrum(clip_g[j])).abs().sum())
        u, sv, vv = torch.svd_lowrank(dino_g[j].double(), q=10)
        if stretch:
            sv = (sv - sv.min()) / (sv.max() - sv.min()) * (1.5 * sv.max() - 0.5 * sv.min()) + 0.5 * sv.min()
        approx = u @ torch.diag(sv) @ vv.T
        approx.fill_diagonal_(0)
        cg = clip_g[i].double()
        approx = (approx - approx.min()) / (approx.max() - approx.min()) * (cg.max() - cg.min()) + cg.min()
        fused = ((10 * wd * approx + cg) / (10 * wd + 1)).float()
        outs.append(torch.softmax(fused + gauss, dim=-1) @ v[i])
    z = blk.attn.out_proj(torch.cat(outs, dim=-1))
    f = F.normalize(backbone.visual.ln_post(z) @ backbone.visual.proj, dim=-1)  # [n, D]
    g_sim = global_vec @ text.T
    adjusted = text.clone()
    for group in groups:
        best = group[int(torch.argmax(g_sim[group]))]
        t = text[best]
        top = torch.topk(f @ t, 2).indices
        m = F.normalize(f[top].mean(0), dim=0)
        adjusted[best] = F.normalize((1 - a) * t + a * m, dim=0)
    logits = (f @ adjusted.T) * (1 - gw) + g_sim[None] * gw
    return logits.T.reshape(-1, h, w)


@pytest.mark.parametrize("perm", [(0, 1), (1, 0)])
def test_cass_equals_a_reference_from_the_formulas(perm, tiny_backbone, monkeypatch):
    """Head + ``window_logits`` on two non-square windows (the Hungarian pick given), against the
    reference written from the paper's / official formulas; each window's own CLS as the prior."""
    import ovdense.heads.cass as cass

    monkeypatch.setattr(cass, "min_cost_assignment", lambda cost: np.array(perm))
    torch.manual_seed(0)
    crops = torch.randn(2, 3, 64, 80)
    dino = torch.randn(2, 32, 8, 10)
    text = F.normalize(torch.randn(5, tiny_backbone.embed_dim), dim=-1)
    head = ovdense.build_head(dict(type="cass", global_weight=0.2, mean_vector_weight=0.3, h_threshold=1.0,
                                   global_source="window", lowrank_form="left")).eval()
    with torch.no_grad():
        out = head(tiny_backbone.prefix(crops), tiny_backbone, {"dino": dino})
        ctx = type("Ctx", (), dict(features=out.features, extras=out.extras, whole=False))()
        got = head.window_logits(ctx, text, tiny_backbone)
        groups = head.query_groups(text)
        for i in range(2):
            g = out.extras["cass_cls"][i, :, 0, 0]
            ref = reference_window(tiny_backbone, crops[i], dino[i], perm, g, text, groups=groups)
            torch.testing.assert_close(got[i], ref, atol=2e-5, rtol=1e-5)
    assert len(groups) < 5  # some queries share a group at this threshold


# ---------------------------------------------------------------------------------- switches
def _features(head, backbone, crops, dino):
    with torch.no_grad():
        return head(backbone.prefix(crops), backbone, {"dino": dino}).features


def test_quirk_switches(tiny_backbone, monkeypatch):
    """``rng="window"`` makes a batch equal to single windows and repeatable; ``"stream"`` draws on
    (``reset_rng`` restarts it); ``official_pairing`` only matters for a swapped match; the energy
    rank, the stretch and the low-rank form change the result; small windows (n < rank) run."""
    import ovdense.heads.cass as cass

    torch.manual_seed(0)
    crops, dino = torch.randn(2, 3, 64, 64), torch.randn(2, 32, 8, 8)
    build = ovdense.build_head
    base = _features(build("cass"), tiny_backbone, crops, dino)
    torch.testing.assert_close(base[1:], _features(build("cass"), tiny_backbone, crops[1:], dino[1:]),
                               atol=1e-6, rtol=0)
    stream = build(dict(type="cass", rng="stream"))
    first = _features(stream, tiny_backbone, crops[:1], dino[:1])
    again = _features(stream, tiny_backbone, crops[:1], dino[:1])
    torch.testing.assert_close(first, base[:1], atol=1e-6, rtol=0)  # a fresh stream = the window seed
    assert (first - again).abs().max() > 1e-7
    stream.reset_rng()
    torch.testing.assert_close(_features(stream, tiny_backbone, crops[:1], dino[:1]), first, atol=0, rtol=0)
    assert (_features(build(dict(type="cass", seed=5)), tiny_backbone, crops, dino) - base).abs().max() > 1e-7
    for kwargs in (dict(rank_rule="energy", rank=20), dict(scale_singular=False), dict(lowrank_form="left"),
                   dict(attn_strategy="sequential"), dict(attn_strategy="vanilla")):
        assert (_features(build(dict(type="cass", **kwargs)), tiny_backbone, crops, dino) - base).abs().max() > 1e-5

    monkeypatch.setattr(cass, "min_cost_assignment", lambda cost: np.array([0, 1]))
    same = [_features(build(dict(type="cass", official_pairing=p)), tiny_backbone, crops, dino) for p in (True, False)]
    torch.testing.assert_close(same[0], same[1], atol=0, rtol=0)
    monkeypatch.setattr(cass, "min_cost_assignment", lambda cost: np.array([1, 0]))
    swap = [_features(build(dict(type="cass", official_pairing=p)), tiny_backbone, crops, dino) for p in (True, False)]
    assert (swap[0] - swap[1]).abs().max() > 1e-5

    small = _features(build("cass"), tiny_backbone, torch.randn(1, 3, 32, 48), torch.randn(1, 32, 4, 6))
    assert small.shape[-2:] == (2, 3) and torch.isfinite(small).all()  # 6 patches < rank 10
    with pytest.raises(ValueError, match="rng"):
        build(dict(type="cass", rng="global"))
    with pytest.raises(ValueError, match="heads"):
        _features(build("cass"), tiny_backbone, crops, torch.randn(2, 33, 8, 8))


# ---------------------------------------------------------------------------------- the seam
def _seg(backbone, head, crop=32, **kwargs):
    torch.manual_seed(0)
    seg = ovdense.OVSegmenter(backbone=backbone, head=head, features=dict(dino=dict(TINY_DINO, model_kwargs=dict(
        embed_dim=32, depth=1, num_heads=2, img_size=32))), preprocess=dict(short_side=None),
        windows=dict(crop=crop, stride=16), device="cpu", text_encoder=dict(cache_dir=""), **kwargs)
    torch.manual_seed(1)
    seg.set_classes(["bg", "a", "b, b2", "c"], background="first", embeddings=torch.randn(5, backbone.embed_dim))
    return seg


def test_segmenter_scores_windows_through_the_heads_window_logits(tiny_backbone):
    """The head's contexts score text with ``head.window_logits`` (not plain cosines):
    ``canvas_logits`` of the segmenter and of the context (what region scorers read) stitch it;
    ``predict`` decodes those logits; ``predict_heads`` uses each head's own scorer; the image
    prior (``global_source="image"``) is the CLS of the whole resized image."""
    seg = _seg(tiny_backbone, dict(type="cass", global_weight=0.3, mean_vector_weight=0.2, h_threshold=0.5))
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    text = seg.encoded_vocabulary.text
    expected = ctx.to_canvas(seg.head.window_logits(ctx, text, seg.backbone))
    got = seg.canvas_logits(ctx, seg.encoded_vocabulary)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    torch.testing.assert_close(ctx.canvas_logits(text), expected, atol=0, rtol=0)
    cosines = ctx.to_canvas(torch.einsum("ndhw,qd->nqhw", ctx.features, text))
    assert (got - cosines).abs().max() > 1e-3  # not the plain cosines
    with torch.no_grad():
        view = seg.backbone.prefix(ctx.guide[None])
        cls = seg.backbone.project(seg.backbone.run_blocks(view.x, [seg.backbone.last_block])[:, :1])[0, 0]
    torch.testing.assert_close(seg.head.image_cls(ctx, seg.backbone), F.normalize(cls, dim=0), atol=1e-6, rtol=0)
    res = seg.predict(ctx, return_scores=True)
    probs = seg.decoder.probabilities(F.interpolate(got[None], size=(40, 56), mode="bilinear",
                                                    align_corners=False)[0],
                                      seg.encoded_vocabulary.query_to_class, 4, None, seg.vocabulary)
    np.testing.assert_allclose(res.scores, probs.numpy(), atol=1e-5)
    both = seg.predict_heads(image, ["cass", "naclip"])
    plain = seg.predict_heads(image, ["naclip"])["naclip"]
    np.testing.assert_array_equal(both["naclip"].label_map, plain.label_map)
    default = _seg(tiny_backbone, "cass").predict(image)
    np.testing.assert_array_equal(both["cass"].label_map, default.label_map)


def test_whole_image_logits_go_through_the_resized_image(tiny_backbone):
    """Whole-image mode: ``whole_resize="canvas"`` (official) resizes the window logits to the resized
    image first; ``None`` keeps the patch grid; the prior is the image's own CLS either way."""
    seg = _seg(tiny_backbone, "cass", crop=0)
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    text = seg.encoded_vocabulary.text
    canvas = seg.canvas_logits(ctx, seg.encoded_vocabulary)
    assert canvas.shape == (5, 40, 56)
    grid = ovdense.build_head(dict(type="cass", whole_resize=None)).window_logits(ctx, text, seg.backbone)
    assert grid.shape == (1, 5, 2, 3)
    torch.testing.assert_close(canvas, F.interpolate(grid, size=(40, 56), mode="bilinear", align_corners=False)[0])
    assert seg.predict(image).label_map.shape == (40, 56)
