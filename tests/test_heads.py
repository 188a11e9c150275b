"""Each head against an independent slow reference and the official implementations' goldens."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ovdense
from conftest import golden, golden_names

HEADS = ["vanilla", "maskclip", "sclip", "clearclip", "clearclip_repo_default", "naclip"]


def slow_last_block(backbone, x, head: str, sigma: float = 5.0):
    """Last block written from the formulas: per-sample, per-head loops, explicit softmaxes."""
    blk = backbone.last_block
    W, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    n_heads = blk.attn.num_heads
    out = []
    for xb in x:  # [N, C]
        y = F.layer_norm(xb, blk.ln_1.normalized_shape, blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        q, k, v = (y @ W.T + b).chunk(3, dim=-1)
        d = q.shape[-1] // n_heads
        heads = []
        for h in range(n_heads):
            qh, kh, vh = (t[:, h * d:(h + 1) * d] for t in (q, k, v))
            s = 1 / math.sqrt(d)
            if head == "vanilla" or head == "clearclip_repo_default":
                a = torch.softmax(qh @ kh.T * s, dim=-1)
            elif head == "maskclip":
                a = torch.eye(qh.shape[0])
            elif head == "sclip":
                a = torch.softmax(qh @ qh.T * s, -1) + torch.softmax(kh @ kh.T * s, -1)
            elif head == "clearclip":
                a = torch.softmax(qh @ qh.T * s, dim=-1)
            elif head == "naclip":
                n = qh.shape[0]
                gh, gw = grid_of(backbone, n)
                g = torch.zeros(n, n)
                for i in range(1, n):
                    for j in range(1, n):
                        ri, ci = divmod(i - 1, gw)
                        rj, cj = divmod(j - 1, gw)
                        g[i, j] = math.exp(-((ri - rj) ** 2 + (ci - cj) ** 2) / (2 * sigma ** 2))
                a = torch.softmax(kh @ kh.T * s + g, dim=-1)
            heads.append(a @ vh)
        z = torch.cat(heads, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        if head in ("vanilla", "maskclip", "sclip"):
            z = xb + z
            z = z + blk.mlp(F.layer_norm(z, blk.ln_2.normalized_shape, blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps))
        out.append(z)
    return torch.stack(out)


_GRID = {}


def grid_of(backbone, n):
    return _GRID[n]


@pytest.mark.parametrize("head", HEADS)
def test_head_matches_slow_reference_on_non_square_grid(tiny_backbone, head):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 48, 80)  # 3 x 5 patches
    view = tiny_backbone.prefix(x)
    assert view.grid == (3, 5)
    _GRID[view.x.shape[1]] = view.grid
    with torch.no_grad():
        fast = ovdense.build_head(head).tokens(view, tiny_backbone)
        slow = slow_last_block(tiny_backbone, view.x, head)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_batch_of_two_equals_two_single_runs(tiny_backbone, head):
    torch.manual_seed(2)
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head=head, preprocess=dict(short_side=None),
                              windows=dict(crop=0), device="cpu")
    crops = torch.randn(2, 3, 64, 96)
    both = seg.dense_features(crops)
    one = torch.cat([seg.dense_features(crops[:1]), seg.dense_features(crops[1:])])
    assert both.shape == (2, 32, 4, 6)
    torch.testing.assert_close(both, one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.norm(dim=1), torch.ones(2, 4, 6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_explicit_attention_agrees_with_fused_mix(tiny_backbone, head):
    torch.manual_seed(3)
    view = tiny_backbone.prefix(torch.randn(1, 3, 64, 80))
    module = ovdense.build_head(head)
    with torch.no_grad():
        torch.testing.assert_close(module.attention(view) @ view.v, module.mix(view), atol=1e-5, rtol=1e-5)


def test_vanilla_head_reproduces_open_clip(tiny_backbone):
    """Pooled output and projected last-layer tokens equal open_clip's own forward."""
    model = tiny_backbone.model
    torch.manual_seed(4)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        view = tiny_backbone.prefix(images)
        z = tiny_backbone.project(ovdense.build_head("vanilla").tokens(view, tiny_backbone))
        ref_pooled = model.encode_image(images)
        model.visual.output_tokens = True
        try:
            _, ref_tokens = model.visual(images)
        finally:
            model.visual.output_tokens = False
    torch.testing.assert_close(z[:, 0], ref_pooled, atol=1e-5, rtol=1e-5)
    # open_clip returns the ln_post tokens unprojected; the dense features project them
    torch.testing.assert_close(z[:, 1:], ref_tokens @ model.visual.proj, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_vanilla_head_reproduces_open_clip_vit_b16():
    """The same on a random ViT-B-16 (real width, 12 heads, GELU) at 224 px."""
    from ovdense import CLIPBackbone

    torch.manual_seed(5)
    bb = CLIPBackbone.load("ViT-B-16", None)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        z = bb.project(ovdense.build_head("vanilla").tokens(bb.prefix(images), bb))
        ref = bb.model.encode_image(images)
    torch.testing.assert_close(z[:, 0], ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head, golden_name", [
    ("maskclip", "maskclip"), ("sclip", "sclip"), ("clearclip", "clearclip"),
    ("clearclip_repo_default", "clearclip_repo_default"), ("naclip", "naclip")])
def test_head_logits_equal_official_goldens(golden_backbone, golden_inputs, head, golden_name):
    """Same weights in, same logits out: crop, whole-image and sliding-window passes."""
    ref = golden(golden_name)
    q = torch.from_numpy(golden_inputs["Q"])
    for crop, img_key, key in [(0, "crop", "crop_logits"), (0, "img", "whole_logits"), (112, "img", "slide_logits")]:
        seg = ovdense.OVSegmenter(backbone=golden_backbone, head=head, preprocess=dict(short_side=None),
                                  windows=dict(crop=crop, stride=56, pad_to=16 if head.startswith("clearclip") else 0),
                                  device="cpu", text_encoder=dict(cache_dir=""))
        seg.set_classes(golden_names(), embeddings=q)
        feats = seg.encode_normalized([torch.from_numpy(golden_inputs[img_key][0])])[0]
        out = seg.query_logits(feats).numpy()
        assert out.shape == ref[key].shape
        assert abs(out - ref[key]).max() < 1e-5, (head, key, abs(out - ref[key]).max())


def test_naclip_gaussian_is_unnormalised_with_zero_cls():
    from ovdense.heads.naclip import gaussian_addition

    g = gaussian_addition((3, 4), std=5.0)
    assert g.shape == (13, 13)
    assert torch.all(g[0] == 0) and torch.all(g[:, 0] == 0)
    assert torch.allclose(torch.diagonal(g)[1:], torch.ones(12, dtype=g.dtype))
    # patches (0,0) and (2,3): squared distance 4 + 9
    assert abs(g[1, 12].item() - math.exp(-13 / 50)) < 1e-7
