"""OV-Stitcher: the official goldens (tools/make_ovstitcher_golden.py), the grid stitcher, the stitched
DINO provider against a written-out last block, and the CLI on region files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ovdense
from conftest import GOLDENS, golden
from ovdense.ops.windows import stitch_grid
from ovdense.registry import FEATURES, build
from test_corrclip import CLIP_MEAN, CLIP_STD, NAMES

#: The tiny official DINO of the CASS goldens, stitched across windows.
TINY_DINO = dict(type="stitched_vit", model_name="vit_base_patch8_224.dino", pos_interp="dino",
                 model_kwargs=dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, img_size=112))
#: golden case -> (input, columns kept, crop, stride, background threshold); see the tool's CASES.
CASES = {"slide": ("img", None, 112, 56, 0.0), "wide": ("img_square", None, 224, 112, 0.2),
         "square": ("crop", None, 112, 112, 0.0), "few_regions": ("img", None, 112, 56, 0.0),
         "odd": ("img", 150, 112, 56, 0.0), "padded": ("crop", 96, 112, 112, 0.0)}
#: Cases whose scope threshold (similarity > mean similarity, over all pairs of DINO cells) has a pair
#: closer to the mean than the two implementations' DINO features differ (3.4e-8, measured by the tool):
#: fp32 rounding decides it.
NEAR_TIES = {"few_regions"}
#: Tensors of cass_tiny_dino.npz that are zero (CASS reads only the last block's q and k) and that
#: OV-Stitcher uses: the golden tool's DINO_FILL (source transposed if a matrix, reversed if a vector).
DINO_FILL = {"blocks.1.attn.proj.weight": "blocks.0.attn.proj.weight",
             "blocks.1.attn.proj.bias": "blocks.0.attn.proj.bias",
             "blocks.1.norm2.weight": "blocks.1.norm1.weight", "blocks.1.norm2.bias": "blocks.1.norm1.bias",
             "blocks.1.mlp.fc1.weight": "blocks.0.mlp.fc2.weight", "blocks.1.mlp.fc1.bias": "blocks.0.mlp.fc1.bias",
             "blocks.1.mlp.fc2.weight": "blocks.0.mlp.fc1.weight", "blocks.1.mlp.fc2.bias": "blocks.0.mlp.fc2.bias",
             "norm.weight": "blocks.0.norm1.weight", "norm.bias": "blocks.0.norm1.bias"}


def tiny_dino(spec=TINY_DINO):
    """The golden's tiny official DINO: the CASS goldens' weights with their zero tensors filled."""
    provider = build(FEATURES, spec).eval()
    state = {k: torch.from_numpy(v).float() for k, v in np.load(GOLDENS / "cass_tiny_dino.npz").items()}
    for dst, src in DINO_FILL.items():
        state[dst] = state[src].T.contiguous() if state[src].ndim == 2 else state[src].flip(0)
    sums = [float(state[k].double().sum()) for k in DINO_FILL]
    np.testing.assert_allclose(sums, golden("ovstitcher")["dino_fill_sums"], rtol=1e-12)
    provider.model.load_state_dict(state)
    return provider


def segmenter(backbone, regions_dir, crop, stride, threshold, head=None, correction=True, queries=None):
    seg = ovdense.OVSegmenter(
        backbone=backbone, head=dict(type="ovstitcher", **(head or {})),
        features=dict(stitched_dino=TINY_DINO, regions=dict(type="regions", directory=str(regions_dir))),
        preprocess=dict(short_side=None), windows=dict(crop=crop, stride=stride, pad_to=56),
        decode=dict(logit_scale=40.0, background_threshold=threshold,
                    rules=[dict(type="region_mode")] if correction else []),
        device="cpu", text_encoder=dict(cache_dir=""))
    seg.features["stitched_dino"] = tiny_dino()
    q = golden("ovstitcher")["queries"] if queries is None else queries
    seg.set_classes([", ".join(NAMES[:2])] + NAMES[2:], background="first", embeddings=torch.from_numpy(q))
    return seg


def case_image(golden_inputs, case):
    src, cols = CASES[case][:2]
    if src == "img_square":  # img continued by its mirror image below, to 224 x 224
        x = np.concatenate([golden_inputs["img"], golden_inputs["img"][:, :, ::-1][:, :, :56]], axis=2)[0]
    else:
        x = golden_inputs[src][0]
    if cols is not None:
        x = x[:, :, :cols]
    return np.clip(np.rint(x * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)


def case_context(seg, golden_inputs, case, folder, regions):
    u8 = case_image(golden_inputs, case)
    x = (torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD)
    path = folder / f"{case}.png"
    Image.fromarray(u8.transpose(1, 2, 0)).save(path)
    np.savez(folder / f"{case}.npz", instance_mask=regions.astype(np.int32))
    return seg.encode_normalized([x], raw=[torch.from_numpy(u8)], originals=[(u8.transpose(1, 2, 0), str(path))])[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_ovstitcher_equals_the_official_golden(case, corrclip_backbone, golden_inputs, tmp_path):
    """Official ``predict`` (atw617/OV-Stitcher @91a9489) on the tiny CLIP (12 blocks) and the tiny
    DINO with region maps from files: the logits at the input size to 1e-4 (measured 4.2e-7 at most),
    the probabilities after the background merge, the labels after the threshold and the map
    correction (identical). The stitched DINO features agree to 5.1e-7; where the scope threshold has
    a nearer tie (:data:`NEAR_TIES`), that flips a pair: 0.3 % of the logits move by up to 6.1e-4."""
    ref = golden("ovstitcher")
    _, _, crop, stride, threshold = CASES[case]
    seg = segmenter(corrclip_backbone, tmp_path, crop, stride, threshold)
    ctx = case_context(seg, golden_inputs, case, tmp_path, ref[f"{case}_regions"])
    if case == "slide":  # the stitched DINO features, before any threshold
        dino = ctx.image_level["stitched_dino"][0].flatten(1).T
        assert (dino - torch.from_numpy(ref["slide_dino_feats"][0])).abs().max() < 2e-6
    res = seg.predict(ctx, return_scores=True)
    error = (seg.query_logits(ctx, seg.encoded_vocabulary)[:, ::3, ::3] - torch.from_numpy(ref[f"{case}_logits"])).abs()
    if case in NEAR_TIES:
        assert (error > 1e-4).float().mean() < 0.01 and error.max() < 2e-3
        assert np.abs(res.scores[:, ::3, ::3] - ref[f"{case}_probs"]).max() < 1e-2
    else:
        assert error.max() < 1e-4
        assert np.abs(res.scores[:, ::3, ::3] - ref[f"{case}_probs"]).max() < 1e-4
    assert (res.label_map == ref[f"{case}_labels"]).mean() > 0.999
    assert len(np.unique(res.label_map)) >= 3  # the golden is not one label


def test_each_branch_moves_the_logits(corrclip_backbone, golden_inputs, tmp_path):
    """Broken wirings the golden test catches: without the semantic branch, the spatial branch, the
    region merging (the ``odd`` case merges two regions) or with another temperature, the logits
    move far beyond the tolerance."""
    ref = golden("ovstitcher")
    seg = segmenter(corrclip_backbone, tmp_path, 112, 56, 0.0)
    expected = torch.from_numpy(ref["odd_logits"])
    for name, value in (("beta", 0.0), ("merge_eps", None), ("alpha", 0.0), ("tau", 1.0)):
        kept = getattr(seg.head, name)
        setattr(seg.head, name, value)
        ctx = case_context(seg, golden_inputs, "odd", tmp_path, ref["odd_regions"])
        setattr(seg.head, name, kept)
        moved = (seg.query_logits(ctx, seg.encoded_vocabulary)[:, ::3, ::3] - expected).abs().max()
        assert moved > 1e-3, name


# ---------------------------------------------------------------------------------- parts
def test_stitch_grid_places_windows_by_floor_and_averages_overlaps():
    """Aligned windows cut from one grid give the grid back; a window starting between cells lands
    on the cell before (floor); padding is cut in whole cells; an uncovered cell is an error."""
    torch.manual_seed(0)
    grid = torch.randn(3, 6, 10)
    boxes = [(0, 48, 0, 48), (0, 48, 32, 80)]             # pixels, patch 8: cells 0-5 and 4-9
    windows = torch.stack([grid[:, :, 0:6], grid[:, :, 4:10]])
    torch.testing.assert_close(stitch_grid(windows, boxes, (0, 0, 0, 0), 8, (48, 80)), grid)
    other = windows.clone()
    other[1] += 1.0                                        # overlapping cells average the two windows
    out = stitch_grid(other, boxes, (0, 0, 0, 0), 8, (48, 80))
    torch.testing.assert_close(out[:, :, 4:6], grid[:, :, 4:6] + 0.5)
    torch.testing.assert_close(out[:, :, 6:], grid[:, :, 6:] + 1.0)
    # x1 = 37 is between cells 4 and 5: floor puts the window at cell 4 (as the official code does)
    shifted = stitch_grid(windows, [(0, 48, 0, 48), (0, 48, 37, 85)], (0, 0, 0, 0), 8, (48, 85))
    torch.testing.assert_close(shifted, grid)
    # a window padded by 12 px on the left (2 cells, rounded up) and 4 px on the right (1 cell)
    padded = torch.cat([torch.zeros(3, 6, 2), grid[:, :, 0:6], torch.zeros(3, 6, 1)], dim=2)[None]
    torch.testing.assert_close(stitch_grid(padded, [(0, 48, 0, 48)], (12, 4, 0, 0), 8, (48, 48)), grid[:, :, :6])
    with pytest.raises(ValueError, match="uncovered"):
        stitch_grid(windows[:1], boxes[:1], (0, 0, 0, 0), 8, (48, 80))
    with pytest.raises(ValueError, match="valid"):
        stitch_grid(windows, boxes, (0, 0, 0, 0), 8, (48, 80), valid="other")


def test_stitched_dino_on_one_window_is_the_written_out_last_block(tiny_backbone):
    """One window covering the canvas: the provider (``input_from="pixels"``) equals DINO's last block
    written out with the official residual (the *normed* penultimate tokens), and it differs from
    timm's own last block; the official input chain (default) agrees up to rounding."""
    import ovdense.heads  # noqa: F401

    provider = tiny_dino(dict(TINY_DINO, input_from="pixels"))
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", features=dict(dino=TINY_DINO),
                              preprocess=dict(short_side=None), windows=dict(crop=0), device="cpu",
                              text_encoder=dict(cache_dir=""))
    seg.features["dino"] = provider
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    got = ctx.feature_map("dino")[0]
    m = provider.model
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - provider.mean) / provider.std
    with torch.no_grad():
        tokens = provider._embed(x, square=False)
        tokens = m.blocks[0](tokens)
        blk = m.blocks[1]
        qkv = blk.attn.qkv(blk.norm1(tokens)).reshape(1, tokens.shape[1], 3, 2, -1).permute(2, 0, 3, 1, 4)
        q, k, v = (t[:, :, 1:] for t in qkv)
        y = (torch.softmax(q @ k.transpose(-1, -2) * blk.attn.scale, -1) @ v).transpose(1, 2).reshape(1, -1, 128)
        out = m.norm(tokens)[:, 1:] + blk.attn.proj(y)
        out = out + blk.mlp(blk.norm2(out))
        timm_block = m.norm(blk(tokens))[:, 1:]
    want = F.normalize(out[0], dim=-1).T.reshape(-1, 6, 8)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - F.normalize(timm_block[0], dim=-1).T.reshape(-1, 6, 8)).abs().max() > 1e-2
    # the official input chain (CLIP-normalised, un-normalised, ImageNet-normalised): the same up to rounding
    seg.features["dino"] = tiny_dino()
    official_chain = seg.encode_image(image).feature_map("dino")[0]
    assert 0 < (official_chain - got).abs().max() < 1e-4
    with pytest.raises(RuntimeError, match="runs on an image's context"):
        provider(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="'output' does not apply"):
        build(FEATURES, dict(TINY_DINO, output="q+k"))


def test_segment_cli_on_a_folder_with_region_maps(tmp_path, capsys):
    """``ovdense segment`` with an OV-Stitcher config: every region of the map gets one label."""
    from conftest import TINY_CONFIG
    from ovdense.cli import main

    images, regions, out = tmp_path / "images", tmp_path / "regions", tmp_path / "out"
    images.mkdir()
    regions.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(images / "a.png")
    ids = np.zeros((48, 80), np.int32)
    ids[5:30, 10:50], ids[32:, :20] = 4, 9
    np.savez(regions / "a.npz", instance_mask=ids)
    config = tmp_path / "ovstitcher_tiny.py"
    config.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None)\n"
        "head = dict(type='ovstitcher')\n"
        "features = dict(stitched_dino=dict(type='stitched_vit', model_name='vit_small_patch8_224',\n"
        "                 pos_interp='timm', model_kwargs=dict(depth=2, embed_dim=32, num_heads=2)),\n"
        f"                regions=dict(type='regions', directory={str(regions)!r}))\n"
        "preprocess = dict(short_side=None)\nwindows = dict(crop=48, stride=16)\n"
        "decode = dict(logit_scale=40.0, rules=[dict(type='region_mode')])\ntext_encoder = dict(templates='simple')\n")
    code = main(["segment", str(images), "--config", str(config), "--classes", "cat", "dog", "car", "--out", str(out),
                 "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    label = np.array(Image.open(out / "labels" / "a.png.png"))
    assert label.shape == (48, 80)
    assert len(np.unique(label[5:30, 10:50])) == 1 and len(np.unique(label[32:, :20])) == 1


@pytest.mark.slow  # two full OV-Stitcher runs on 8 windows (6 s)
def test_benchmark_compares_with_the_official_style_computation():
    """``ovdense benchmark --ovstitcher``'s baseline (windows one by one, region tokens inside every
    window's sequence) computes what the head computes, so its timings compare equal outputs."""
    from conftest import TINY_CONFIG
    from ovdense.bench.benchmark import TINY_VFM
    from ovdense.bench.ovstitcher import benchmark_ovstitcher, format_ovstitcher

    info = benchmark_ovstitcher(str(TINY_CONFIG), None, size=(60, 80), regions=12, tiny_dino=TINY_VFM)
    assert info["max_logit_diff"] < 1e-5 and info["labels_equal"] == 1.0
    assert info["windows"] == 8 and info["regions"] > 5
    assert "speedup" in format_ovstitcher(info)
