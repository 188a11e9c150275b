"""Sliding windows, stitching, resizing, batching and the public predict API."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ovdense
from ovdense.preprocess import rescale_size
from ovdense.ops.windows import stitch, window_boxes


def _slow_boxes(h, w, crop, stride):
    """mmseg slide_inference placement, loop for loop."""
    out = []
    hg = max(h - crop + stride - 1, 0) // stride + 1
    wg = max(w - crop + stride - 1, 0) // stride + 1
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * stride, j * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


@pytest.mark.parametrize("h, w", [(336, 448), (336, 500), (173, 251), (100, 90), (224, 224), (225, 337)])
def test_window_boxes_follow_mmseg_and_cover_the_image(h, w):
    boxes = window_boxes(h, w, 224, 112)
    assert boxes == _slow_boxes(h, w, 224, 112)
    cover = np.zeros((h, w), int)
    for y1, y2, x1, x2 in boxes:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    assert len({(y2 - y1, x2 - x1) for y1, y2, x1, x2 in boxes}) == 1  # one batch


def test_stitch_averages_overlaps():
    boxes = [(0, 4, 0, 4), (0, 4, 2, 6)]
    logits = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 3.0)])
    out = stitch(logits, boxes, (4, 6))
    assert torch.equal(out[0, 0], torch.tensor([1.0, 1, 2, 2, 3, 3]))


def test_rescale_size_is_mmcv_imrescale():
    assert rescale_size(375, 500, (2048, 336)) == (336, 448)
    assert rescale_size(500, 375, (2048, 336)) == (448, 336)
    assert rescale_size(333, 500, (2048, 336)) == (336, 505)   # 500 * 336/333 = 504.5 -> 505
    assert rescale_size(375, 500, (520, 520)) == (390, 520)


def _segmenter(backbone, short_side=None, crop=64, stride=32, pad_to=0, **kw):
    args = dict(backbone=backbone, head="sclip", preprocess=dict(short_side=short_side),
                windows=dict(crop=crop, stride=stride, pad_to=pad_to), device="cpu", text_encoder=dict(cache_dir=""))
    args.update(kw)
    seg = ovdense.OVSegmenter(**args)
    seg.set_classes(["cat", "dog, puppy", "car"], background="sky, wall")
    return seg


def test_single_window_equals_whole_image_pass(tiny_backbone):
    seg_slide = _segmenter(tiny_backbone, crop=64)
    seg_whole = _segmenter(tiny_backbone, crop=0)
    x = torch.randn(3, 64, 64)
    a = seg_slide.query_logits(seg_slide.encode_normalized([x])[0])
    b = seg_whole.query_logits(seg_whole.encode_normalized([x])[0])
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("crop, stride, pad_to", [(64, 32, 0), (60, 30, 16)])
def test_slide_logits_equal_loop_reference_on_odd_size(tiny_backbone, crop, stride, pad_to):
    """Batched windows + stitch == one-window-at-a-time loop with explicit (ClearCLIP-style
    centred) padding, cut, pad-to-canvas and sum."""
    seg = _segmenter(tiny_backbone, crop=crop, stride=stride, pad_to=pad_to)
    x = torch.randn(3, 83, 101)
    ours = seg.query_logits(seg.encode_normalized([x])[0])
    text = seg.encoded_vocabulary.text
    preds = torch.zeros(text.shape[0], 83, 101)
    count = torch.zeros(1, 83, 101)
    for y1, y2, x1, x2 in _slow_boxes(83, 101, crop, stride):
        crop_img = x[None, :, y1:y2, x1:x2]
        h, w = crop_img.shape[-2:]
        ph, pw = (-h) % pad_to if pad_to else 0, (-w) % pad_to if pad_to else 0
        left, top = pw // 2, ph // 2
        padded = F.pad(crop_img, (left, pw - left, top, ph - top))
        f = seg.dense_features(padded)
        logit = F.interpolate(torch.einsum("bdhw,qd->bqhw", f, text), size=padded.shape[-2:], mode="bilinear")
        logit = logit[:, :, top:top + h, left:left + w]
        preds += F.pad(logit, (x1, 101 - x2, y1, 83 - y2))[0]
        count[:, y1:y2, x1:x2] += 1
    torch.testing.assert_close(ours, preds / count, atol=1e-5, rtol=1e-5)


def test_padding_to_patch_multiple_cuts_the_pad(tiny_backbone):
    seg = _segmenter(tiny_backbone, crop=60, stride=30, pad_to=16)
    x = torch.randn(3, 70, 90)
    feats = seg.encode_normalized([x])[0]
    assert feats.pad == (2, 2, 2, 2) and feats.features.shape[-2:] == (4, 4)
    assert seg.query_logits(feats).shape == (6, 70, 90)


def test_predict_inputs_and_batching(tiny_backbone, tmp_path):
    seg = _segmenter(tiny_backbone, short_side=48)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (61, 45, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    ra = seg.predict(a, return_scores=True)
    assert ra.label_map.shape == (50, 70) and ra.label_map.dtype == np.int64
    assert ra.scores.shape == (4, 50, 70) and ra.class_names == ["sky", "cat", "dog", "car"]
    assert np.array_equal(ra.label_map, ra.scores.argmax(0))
    from_path = seg.predict(str(tmp_path / "a.png"))
    from_pil = seg.predict(Image.fromarray(a))
    from_bgr = seg.predict(a[:, :, ::-1].copy(), bgr=True)
    for other in (from_path, from_pil, from_bgr):
        assert np.array_equal(other.label_map, ra.label_map)
    assert from_path.path == str(tmp_path / "a.png")
    batch = seg.predict([a, b, a], return_scores=True)
    assert [r.label_map.shape for r in batch] == [(50, 70), (61, 45), (50, 70)]
    np.testing.assert_allclose(batch[0].scores, ra.scores, atol=1e-5)
    np.testing.assert_allclose(batch[1].scores, seg.predict(b, return_scores=True).scores, atol=1e-5)


def test_features_are_reused_for_a_new_vocabulary(tiny_backbone):
    seg = _segmenter(tiny_backbone)
    img = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    feats = seg.encode_image(img)
    seg.set_classes(["tree", "road"])
    again = seg.predict(feats, return_scores=True)
    fresh = seg.predict(img, return_scores=True)
    np.testing.assert_allclose(again.scores, fresh.scores, atol=1e-6)
    assert again.class_names == ["tree", "road"]


def test_precomputed_embeddings_and_errors(tiny_backbone):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="naclip", preprocess=dict(short_side=None),
                              windows=dict(crop=0), device="cpu", text_encoder=dict(cache_dir=""))
    img = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(RuntimeError, match="set_classes"):
        seg.predict(img)
    emb = torch.randn(3, 32)
    seg.set_classes(["a", "b", "c"], embeddings=emb)
    assert seg.text.encoded_queries == 0
    with pytest.raises(ValueError, match="one row per query"):
        seg.set_classes(["a", "b"], embeddings=emb)
    with pytest.raises(ValueError, match="HxW"):
        seg.predict(np.zeros((2, 3, 4, 5), np.uint8))


def test_pamr_option_changes_logits_and_keeps_shape(tiny_backbone):
    seg = _segmenter(tiny_backbone, refiners=[dict(type="pamr", steps=3, dilations=(1, 2))])
    img = np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    res = seg.predict(img, return_scores=True)
    plain = _segmenter(tiny_backbone).predict(img, return_scores=True)
    assert res.scores.shape == plain.scores.shape
    assert np.abs(res.scores - plain.scores).max() > 1e-4


def test_compiled_forward_and_bf16_agree_with_fp32(tiny_backbone):
    """torch.compile (eager backend: wiring only) is exact; bf16 stays close to fp32."""
    x = torch.randn(2, 3, 64, 96)
    ref = ovdense.OVSegmenter(backbone=tiny_backbone, head="sclip", device="cpu")
    compiled = ovdense.OVSegmenter(backbone=tiny_backbone, head="sclip", device="cpu", compile="eager")
    torch.testing.assert_close(compiled.dense_features(x), ref.dense_features(x))
    import copy

    half = ovdense.OVSegmenter(backbone=copy.deepcopy(tiny_backbone), head="sclip", device="cpu", dtype="bf16")
    low = half.dense_features(x)
    assert low.dtype == torch.float32
    cos = (low * ref.dense_features(x)).sum(1)
    assert cos.min() > 0.98


def test_predict_heads_shares_the_prefix_and_equals_separate_runs(tiny_backbone):
    seg = _segmenter(tiny_backbone, short_side=48)
    img = np.random.default_rng(3).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    calls = []
    original = tiny_backbone.prefix
    tiny_backbone.prefix = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        together = seg.predict_heads(img, ["sclip", "naclip", dict(type="maskclip")], return_scores=True)
    finally:
        del tiny_backbone.prefix
    assert len(calls) == 1 and list(together) == ["sclip", "naclip", "maskclip"]
    for name, res in together.items():
        alone = _segmenter(tiny_backbone, short_side=48, head=name).predict(img, return_scores=True)
        np.testing.assert_allclose(res.scores, alone.scores, atol=1e-5)
        assert np.array_equal(res.label_map, alone.label_map)
