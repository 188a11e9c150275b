"""Automatic SAM masks (ovdense.sam.automatic) equal segment-anything's SamAutomaticMaskGenerator:
the same records (masks, scores, boxes, points, crop boxes) in the same order, on the tiny SAM
fixture (tests/fixtures/synth_sam, SYNTHETIC) and held-out world v2 scenes; the sam_automatic
proposal source through a Detector, with the image embedding computed once per image."""
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything")

import ovdense  # noqa: E402
from ovdense.sam import AutomaticMaskGenerator, build_sam, embed_image  # noqa: E402
from ovdense.sam.automatic import AutomaticMaskSettings, automatic_masks, upscale_logits  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAM_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_sam")
SAM_SPEC = dict(type="sam", model_config=os.path.join(SAM_DIR, "model.json"),
                checkpoint=os.path.join(SAM_DIR, "synth_sam.pt"))
THR0 = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)  # the tiny SAM keeps few masks at SAM's defaults


@pytest.fixture(scope="module")
def sam():
    torch.set_num_threads(2)
    return build_sam(model_config=SAM_SPEC["model_config"], checkpoint=SAM_SPEC["checkpoint"])


@pytest.fixture(scope="module")
def scenes():
    from ovdense.synthetic import WorldV2

    w = WorldV2(seed=0)
    return [w.sample(i).image for i in w.indices("eval", 3, 0)]  # held-out scenes, 160 x 224


def official(sam, image, **knobs):
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(sam, **knobs).generate(image)


def assert_same_records(ours, theirs):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.keys() == b.keys()
        for key in b:
            x, y = a[key], b[key]
            if isinstance(y, np.ndarray):
                assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y), (i, key)
            elif isinstance(y, float) and math.isnan(y):  # empty mask kept with stability_score_thresh=0
                assert math.isnan(x), (i, key)
            else:
                assert x == y, (i, key, x, y)


CASES = {
    "8pts-thresholds0": (0, slice(None), dict(points_per_side=8, **THR0)),
    "thresholds": (1, slice(None), dict(points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.7)),
    "crop-layer-nonsquare": (2, (slice(0, 150), slice(0, 201)), dict(points_per_side=6, crop_n_layers=1, **THR0)),
    "min-region-area": (1, slice(None), dict(points_per_side=8, min_mask_region_area=40, **THR0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_sam_automatic_mask_generator(case, sam, scenes):
    index, crop, knobs = CASES[case]
    image = np.ascontiguousarray(scenes[index][crop])
    theirs = official(sam, image, **knobs)
    ours = AutomaticMaskGenerator(sam, **knobs).generate(image)
    assert len(theirs) > 0
    assert_same_records(ours.records(), theirs)
    assert ours.masks.shape == (len(theirs),) + image.shape[:2]
    np.testing.assert_array_equal(ours.areas, ours.masks.reshape(len(ours), -1).sum(1))


def test_output_modes_and_a_given_embedding(sam, scenes):
    """coco_rle and uncompressed_rle records equal SAM's; the shared embedding serves crop 0."""
    image = scenes[0]
    knobs = dict(points_per_side=6, **THR0)
    ours = AutomaticMaskGenerator(sam, **knobs).generate(image, embedding=embed_image(sam, image))
    for mode in ("coco_rle", "uncompressed_rle"):
        assert_same_records(ours.records(mode), official(sam, image, output_mode=mode, **knobs))
    gen = AutomaticMaskGenerator(sam, output_mode="coco_rle", **knobs)
    assert_same_records(gen(image), official(sam, image, output_mode="coco_rle", **knobs))


def test_nothing_kept_and_max_masks(sam, scenes):
    image = scenes[0]
    none = AutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=5.0).generate(image)
    assert len(none) == 0 and none.records() == [] and none.masks.shape == (0, 160, 224)
    assert official(sam, image, points_per_side=4, pred_iou_thresh=5.0) == []
    full = AutomaticMaskGenerator(sam, points_per_side=6, **THR0).generate(image)
    capped = AutomaticMaskGenerator(sam, points_per_side=6, max_masks=3, **THR0).generate(image)
    assert len(full) > 3 and len(capped) == 3
    assert_same_records(capped.records(), full.records()[:3])


@pytest.mark.parametrize("side, size, original", [
    (1024, 256, (480, 640)), (1024, 256, (1500, 1000)), (1024, 256, (37, 53)),   # released SAMs' sizes
    (224, 112, (160, 224)), (224, 112, (150, 201)), (224, 112, (224, 100)),      # the tiny SAM
    (96, 32, (50, 70)),                                                          # a 3x step
])
def test_upscale_logits_equals_postprocess_masks(side, size, original):
    """Cutting the first bilinear step to the rows and columns kept changes no value."""
    from segment_anything.modeling import Sam

    scale = side / max(original)
    input_size = (int(original[0] * scale + 0.5), int(original[1] * scale + 0.5))
    stub = SimpleNamespace(image_encoder=SimpleNamespace(img_size=side))
    emb = SimpleNamespace(input_size=input_size, original_size=original)
    torch.manual_seed(0)
    low = torch.randn(2, 3, size, size) * 4
    ref = Sam.postprocess_masks(stub, low, input_size, original)
    assert torch.equal(upscale_logits(stub, emb, low.flatten(0, 1)), ref.flatten(0, 1))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="exactly one of points_per_side or point_grids"):
        AutomaticMaskSettings(points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        AutomaticMaskSettings(output_mode="png")
    with pytest.raises(ValueError, match="one grid per crop layer"):
        AutomaticMaskSettings(points_per_side=None, point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1)


# ------------------------------------------------------------------ the proposal source
@pytest.fixture(scope="module")
def seg(tiny_backbone):
    torch.manual_seed(0)
    segmenter = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", features=dict(sam=dict(SAM_SPEC)),
                                    device="cpu", preprocess=dict(short_side=None), windows=dict(crop=32, stride=16),
                                    text_encoder=dict(cache_dir=""))
    torch.manual_seed(1)
    segmenter.set_classes(["bg", "a", "b", "c"], embeddings=torch.randn(4, tiny_backbone.embed_dim))
    return segmenter


def test_proposal_source_through_a_detector_shares_one_embedding(seg, scenes):
    image = scenes[1]
    knobs = dict(points_per_side=8, **THR0)
    provider = seg.features["sam"]
    calls = []
    hook = provider.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        ctx = seg.encode_image(image)
        det = ovdense.Detector(seg, proposals=dict(type="sam_automatic", **knobs), scorer="mask_pooling")
        assert det.requires == ("sam",)
        dets = det.detect(ctx)
        proposals = det.source(ctx)
        again = ovdense.registry.build(ovdense.registry.PROPOSALS, dict(type="sam_automatic", provider="sam", **knobs))
        assert automatic_masks(ctx, "sam", again.settings) is det.source.masks(ctx)  # shared per image
        provider.embedding(ctx)
        assert len(calls) == 1  # one image embedding for every SAM stage of the image
    finally:
        hook.remove()
    records = [r for r in official(provider.sam, image, **knobs) if r["area"] > 0]
    assert len(proposals) == len(records) > 0
    assert (proposals.class_id == ovdense.structures.UNLABELLED).all()
    for i, r in enumerate(records):
        assert np.array_equal(proposals.mask[i], r["segmentation"])
        x, y, w, h = r["bbox"]
        assert proposals.xyxy[i].tolist() == [x, y, x + w + 1, y + h + 1]
        assert proposals.data["predicted_iou"][i] == np.float32(r["predicted_iou"])
        assert proposals.data["stability_score"][i] == np.float32(r["stability_score"])
        assert proposals.confidence[i] == np.clip(np.float32(r["predicted_iou"]), 0, 1)
    assert 0 < len(dets) <= len(proposals) and (dets.class_id >= 0).all()
    assert dets.mask.shape[1:] == image.shape[:2]


def test_proposal_source_needs_a_sam_provider(tiny_backbone, scenes):
    plain = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu",
                                preprocess=dict(short_side=None), windows=dict(crop=32, stride=16),
                                text_encoder=dict(cache_dir=""))
    with pytest.raises(ValueError, match="sam"):
        ovdense.Detector(plain, proposals="sam_automatic", scorer="mask_pooling")
    source = ovdense.registry.build(ovdense.registry.PROPOSALS, dict(type="sam_automatic", provider="other"))
    with pytest.raises(KeyError, match="SAM provider 'other'"):
        source(SimpleNamespace(providers={}, image=scenes[0]))


# ------------------------------------------------------------------ slow: SAM's settings
@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_equals_sam_at_sam_defaults(sam, scenes, index):
    """32 points per side, SAM's thresholds (about 9 s per image for SAM's own generator)."""
    theirs = official(sam, scenes[index])
    assert_same_records(AutomaticMaskGenerator(sam).generate(scenes[index]).records(), theirs)


@pytest.mark.slow
@pytest.mark.parametrize("knobs", [
    dict(points_per_side=16, **THR0),
    dict(points_per_side=16, crop_n_layers=1, crop_n_points_downscale_factor=2, **THR0),
    dict(points_per_side=16, min_mask_region_area=25, box_nms_thresh=0.5, **THR0),
    dict(points_per_side=16, pred_iou_thresh=0.86, stability_score_thresh=0.92, points_per_batch=50),
], ids=["16pts-thresholds0", "crop-layer", "min-region", "fixture-test-thresholds"])
def test_equals_sam_on_held_out_scenes(sam, scenes, knobs):
    for image in (scenes[0], scenes[2], np.ascontiguousarray(scenes[1][:, :150])):
        assert_same_records(AutomaticMaskGenerator(sam, masks_per_chunk=7, **knobs).generate(image).records(),
                            official(sam, image, **knobs))


def test_benchmark_checks_both_generators(scenes):
    from ovdense.bench.sam_masks import benchmark_automatic_masks, format_automatic_masks

    report = benchmark_automatic_masks(model_config=SAM_SPEC["model_config"], checkpoint=SAM_SPEC["checkpoint"],
                                       image=scenes[0], settings={"4_points": dict(points_per_side=4, **THR0)})
    row = report["settings"]["4_points"]
    assert row["identical"] is True and row["masks"] > 0 and row["official_s"] > 0 and row["ours_s"] > 0
    assert report["image_size"] == [160, 224] and "4_points" in format_automatic_masks(report)


def test_mask_boxes_equal_batched_mask_to_box():
    from segment_anything.utils.amg import batched_mask_to_box

    from ovdense.sam.automatic import mask_boxes

    torch.manual_seed(0)
    masks = torch.rand(6, 17, 23) > 0.97
    masks[0] = False
    masks[1] = True
    masks[2, 5, 7] = True
    assert torch.equal(mask_boxes(masks.any(-1), masks.any(-2)), batched_mask_to_box(masks))
