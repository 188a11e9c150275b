"""``TimmViTFeatures(pos_interp=...)``: timm's position-embedding resize against the official DINO
``interpolate_pos_encoding`` (bicubic with ``scale_factor = (g + 0.1) / sqrt(N)``), checked
against a reference written out here from the formula and the model's own weights."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("timm")

from ovdense.features.timm_vit import TimmViTFeatures  # noqa: E402

#: Tiny DINO-like models: patch 8 (ViT-B/8's patch, native 64 px = an 8 x 8 grid) and patch 16.
TINY8 = dict(model_name="vit_small_patch8_224", model_kwargs=dict(depth=2, embed_dim=32, num_heads=2, img_size=64))
TINY16 = dict(model_name="vit_small_patch16_224", model_kwargs=dict(depth=2, embed_dim=48, num_heads=2, img_size=64))


def _provider(spec, seed=0, **kwargs):
    torch.manual_seed(seed)
    prov = TimmViTFeatures(**spec, **kwargs)
    with torch.no_grad():  # timm initialises pos_embed small; make it matter
        prov.model.pos_embed.normal_(0.0, 1.0)
    return prov


def _pair(spec, **kwargs):
    """The same weights under both modes."""
    timm_mode = _provider(spec, **kwargs)
    dino_mode = _provider(spec, pos_interp="dino", **kwargs)
    dino_mode.load_state_dict(timm_mode.state_dict())
    return timm_mode, dino_mode


def _images(h, w, n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def _reference(prov: TimmViTFeatures, images: torch.Tensor, layer: int = -1, norm: bool = True) -> torch.Tensor:
    """DINO's ``prepare_tokens`` + blocks + ``norm`` by hand, from the model's weights only."""
    model = prov.model
    x = (images.float() - prov.mean) / prov.std
    b, _, h, w = x.shape
    p = model.patch_embed.proj.kernel_size[0]
    conv = model.patch_embed.proj
    tokens = F.conv2d(x, conv.weight, conv.bias, stride=p).flatten(2).transpose(1, 2)  # [B, L, C]
    tokens = torch.cat([model.cls_token.expand(b, -1, -1), tokens], dim=1)
    pos = model.pos_embed
    n = pos.shape[1] - 1
    if tokens.shape[1] - 1 == n and h == w:
        tokens = tokens + pos
    else:
        side = int(math.sqrt(n))
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        rows, cols = h // p + 0.1, w // p + 0.1
        grid = F.interpolate(grid, scale_factor=(rows / math.sqrt(n), cols / math.sqrt(n)), mode="bicubic")
        assert grid.shape[-2:] == (h // p, w // p)
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
        tokens = tokens + torch.cat([pos[:, :1], patch_pos], dim=1)
    depth = len(model.blocks)
    for blk in list(model.blocks)[: (layer % depth) + 1]:
        tokens = blk(tokens)
    if norm:
        tokens = model.norm(tokens)
    return tokens[:, 1:].reshape(b, h // p, w // p, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("spec", [TINY8, TINY16], ids=["patch8", "patch16"])
def test_native_size_dino_equals_timm(spec):
    timm_mode, dino_mode = _pair(spec)
    images = _images(64, 64)
    with torch.no_grad():
        a, b = timm_mode(images), dino_mode(images)
    assert a.shape == b.shape == (2, spec["model_kwargs"]["embed_dim"], 64 // (8 if spec is TINY8 else 16),
                                  64 // (8 if spec is TINY8 else 16))
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    torch.testing.assert_close(b, _reference(dino_mode, images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(48, 80), (96, 96), (80, 48)])
def test_other_sizes_follow_the_dino_formula(size):
    timm_mode, dino_mode = _pair(TINY8)
    images = _images(*size)
    with torch.no_grad():
        a, b = timm_mode(images), dino_mode(images)
        ref = _reference(dino_mode, images)
    assert b.shape == (2, 32, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=0)
    assert (a - b).abs().max() > 1e-4, "pos_interp='dino' must differ from timm's resize off the native size"


def test_grid_with_the_native_token_count_but_not_square_is_interpolated():
    # 32 x 128 px is a 4 x 16 grid: 64 positions as the checkpoint's 8 x 8, but H != W, so DINO resizes.
    _, dino_mode = _pair(TINY8)
    images = _images(32, 128)
    with torch.no_grad():
        torch.testing.assert_close(dino_mode(images), _reference(dino_mode, images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer,norm", [(0, False), (0, True), (-2, False), (-1, False)])
def test_layer_and_norm_match_the_timm_path(layer, norm):
    timm_mode, dino_mode = _pair(TINY8, layer=layer, norm=norm)
    native, other = _images(64, 64), _images(48, 80)
    with torch.no_grad():
        torch.testing.assert_close(dino_mode(native), timm_mode(native), atol=1e-5, rtol=0)
        torch.testing.assert_close(dino_mode(other), _reference(dino_mode, other, layer=layer, norm=norm),
                                   atol=1e-5, rtol=0)


def test_windows_are_cropped_to_the_patch_grid():
    timm_mode, dino_mode = _pair(TINY8)
    images = _images(51, 85)  # 6 x 10 patches, 3 and 5 pixels left over
    with torch.no_grad():
        b = dino_mode(images)
        ref = _reference(dino_mode, images[..., :48, :80])
    assert b.shape[-2:] == dino_mode.output_grid((51, 85)) == (6, 10)
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=0)
    assert "pos_interp='dino'" in repr(dino_mode) and "pos_interp='timm'" in repr(timm_mode)


@pytest.mark.parametrize("bad", ["DINO", "bicubic", "", None, "scale_factor"])
def test_bad_values_raise(bad):
    with pytest.raises(ValueError, match="pos_interp"):
        TimmViTFeatures(**TINY8, pos_interp=bad)


def test_dino_needs_a_square_position_grid():
    spec = dict(TINY8, model_kwargs=dict(TINY8["model_kwargs"], img_size=(64, 32)))
    with pytest.raises(ValueError, match="square"):
        TimmViTFeatures(**spec, pos_interp="dino")
