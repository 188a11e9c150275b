"""CLIP adapter: loading rules, positional-embedding interpolation, errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ovdense
from ovdense import CLIPBackbone, WeightsNotFoundError
from conftest import GOLDENS


def test_openai_state_dict_loads_like_openai_tag(golden_backbone):
    """A local OpenAI-format file builds with QuickGELU and its own architecture."""
    import open_clip

    blk = golden_backbone.model.visual.transformer.resblocks[0]
    assert isinstance(blk.mlp.gelu, open_clip.transformer.QuickGELU)
    assert golden_backbone.patch_size == (16, 16) and golden_backbone.native_grid == (7, 7)
    assert golden_backbone.embed_dim == 64 and golden_backbone.num_heads == 2
    ref = open_clip.load_openai_model(str(GOLDENS / "tiny_openai_clip.pt"), precision="fp32", device="cpu")
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(golden_backbone.model.encode_image(x), ref.encode_image(x))


def test_state_dict_saved_by_open_clip_loads_with_named_architecture(tiny_backbone, tmp_path):
    from conftest import TINY_CONFIG

    path = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    again = CLIPBackbone.load(str(TINY_CONFIG), str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.model.encode_image(x), tiny_backbone.model.encode_image(x))


def test_openai_tag_forces_quick_gelu(monkeypatch):
    """open_clip 3.x builds GELU for ('ViT-B-16', 'openai') and only warns; we follow the tag."""
    import open_clip

    seen = {}

    def fake_create_model(name, pretrained=None, **kwargs):
        seen.update(kwargs, name=name, pretrained=pretrained)
        raise RuntimeError("offline")

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    with pytest.raises(WeightsNotFoundError) as err:
        CLIPBackbone.load("ViT-B-16", "openai")
    assert seen["force_quick_gelu"] is True and seen["pretrained"] == "openai"
    message = str(err.value)
    assert "'openai'" in message and "ViT-B-16" in message and "local file" in message


def test_missing_local_file_and_unknown_tag_are_named(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        CLIPBackbone.load("ViT-B-16", str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsNotFoundError, match="not_a_tag"):
        CLIPBackbone.load("ViT-B-16", "not_a_tag")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        CLIPBackbone.load("ViT-Q-99", None)


def _reference_interpolation(pe, h_px, w_px, patch):
    """The reference methods' interpolate_pos_encoding, written out."""
    n = pe.shape[0] - 1
    g = int(math.sqrt(n))
    if (h_px // patch) * (w_px // patch) == n and h_px == w_px:
        return pe
    h0, w0 = h_px // patch + 0.1, w_px // patch + 0.1
    grid = pe[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(h0 / g, w0 / g), mode="bicubic")
    return torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(-1, pe.shape[1])])


@pytest.mark.parametrize("size", [(112, 112), (168, 224), (336, 448), (120, 112), (100, 170)])
def test_scale_factor_interpolation_matches_reference_call(golden_backbone, size):
    pe = golden_backbone.visual.positional_embedding.detach()
    ours = golden_backbone.positional_embedding(size)
    torch.testing.assert_close(ours, _reference_interpolation(pe, *size, 16))


def test_size_mode_differs_from_scale_factor_mode(tiny_backbone):
    pe = tiny_backbone.visual.positional_embedding.detach()
    sized = CLIPBackbone(tiny_backbone.model, pos_interp="size").positional_embedding((96, 128))
    scaled = tiny_backbone.positional_embedding((96, 128))
    grid = pe[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expect = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(sized[1:], expect.permute(0, 2, 3, 1).reshape(48, -1))
    assert (sized - scaled).abs().max() > 1e-3


def test_prefix_exposes_last_block_inputs(tiny_backbone):
    x = torch.randn(2, 3, 64, 96)
    view = tiny_backbone.prefix(x)
    assert view.grid == (4, 6) and view.input_size == (64, 96)
    assert view.x.shape == (2, 25, 64) and view.q.shape == (2, 2, 25, 32)
    blk = tiny_backbone.last_block
    y = blk.ln_1(view.x)
    ref_k = F.linear(y, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, -1)[1]
    torch.testing.assert_close(view.k.transpose(1, 2).reshape(2, 25, 64), ref_k)


def test_floor_drops_leftover_pixels(tiny_backbone):
    """Like the references' conv1, a 70x90 input uses 4x5 patches: the leftover pixels are ignored."""
    x = torch.randn(1, 3, 70, 90)
    y = x.clone()
    y[..., 64:, :] = 0
    y[..., :, 80:] = 0
    assert tiny_backbone.prefix(x).grid == (4, 5)
    torch.testing.assert_close(tiny_backbone.embed(x), tiny_backbone.embed(y))


def _slow_block(blk, x):
    """One residual attention block written out with an explicit attention matrix."""
    b, n, c = x.shape
    h = blk.attn.num_heads
    y = blk.ln_1(x)
    q, k, v = (y @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias).split(c, dim=-1)
    q, k, v = (t.reshape(b, n, h, c // h).transpose(1, 2) for t in (q, k, v))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // h), dim=-1)
    x = x + blk.attn.out_proj((a @ v).transpose(1, 2).reshape(b, n, c))
    return x + blk.mlp(blk.ln_2(x))


def test_fused_blocks_equal_open_clip_and_an_explicit_reference(tiny_backbone, golden_backbone):
    """The fused prefix (the default) equals open_clip's own block forward and a slow
    explicit-attention reference, on a non-square input of each architecture."""
    from ovdense.backbones.clip import supports_fused_forward

    for bb, size in ((tiny_backbone, (64, 96)), (golden_backbone, (112, 160))):
        blocks = bb.visual.transformer.resblocks
        assert all(supports_fused_forward(blk) for blk in blocks)  # the fast path is the one tested
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            fused, plain = bb.prefix(x), bb.prefix(x, fused=False)
            ref = bb.embed(x)
            for blk in blocks[:-1]:
                ref = _slow_block(blk, ref)
        torch.testing.assert_close(fused.x, plain.x, atol=1e-5, rtol=0)
        torch.testing.assert_close(fused.x, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(fused.q, plain.q, atol=1e-5, rtol=0)


def test_unknown_block_types_run_their_own_forward(tiny_backbone):
    from ovdense.backbones.clip import supports_fused_forward

    class Doubler(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    assert not supports_fused_forward(Doubler())
    x = torch.randn(1, 5, 64)
    torch.testing.assert_close(tiny_backbone.run_blocks(x, [Doubler(), Doubler()]), 4 * x)
