"""The per-image context and what runs on it: provider scopes, refine_at, progress, Detector."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ovdense
from ovdense.features.base import FeatureProvider
from ovdense.heads.maskclip import MaskCLIPHead
from ovdense.ops.bilinear import resize_rows
from ovdense.structures import ContextBand, Detections
from test_contracts import tiny_segmenter


class _CountingImageProvider(FeatureProvider):
    """An image-scope provider: mean colour per 8x8 cell of the whole image; counts its runs."""

    scope = "image"

    def __init__(self):
        super().__init__()
        self.runs = []

    def forward(self, images):
        self.runs.append(tuple(images.shape))
        return torch.nn.functional.avg_pool2d(images.float(), 8, ceil_mode=True)


class _ReadsCells(ovdense.refine.Refiner):
    requires = ("cells",)

    def forward(self, logits, band):
        cells = self.band_of(band).map("cells")
        assert cells.shape[-2:] == logits.shape[-2:]
        return logits + 0 * cells[:1]


def test_image_scope_provider_runs_once_on_the_whole_image_and_is_shared(tiny_backbone):
    provider = _CountingImageProvider()
    seg = tiny_segmenter(tiny_backbone, features=dict(cells=provider), refiners=[_ReadsCells()])
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    assert provider.runs == []                       # lazily, on first use
    seg.predict(ctx)
    seg.predict(ctx, vocabulary=seg.encoded_vocabulary)
    seg.max_chunk_mb = 0.002                         # many bands
    seg.predict(ctx)
    assert provider.runs == [(1, 3, 50, 70)]         # once, the whole input image
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].float(), 8,
                                              ceil_mode=True)[0]
    torch.testing.assert_close(ctx.canvas("cells"), expected)


class _NearestCells(_CountingImageProvider):
    """Region-map-like: resized to the canvas by nearest neighbour, windows padded with -1."""

    canvas_interpolation = "nearest"
    pad_value = -1.0


def test_a_head_reads_an_image_scope_map_cut_into_its_windows(tiny_backbone):
    """A head may require an image-scope provider: it runs once on the whole input image before
    the windows, is resized to the canvas the provider's way, cut into the windows with the
    provider's padding, and handed to the head as ``aux``; later stages share the same run."""
    seen = []

    class _Head(MaskCLIPHead):
        requires = ("cells",)

        def forward(self, view, backbone, aux=None):
            seen.append(aux["cells"].clone())
            return super().forward(view, backbone, aux)

    provider = _NearestCells()
    seg = tiny_segmenter(tiny_backbone, head=_Head(), features=dict(cells=provider), refiners=[_ReadsCells()],
                         preprocess=dict(short_side=40), windows=dict(crop=32, stride=24, pad_to=48))
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    assert provider.runs == [(1, 3, 50, 70)]         # the input image, before any window ran
    seg.predict(ctx)
    assert provider.runs == [(1, 3, 50, 70)]         # the refiner reads the same run
    full = torch.nn.functional.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].float(), 8, ceil_mode=True)
    canvas = torch.nn.functional.interpolate(full, size=ctx.resized_size, mode="nearest")[0]
    got = torch.cat(seen)
    assert got.shape[0] == len(ctx.boxes) and got.shape[-2:] == ctx.window_size
    left, right, top, bottom = ctx.pad
    assert any(ctx.pad) and bool((got[:, :, :top] == -1).all()) and bool((got[:, :, :, :left] == -1).all())
    for window, (y1, y2, x1, x2) in zip(got, ctx.boxes):
        torch.testing.assert_close(window[:, top:top + y2 - y1, left:left + x2 - x1], canvas[:, y1:y2, x1:x2])
    assert "cells" not in ctx.aux                    # the canvas map is the image-scope one, not stitched windows


def test_missing_provider_for_a_refiner_is_refused(tiny_backbone):
    with pytest.raises(ValueError, match="_ReadsCells needs the feature provider"):
        tiny_segmenter(tiny_backbone, refiners=[_ReadsCells()])


def test_refine_at_model_refines_the_canvas_then_resizes(tiny_backbone):
    """refine_at="model": PAMR on the logits at the canvas size, then one bilinear resize to the
    output, computed here by hand; it differs from refining at the input size."""
    image = np.random.default_rng(1).integers(0, 256, (90, 60, 3), dtype=np.uint8)
    pamr = dict(type="pamr", steps=2, dilations=(1, 2))
    model = tiny_segmenter(tiny_backbone, refiners=[pamr], refine_at="model", preprocess=dict(short_side=48))
    ctx = model.encode_image(image)
    assert ctx.resized_size == (72, 48)
    got = model.predict(ctx, return_scores=True)
    text = model.encoded_vocabulary.text
    canvas = resize_rows(ctx.canvas_logits(text), (72, 48), 0, 72)
    refined = model.refiners[0](canvas, ctx.band((0, 72), (72, 48)))
    logits = resize_rows(refined, (90, 60), 0, 90)
    scores, labels = model.decoder(logits, model.encoded_vocabulary.query_to_class, 4, has_background=False)
    np.testing.assert_array_equal(got.label_map, labels.numpy())
    np.testing.assert_allclose(got.scores, scores.numpy(), atol=1e-6)
    model.refine_at = "input"
    assert np.abs(model.predict(ctx, return_scores=True).scores - got.scores).max() > 1e-4
    with pytest.raises(ValueError, match="refine_at"):
        tiny_segmenter(tiny_backbone, refine_at="canvas")


def test_progress_reports_rows_band_by_band(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone, max_chunk_mb=0.002)
    image = np.random.default_rng(2).integers(0, 256, (100, 40, 3), dtype=np.uint8)
    calls = []
    seg.predict(image, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 2 and calls[-1] == (100, 100)
    assert all(t == 100 for _, t in calls) and [d for d, _ in calls] == sorted({d for d, _ in calls})


def test_context_band_reads_uint8_rows_and_a_bare_guide(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone)
    image = np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ctx = seg.encode_image(image)
    band = ctx.band((10, 20), (40, 30), halo=4)
    assert band.rows == (6, 24)
    np.testing.assert_array_equal(band.image.permute(1, 2, 0).numpy(), image[6:24])
    model_band = ctx.band((0, 8), ctx.resized_size)
    assert model_band.image.dtype == torch.uint8 and model_band.image.shape[1:] == (8, ctx.resized_size[1])
    bare = ContextBand.coerce(torch.zeros(3, 5, 6))
    assert bare.guide.shape == (3, 5, 6)
    with pytest.raises(ValueError, match="only a guide"):
        bare.map("dino")


def test_detections_data_and_optional_masks():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:3, 2:5] = masks[1, 4:, :2] = masks[2, 0, 7] = True
    dets = Detections.from_masks(masks, confidence=np.array([0.9, 0.2, 0.5]), class_id=np.array([1, 0, 1]),
                                 class_names=["a", "b"], area=masks.sum((1, 2)))
    np.testing.assert_array_equal(dets.xyxy, [[2, 1, 5, 3], [0, 4, 2, 6], [7, 0, 8, 1]])
    assert dets.class_name == ["b", "a", "b"]
    sure = dets[dets.confidence > 0.4]
    np.testing.assert_array_equal(sure.data["area"], [6, 1])
    joined = Detections.cat([sure, dets[1]])
    np.testing.assert_array_equal(joined.data["area"], [6, 1, 4])
    boxes_only = Detections(dets.xyxy, None, dets.confidence, dets.class_id, dets.class_name)
    assert boxes_only[1:].mask is None and len(boxes_only[1:]) == 2
    with pytest.raises(ValueError, match="some parts have masks"):
        Detections.cat([boxes_only, dets])
    with pytest.raises(ValueError, match="data\\['area'\\]"):
        Detections(dets.xyxy, None, dets.confidence, dets.class_id, dets.class_name, data={"area": np.zeros(2)})


def test_detector_needs_a_scorer_for_class_agnostic_proposals(tiny_backbone):
    import extending  # noqa: F401

    seg = tiny_segmenter(tiny_backbone)
    image = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="scorer"):
        ovdense.Detector(seg, proposals="test_grid").detect(image)
    dets, result = ovdense.Detector(seg).detect(image, return_result=True)
    assert result.scores is not None and len(dets) > 0
    np.testing.assert_array_equal(dets.class_id, ovdense.build_instances(result).class_id)


def test_config_sections_are_the_segmenter_arguments():
    """ovdense.config names OVSegmenter's keyword arguments without importing it (no cycle);
    this keeps the two lists equal."""
    import inspect

    from ovdense.config import RUNTIME_OPTIONS, STAGE_SECTIONS

    params = set(inspect.signature(ovdense.OVSegmenter.__init__).parameters) - {"self"}
    assert set(STAGE_SECTIONS) | set(RUNTIME_OPTIONS) == params
