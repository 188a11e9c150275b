"""CLIP-DINOiser: the official goldens (tools/make_dinoiser_golden.py), the checkpoint layout, the FOUND
background rule, the end padding, and the failure modes a broken wiring would show."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ovdense
from conftest import GOLDENS, golden
from ovdense.heads.dinoiser import DINOiserHead
from ovdense.registry import DECODE_RULES, build
from ovdense.structures import EncodedVocabulary
from ovdense.text.vocabulary import Vocabulary

CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
#: The official normalisation: OpenAI's mean/std on [0, 1] images, x 255 unrounded (configs/_base_/dinoiser.py).
MEAN = (122.7709383, 116.7460125, 104.09373615)
STD = (68.5005327, 66.6321579, 70.3231630)
#: The tiny CLIP of the CorrCLIP goldens, as a GELU model (open_clip 2.24 in the tool).
TINY_CLIP = {"embed_dim": 64, "quick_gelu": False,
             "vision_cfg": {"image_size": 112, "layers": 12, "width": 32, "patch_size": 16, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
#: golden case -> (input, crop, stride, FOUND); see the tool's CASES (crop 0: whole image).
CASES = {"slide": ("img", 112, 56, True), "small": ("img", 192, 96, True), "whole": ("img", 0, 0, False),
         "square": ("crop", 0, 0, True), "nofound": ("img", 112, 56, False)}
NAMES = ["background", "a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def dinoiser_backbone(tmp_path_factory):
    config = tmp_path_factory.mktemp("dinoiser") / "tiny.json"
    config.write_text(json.dumps(TINY_CLIP))
    backbone = ovdense.CLIPBackbone.load(str(config), None, pos_interp="size")
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in np.load(GOLDENS / "corrclip_tiny_clip.npz").items()}
    backbone.model.visual.load_state_dict(state)
    return backbone


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The golden's convolutions in the official layout: ``{"model_state_dict": {obj_proj.*, bkg_decoder.*}}``."""
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    ref = golden("dinoiser")
    torch.save({"epoch": 1, "model_state_dict": {k[5:]: torch.from_numpy(v) for k, v in ref.items()
                                                 if k.startswith("ckpt/")}}, path)
    return path


def segmenter(backbone, checkpoint, crop, stride, found, **head):
    seg = ovdense.OVSegmenter(
        backbone=backbone, head=dict(type="dinoiser", checkpoint=str(checkpoint), **head),
        preprocess=dict(short_side=None, mean=MEAN, std=STD),
        windows=dict(crop=crop, stride=max(stride, 1), pad_to=16, pad_mode="end"),
        decode=dict(logit_scale=1.0, rules=[dict(type="found_background")] if found else []),
        device="cpu", text_encoder=dict(cache_dir=""))
    seg.set_classes(NAMES, background="first", embeddings=torch.from_numpy(golden("dinoiser")["queries"]))
    return seg


def image_of(golden_inputs, src):
    return np.clip(np.rint(golden_inputs[src][0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def averaged(seg, ctx):
    """The stitched window probabilities at the image's size, on the golden's ::3 subsample."""
    return seg.query_logits(ctx, seg.encoded_vocabulary)[:, ::3, ::3]


@pytest.mark.parametrize("case", sorted(CASES))
def test_dinoiser_equals_the_official_golden(case, dinoiser_backbone, checkpoint, golden_inputs):
    """Official ``CLIP_DINOiser`` under mmseg-0.x slide / whole inference on the tiny CLIP: the averaged
    window probabilities to 1e-4 (measured 2.4e-6 at most), mmseg's softmax of them (4.6e-7) and the
    labels (identical); FOUND on ``slide``, ``small`` and ``square``; ``small`` and ``whole`` pad their
    windows (168 px to 176)."""
    ref = golden("dinoiser")
    src, crop, stride, found = CASES[case]
    seg = segmenter(dinoiser_backbone, checkpoint, crop, stride, found)
    ctx = seg.encode_image(image_of(golden_inputs, src))
    expected = torch.from_numpy(ref[f"{case}_avg"])
    assert (averaged(seg, ctx) - expected).abs().max() < 1e-4
    res = seg.predict(ctx, return_scores=True)
    assert np.abs(res.scores[:, ::3, ::3] - expected.softmax(0).numpy()).max() < 1e-5
    assert (res.label_map == ref[f"{case}_labels"]).mean() > 0.999
    assert len(np.unique(res.label_map)) >= 3  # the golden is not one label


@pytest.mark.slow
def test_broken_wirings_move_the_output(dinoiser_backbone, checkpoint, golden_inputs):
    """What the golden test catches: no gamma threshold, the wrong block, no FOUND rule, the
    ovdense padding instead of the official one, and cosines averaged instead of probabilities
    all move the result well beyond the tolerance."""
    ref = golden("dinoiser")
    image = image_of(golden_inputs, "img")
    slide, small = torch.from_numpy(ref["slide_avg"]), torch.from_numpy(ref["small_avg"])
    variants = {
        "gamma": (segmenter(dinoiser_backbone, checkpoint, 112, 56, True, gamma=None), slide),
        "tap": (segmenter(dinoiser_backbone, checkpoint, 112, 56, True, feats_idx=-2), slide),
        "found": (segmenter(dinoiser_backbone, checkpoint, 112, 56, False), slide),
    }
    centre = segmenter(dinoiser_backbone, checkpoint, 192, 96, True)
    centre.windows = ovdense.ops.SlidingWindows(crop=192, stride=96, pad_to=16)
    centre._pad_fill = lambda: 0.0
    variants["centre_padding"] = (centre, small)
    for name, (seg, expected) in variants.items():
        assert (averaged(seg, seg.encode_image(image)) - expected).abs().max() > 1e-3, name
    seg = segmenter(dinoiser_backbone, checkpoint, 112, 56, True, window_scores="cosine")
    res = seg.predict(image)
    assert (res.label_map != ref["slide_labels"]).mean() > 0.01


def test_gamma_threshold_matters(dinoiser_backbone, checkpoint, golden_inputs):
    """The default-set stand-in of the slow wiring test: without the gamma threshold the output moves."""
    ref = golden("dinoiser")
    seg = segmenter(dinoiser_backbone, checkpoint, 0, 0, True, gamma=None)
    ctx = seg.encode_image(image_of(golden_inputs, "crop"))
    assert (averaged(seg, ctx) - torch.from_numpy(ref["square_avg"])).abs().max() > 1e-3


# ---------------------------------------------------------------------------------- checkpoint
def test_checkpoint_round_trip(dinoiser_backbone, tmp_path):
    """Random convolutions saved in the official layout load back to identical outputs; the bare
    state dict is read too."""
    torch.manual_seed(0)
    crops = torch.randn(2, 3, 64, 96)
    head = DINOiserHead(width=32, in_dim=24, seed=3).eval()
    view = dinoiser_backbone.prefix(crops, taps=head.taps)
    with torch.no_grad():
        out = head(view, dinoiser_backbone)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    assert sorted(state) == ["bkg_decoder.bias", "bkg_decoder.weight", "obj_proj.bias", "obj_proj.weight"]
    for i, data in enumerate(({"epoch": 3, "model_state_dict": state}, state)):
        path = tmp_path / f"last{i}.pt"
        torch.save(data, path)
        loaded = DINOiserHead(checkpoint=str(path)).eval()
        assert loaded.in_dim == 24 and loaded.obj_proj.padding_mode == "replicate"
        with torch.no_grad():
            again = loaded(view, dinoiser_backbone)
        assert torch.equal(again.features, out.features)
        assert torch.equal(again.extras["background"], out.extras["background"])
    assert out.extras["background"].shape == (2, 1, 4, 6)


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt: no such file"):
        DINOiserHead(checkpoint=str(missing))
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.pt: not a readable torch file"):
        DINOiserHead(checkpoint=str(text))
    other = tmp_path / "other.pt"
    torch.save({"model_state_dict": {"obj_proj.weight": torch.zeros(4, 8, 3, 3)}}, other)
    with pytest.raises(ValueError, match=r"other.pt: lacks obj_proj.bias, bkg_decoder.weight, bkg_decoder.bias"):
        DINOiserHead(checkpoint=str(other))


# ---------------------------------------------------------------------------------- FOUND rule
def _context(background):
    class Ctx:
        extras = {"background": background}
        aux = {}
    return Ctx()


def test_found_background_rule_on_a_constructed_case():
    """``P[class 0] = 1`` where ``max P < 0.99`` and ``b <= 0.5``: every query of class 0 (synonyms
    included), nothing else; without a background class nothing changes."""
    rule = build(DECODE_RULES, dict(type="found_background"))
    vocab = Vocabulary.from_synonyms([["background", "sky"], ["cat"], ["dog"]], has_background=True)
    enc = EncodedVocabulary(vocab, torch.eye(4, 8))
    # pixels: (0,0) certain cat, b low; (0,1) uncertain, b low -> bg; (1,0) uncertain, b high; (1,1) uncertain, b = 0.5
    p = torch.tensor([[0.001, 0.3], [0.3, 0.2]]), torch.tensor([[0.001, 0.1], [0.1, 0.2]]), \
        torch.tensor([[0.995, 0.4], [0.4, 0.4]]), torch.tensor([[0.003, 0.2], [0.2, 0.2]])
    scores = torch.stack(p)[None]  # [1, 4 queries, 2, 2]
    b = torch.tensor([[[[0.1, 0.2], [0.9, 0.5]]]])
    out = rule(scores, _context(b), enc)
    expected = scores.clone()
    for y, x in ((0, 1), (1, 1)):
        expected[0, :2, y, x] = 1.0
    assert torch.equal(out, expected)
    plain = EncodedVocabulary(Vocabulary.from_synonyms([["sky"], ["cat"], ["dog"], ["car"]]), torch.eye(4, 8))
    assert torch.equal(rule(scores, _context(b), plain), scores)
    strict = build(DECODE_RULES, dict(type="found_background", delta=0.5, threshold=0.95))
    assert torch.equal(strict(scores, _context(b), enc)[0, 0], torch.tensor([[0.001, 1.0], [1.0, 1.0]]))


def test_found_background_is_off_unless_configured(dinoiser_backbone, checkpoint, golden_inputs):
    ref = golden("dinoiser")
    seg = segmenter(dinoiser_backbone, checkpoint, 0, 0, False)
    ctx = seg.encode_image(image_of(golden_inputs, "crop"))
    assert seg.decoder.rules == () and (averaged(seg, ctx) - torch.from_numpy(ref["square_avg"])).abs().max() > 1e-3
    assert "background" in ctx.extras and ctx.extras["background"].shape == (1, 1, 7, 7)


# ---------------------------------------------------------------------------------- segmenter and CLI
def _tiny_config(tmp_path, checkpoint_path):
    from conftest import TINY_CONFIG

    config = tmp_path / "dinoiser_tiny.py"
    config.write_text(
        f"_base_ = [{str(ovdense_config('_base_/dinoiser.py'))!r}]\n"
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None, pos_interp='size')\n"
        f"head = dict(checkpoint={str(checkpoint_path)!r}, feats_idx=-2)\n"
        "preprocess = dict(short_side=48)\nwindows = dict(crop=48, stride=24)\n"
        "decode = dict(rules=[dict(type='found_background')])\ntext_encoder = dict(templates='simple')\n"
        "classes = dict(names=['background', 'cat', 'dog'], background='first')\n")
    return config


def ovdense_config(rel):
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "configs" / rel


def _tiny_checkpoint(path, width=64):
    torch.manual_seed(5)
    torch.save({"model_state_dict": {"obj_proj.weight": torch.randn(16, width, 3, 3) * 0.1,
                                     "obj_proj.bias": torch.zeros(16),
                                     "bkg_decoder.weight": torch.randn(1, width, 1, 1),
                                     "bkg_decoder.bias": torch.zeros(1)}}, path)
    return path


def test_segmenter_from_config(tmp_path):
    """The base config with the tiny CLIP: the checkpoint is read, windows pad at the end, scores are the
    softmax of the averaged probabilities (decode scale 1), FOUND runs on the windows."""
    config = _tiny_config(tmp_path, _tiny_checkpoint(tmp_path / "last.pt"))
    seg = ovdense.OVSegmenter.from_config(str(config), device="cpu", text_encoder=dict(templates="simple",
                                                                                        cache_dir=""))
    assert seg.head.checkpoint.endswith("last.pt") and seg.decoder.logit_scale == 1.0
    assert seg.windows.pad_mode == "end" and [type(r).__name__ for r in seg.decoder.window_rules] == \
        ["FoundBackgroundRule"]
    image = np.random.default_rng(0).integers(0, 256, (50, 75, 3), dtype=np.uint8)
    res = seg.predict(image, return_scores=True)
    assert res.label_map.shape == (50, 75) and res.class_names == ["background", "cat", "dog"]
    np.testing.assert_allclose(res.scores.sum(0), 1.0, atol=1e-5)


def test_segment_cli_with_a_dinoiser_config(tmp_path, capsys):
    from ovdense.cli import main

    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 70, 3), dtype=np.uint8)).save(images / "a.png")
    config = _tiny_config(tmp_path, _tiny_checkpoint(tmp_path / "last.pt"))
    code = main(["segment", str(images), "--config", str(config), "--out", str(out), "--device", "cpu", "--quiet"])
    assert code == 0
    label = np.array(Image.open(out / "labels" / "a.png.png"))
    assert label.shape == (48, 70) and label.max() <= 2
    bad = tmp_path / "bad.py"
    bad.write_text(config.read_text().replace(str(tmp_path / "last.pt"), str(tmp_path / "missing.pt")))
    assert main(["segment", str(images), "--config", str(bad), "--out", str(tmp_path / "out2"), "--device", "cpu",
                 "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "missing.pt: no such file" in err and "Traceback" not in err


def test_end_padding_is_black_at_the_bottom_right():
    """``pad_mode="end"``: windows of 40 x 50 go to 48 x 64 with the padding on the bottom and right
    (a whole-image pass too), filled with the given per-channel value."""
    from ovdense.ops.windows import SlidingWindows, crop_windows

    boxes, pad = SlidingWindows(crop=0, pad_to=16, pad_mode="end").plan((40, 50))
    assert boxes == [(0, 40, 0, 50)] and pad == (0, 14, 0, 8)
    image = torch.rand(3, 40, 50)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = crop_windows(image, boxes, pad, fill)
    assert out.shape == (1, 3, 48, 64) and torch.equal(out[0, :, :40, :50], image)
    assert torch.equal(out[0, :, 40:, :], fill.view(3, 1, 1).expand(3, 8, 64))
    assert SlidingWindows(crop=32, stride=16, pad_to=16, pad_mode="end").plan((40, 50))[1] == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="pad_mode"):
        SlidingWindows(pad_mode="middle")
