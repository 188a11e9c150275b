"""The README "Extending" exercises, each one file in ``tests/extending`` plus its registration,
run end to end through OVSegmenter and Detector and checked against independent computations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import extending  # noqa: F401  (registers test_dino_affinity, test_grid, test_background_map)
import ovdense
from ovdense.decode import synonym_max
from ovdense.ops import resize_rows
from test_contracts import PROVIDER_FOR_TESTS, _ExtraHead, tiny_segmenter


def _image(shape=(72, 56), seed=0):
    image = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    image[:, :20] = (200, 30, 30)
    return image


def test_context_stitches_provider_windows_on_the_canvas(tiny_backbone):
    """``canvas("dino")``: each window's provider output resized to the window and overlaps
    averaged, computed here window by window from the provider itself."""
    seg = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS))
    image = _image()
    ctx = seg.encode_image(image, requires=["dino"])
    raw = torch.from_numpy(image).permute(2, 0, 1)
    total = torch.zeros(48, 72, 56)
    count = torch.zeros(1, 72, 56)
    for y1, y2, x1, x2 in ctx.boxes:
        with torch.no_grad():
            out = seg.features["dino"](raw[None, :, y1:y2, x1:x2])
        total[:, y1:y2, x1:x2] += F.interpolate(out, size=(y2 - y1, x2 - x1), mode="bilinear",
                                                align_corners=False)[0]
        count[:, y1:y2, x1:x2] += 1
    torch.testing.assert_close(ctx.canvas("dino"), total / count, atol=1e-5, rtol=1e-5)


def test_exercise_refiner_reads_dino_features_from_the_context(tiny_backbone):
    """The DINO-affinity refiner changes the labels (it is not a no-op), its result depends on
    the DINO features it reads, and banded output equals one band."""
    image = _image()
    plain = tiny_segmenter(tiny_backbone).predict(image, return_scores=True)
    spec = dict(type="test_dino_affinity", steps=3, dilation=2)
    seg = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS), refiners=[spec])
    refined = seg.predict(image, return_scores=True)
    assert np.abs(refined.scores - plain.scores).max() > 1e-3
    seg.max_chunk_mb = 0.005  # bands of 16 rows with a 6-row halo
    np.testing.assert_array_equal(seg.predict(image).label_map, refined.label_map)
    other = tiny_segmenter(tiny_backbone, features=dict(dino=PROVIDER_FOR_TESTS), refiners=[spec])
    torch.manual_seed(123)
    for param in other.features["dino"].parameters():  # other DINO weights, same everything else
        torch.nn.init.normal_(param, std=0.05)
    assert np.abs(other.predict(image, return_scores=True).scores - refined.scores).max() > 1e-4


def test_exercise_grid_proposals_scored_by_mask_pooling(tiny_backbone):
    """Grid cells of the uint8 image (flat cells skipped), classified by mask pooling: each
    detection's class and confidence equal softmax(scale * mean logit over the mask) computed
    from the full-resolution query logits."""
    seg = tiny_segmenter(tiny_backbone)
    image = _image()
    vocab = seg.encode_vocabulary(["a", "b", "c"], embeddings=torch.randn(3, tiny_backbone.embed_dim))
    det = ovdense.Detector(seg, proposals=dict(type="test_grid", cell=16), scorer="mask_pooling")
    dets = det.detect(image, vocabulary=vocab)
    # 20 px of flat red: the first column of 16 px cells is flat, the second is not
    assert len(dets) == 5 * 3 and dets.xyxy[:, 0].min() == 16
    logits = seg.query_logits(seg.encode_image(image), vocab)
    for mask, cls, conf in zip(dets.mask, dets.class_id, dets.confidence):
        mean = logits[:, torch.from_numpy(mask)].mean(1)
        probs = synonym_max(torch.softmax(mean * seg.decoder.logit_scale, 0), vocab.query_to_class, 3)
        assert int(probs.argmax()) == cls
        assert abs(float(probs.max()) - conf) < 1e-4
    assert np.all(dets.data["proposal_score"] == 1.0)


def test_mask_pooling_sees_the_decoders_window_rules(tiny_backbone):
    """A region scorer scores what the decoder decodes: with a window rule (a constant background
    score), each detection's class and confidence come from the rule's logits, not the raw cosines."""
    image = _image()
    seg = tiny_segmenter(tiny_backbone, decode=dict(rules=[dict(type="constant_background", score=0.05)]))
    torch.manual_seed(3)
    vocab = seg.encode_vocabulary(["a", "b", "c"], background="bg", embeddings=torch.randn(4, tiny_backbone.embed_dim))
    ctx = seg.encode_image(image)
    ruled = seg.query_logits(ctx, vocab)
    raw = resize_rows(ctx.canvas_logits(vocab.text), tuple(image.shape[:2]), 0, image.shape[0])
    assert (ruled - raw).abs().max() > 0.1  # the rule moves the logits
    torch.testing.assert_close(resize_rows(ctx.vocabulary_logits(vocab), tuple(image.shape[:2]), 0, image.shape[0]),
                               ruled)
    det = ovdense.Detector(seg, proposals=dict(type="test_grid", cell=16), scorer=dict(type="mask_pooling",
                                                                                        drop_background=False))
    dets = det.detect(image, vocabulary=vocab)
    assert len(dets) == 5 * 3
    for mask, cls, conf in zip(dets.mask, dets.class_id, dets.confidence):
        mean = ruled[:, torch.from_numpy(mask)].mean(1)
        probs = synonym_max(torch.softmax(mean * seg.decoder.logit_scale, 0), vocab.query_to_class, 4)
        assert int(probs.argmax()) == cls
        assert abs(float(probs.max()) - conf) < 1e-4
    assert (dets.class_id == 0).any()  # the constant background wins some cells


def test_exercise_rule_reads_the_heads_background_map(tiny_backbone):
    """Pixels where the head's background extra (resized to the output) exceeds 0.5 become the
    background class; every other pixel keeps the label it has without the rule."""
    image = _image()
    rule = dict(type="test_background_map", threshold=0.5)
    with_rule = tiny_segmenter(tiny_backbone, head=_ExtraHead(), decode=dict(rules=[rule]))
    without = tiny_segmenter(tiny_backbone, head=_ExtraHead())
    torch.manual_seed(7)
    emb = torch.randn(4, tiny_backbone.embed_dim)
    for seg in (with_rule, without):
        seg.set_classes(["a", "b", "c"], background="bg", embeddings=emb)
    ctx = with_rule.encode_image(image)
    background = ctx.band((0, 72), (72, 56)).map("background")[0].numpy() > 0.5
    assert 0.05 < background.mean() < 0.95
    got = with_rule.predict(image).label_map
    ref = without.predict(image).label_map
    assert np.all(got[background] == 0)
    np.testing.assert_array_equal(got[~background], ref[~background])


def test_synthetic_helpers_build_the_providers_a_stage_requires():
    """tools/synthetic_eval builds the tiny DINO fixture for every name a head or refiner requires."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    import synthetic_eval as se

    assert se.synthetic_providers("naclip") == {}
    seg = se.build("maskclip", *se.fixture_v2(), world="v2", refiners=[dict(type="test_dino_affinity")])
    provider = seg.features["dino"]
    assert provider.patch_size == (8, 8)
    fixture = torch.load(os.path.join(se.FIXTURE_DIR_DINO, "synth_dino.pt"), weights_only=True)
    key = next(k for k in fixture if k.endswith("blocks.0.attn.qkv.weight"))
    torch.testing.assert_close(provider.model.blocks[0].attn.qkv.weight, fixture[key].float())
