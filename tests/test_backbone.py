"""CLIP adapter: loading rules, positional-embedding interpolation, errors."""
from __future__ import annotations

import hashlib
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

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


# ---------------------------------------------------------------- OpenAI-format files by content
GOLDEN_FILE = GOLDENS / "tiny_openai_clip.pt"
CLIP_LOGGER = "ovdense.backbones"  # loading.py and weights_format.py log under it


def _golden_state_dict():
    return torch.load(GOLDEN_FILE, map_location="cpu", weights_only=True)


def _fp16_weights_file(tmp_path):
    """The golden weights rounded to float16, as OpenAI's release weights are: the OpenAI
    builder rounds them so (``convert_weights_to_fp16``), open_clip's loader does not, and
    on such weights the two builders agree."""
    path = tmp_path / "plain_fp16.pt"
    torch.save({k: v.half().float() if v.is_floating_point() else v for k, v in _golden_state_dict().items()}, path)
    return path


def _with_openai_entries(sd):
    """The entries OpenAI's release files carry besides the weights."""
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return dict(sd, input_resolution=torch.tensor(grid * sd["visual.conv1.weight"].shape[-1]),
                context_length=torch.tensor(sd["positional_embedding"].shape[0]),
                vocab_size=torch.tensor(sd["token_embedding.weight"].shape[0]))


def _golden_architecture_config(tmp_path, name="ovdense-tiny-openai-arch", quick_gelu=False):
    """A model-config .json with the golden file's architecture; GELU unless ``quick_gelu``."""
    sd = _golden_state_dict()
    cfg = {
        "embed_dim": sd["text_projection"].shape[1],
        "vision_cfg": {"image_size": 112, "layers": 3, "width": 128, "patch_size": 16},
        "text_cfg": {"context_length": sd["positional_embedding"].shape[0],
                     "vocab_size": sd["token_embedding.weight"].shape[0], "width": 64, "heads": 1, "layers": 1},
    }
    if quick_gelu:
        cfg["quick_gelu"] = True
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _torchscript_archive(sd, path):
    """A TorchScript archive holding ``sd`` under its dotted names, like OpenAI's release
    files (whose ``state_dict()`` is the weights plus the OpenAI entries)."""
    root = torch.nn.Module()
    for key, tensor in sd.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, tensor)
    torch.jit.script(root).save(str(path))


def _image_features(model, seed=0):
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.encode_image(x)


def _openai_reference(path):
    import open_clip

    return _image_features(open_clip.load_openai_model(str(path), precision="fp32", device="cpu"))


def _warnings(caplog):
    return [r for r in caplog.records if r.name.startswith(CLIP_LOGGER) and r.levelno >= logging.WARNING]


def test_openai_state_dict_with_a_model_name_builds_quick_gelu(tmp_path, caplog):
    """A file with OpenAI's extra entries loads with QuickGELU like open_clip.load_openai_model,
    even with a GELU model name given; the GELU build of the same weights is another model."""
    import open_clip

    plain, openai_file = tmp_path / "plain.pt", tmp_path / "openai.pt"
    torch.save(_golden_state_dict(), plain)
    torch.save(_with_openai_entries(_golden_state_dict()), openai_file)
    config = _golden_architecture_config(tmp_path)
    with caplog.at_level(logging.INFO, logger=CLIP_LOGGER):
        bb = CLIPBackbone.load(config, str(openai_file))
    assert not _warnings(caplog)
    assert bb.activation == "quick_gelu" and "act='quick_gelu'" in repr(bb)
    assert isinstance(bb.model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)

    ours, ref = _image_features(bb.model), _openai_reference(openai_file)
    assert (ours - ref).abs().max() <= 1e-6
    gelu = open_clip.create_model("ovdense-tiny-openai-arch", pretrained=str(plain), precision="fp32", device="cpu")
    assert (_image_features(gelu) - ref).abs().max() > 1e-3  # what the name alone would have built


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")  # building the test archive
def test_torchscript_archive_with_a_model_name_builds_quick_gelu(tmp_path):
    archive = tmp_path / "openai_jit.pt"
    _torchscript_archive(_with_openai_entries(_golden_state_dict()), archive)
    bb = CLIPBackbone.load(_golden_architecture_config(tmp_path), str(archive))
    assert bb.activation == "quick_gelu"
    assert (_image_features(bb.model) - _openai_reference(archive)).abs().max() <= 1e-6


@pytest.mark.parametrize("weights_format", ["auto", "openai"])
def test_openai_file_with_another_architecture_name_is_refused(tmp_path, weights_format):
    from conftest import TINY_CONFIG

    openai_file = tmp_path / "openai.pt"
    torch.save(_with_openai_entries(_golden_state_dict()), openai_file)
    for name, theirs in ((str(TINY_CONFIG), "ViT width 64, 3 layers, patch 16, 64 px"),
                         ("ViT-B-16", "ViT width 768, 12 layers, patch 16, 224 px")):
        with pytest.raises(ValueError) as err:
            CLIPBackbone.load(name, str(openai_file), weights_format=weights_format)
        message = str(err.value)
        assert "\n" not in message and str(openai_file) in message
        assert "ViT width 128, 3 layers, patch 16, 112 px" in message and theirs in message


def test_ambiguous_state_dict_warns_once_and_builds_the_named_gelu(tmp_path, caplog):
    """OpenAI's key layout without its extra entries: nothing in the file tells QuickGELU
    from GELU, so the named (GELU) config is built, with one warning saying how to force."""
    config = _golden_architecture_config(tmp_path)
    with caplog.at_level(logging.INFO, logger=CLIP_LOGGER):
        bb = CLIPBackbone.load(config, str(GOLDEN_FILE))
    assert bb.activation == "gelu" and "act='gelu'" in repr(bb)
    (record,) = _warnings(caplog)
    message = record.getMessage()
    assert "\n" not in message and str(GOLDEN_FILE) in message and "GELU" in message
    assert "weights_format='openai'" in message and "-quickgelu" in message and "weights_format='open_clip'" in message
    assert (_image_features(bb.model) - _openai_reference(GOLDEN_FILE)).abs().max() > 1e-3


def test_ambiguous_state_dict_is_decided_by_format_or_quickgelu_name(tmp_path, caplog):
    weights = _fp16_weights_file(tmp_path)
    ref = _openai_reference(weights)
    gelu_config = _golden_architecture_config(tmp_path)
    quick_config = _golden_architecture_config(tmp_path, name="ovdense-tiny-openai-arch-quickgelu", quick_gelu=True)
    with caplog.at_level(logging.INFO, logger=CLIP_LOGGER):
        forced = CLIPBackbone.load(gelu_config, str(weights), weights_format="openai")
        named = CLIPBackbone.load(quick_config, str(weights))
        confirmed = CLIPBackbone.load(gelu_config, str(weights), weights_format="open_clip")
    assert not _warnings(caplog)
    assert forced.activation == named.activation == "quick_gelu" and confirmed.activation == "gelu"
    assert (_image_features(forced.model) - ref).abs().max() <= 1e-6
    assert (_image_features(named.model) - ref).abs().max() <= 1e-6


def test_golden_file_without_a_model_name_is_openai(golden_backbone):
    assert golden_backbone.activation == "quick_gelu" and "act='quick_gelu'" in repr(golden_backbone)


def test_known_release_hash_decides_the_activation(tmp_path, caplog, monkeypatch):
    """A file whose SHA256 is that of a QuickGELU release open_clip knows gets QuickGELU."""
    from ovdense.backbones import weights_format

    weights = _fp16_weights_file(tmp_path)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    release = weights_format._Release("ovdense-tiny", "test_release", quick_gelu=True, openai=False)
    monkeypatch.setattr(weights_format, "_known_releases", lambda: {digest[:8]: release})
    with caplog.at_level(logging.INFO, logger=CLIP_LOGGER):
        bb = CLIPBackbone.load(_golden_architecture_config(tmp_path), str(weights))
    assert not _warnings(caplog) and bb.activation == "quick_gelu"
    assert (_image_features(bb.model) - _openai_reference(weights)).abs().max() <= 1e-6


def test_release_table_reads_open_clip_urls():
    """The hashes come from open_clip's own URLs: OpenAI's files in full, GitHub releases by prefix."""
    from ovdense.backbones.weights_format import _known_releases

    table = _known_releases()
    openai_b16 = table["5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"]
    assert openai_b16.openai and openai_b16.quick_gelu and openai_b16.model.startswith("ViT-B-16")
    laion_b32 = table["d867053b"]  # vit_b_32-quickgelu-laion400m_e31, listed under plain "ViT-B-32" too
    assert laion_b32.quick_gelu and not laion_b32.openai
    assert not table["00efa78f"].quick_gelu  # vit_b_16-laion400m_e31: GELU


def test_ambiguous_message_names_the_quickgelu_model():
    from ovdense.backbones.weights_format import _ambiguous_activation_message

    message = _ambiguous_activation_message("/w/b16.pt", "ViT-B-16")
    assert "clip_model='ViT-B-16-quickgelu'" in message and "weights_format='openai'" in message
