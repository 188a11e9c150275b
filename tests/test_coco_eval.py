"""COCO path: instances from label maps, results that loadRes accepts, AP equal to pycocotools."""

import dataclasses
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, os.path.dirname(__file__))
from fakes import FakeResult, FakeSegmenter  # noqa: E402

from ovdense.datasets import category_index, paint_instances  # noqa: E402
from ovdense.datasets import DatasetError  # noqa: E402
from ovdense.evaluation.coco import (  # noqa: E402
    CocoEvalOptions,
    NoReadableImages,
    build_coco_vocabulary,
    evaluate_coco,
    load_coco_gt,
    run_cocoeval,
)
from ovdense.proposals import build_instances  # noqa: E402
from ovdense.structures import Detections  # noqa: E402

H, W = 48, 64
CATS = [{"id": 3, "name": "cat"}, {"id": 7, "name": "Dog"}, {"id": 12, "name": "traffic light"}]
# (image id, category id, box y0, y1, x0, x1) -- rectangles >= 2 px apart
OBJECTS = [
    (1, 3, 2, 12, 3, 20), (1, 7, 20, 40, 30, 60), (1, 3, 30, 46, 2, 10),
    (2, 12, 5, 9, 5, 9), (2, 7, 10, 47, 20, 63),
    (5, 3, 0, 48, 0, 30),
]


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


@pytest.fixture
def coco_dir(tmp_path):
    """GT JSON (non-contiguous category and image ids) + images; image 9 has no objects."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 5, 9)]
    for im in images:
        Image.fromarray(np.full((H, W, 3), 127, np.uint8)).save(img_dir / im["file_name"])
    anns = []
    for k, (img, cat, y0, y1, x0, x1) in enumerate(OBJECTS, start=1):
        m = np.zeros((H, W), bool)
        m[y0:y1, x0:x1] = True
        rle = _rle(m)
        anns.append({"id": k, "image_id": img, "category_id": cat, "segmentation": rle,
                     "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                     "area": float(mask_utils.area(rle)), "iscrowd": 0})
    gt = {"images": images, "annotations": anns, "categories": CATS}
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(gt))
    return ann_file, img_dir


def _quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _gt_segmenter(ann_file, drop=()):
    coco = _quiet_coco(ann_file)
    by_name = {im["file_name"]: im["id"] for im in coco.dataset["images"]}
    cat_to_label = category_index(coco, background=True)

    def gt_of(path):
        img_id = by_name[Path(path).name]
        lm = paint_instances(coco, img_id, cat_to_label)
        for ann_id in drop:
            ann = coco.anns[ann_id]
            if ann["image_id"] == img_id:
                lm[coco.annToMask(ann).astype(bool)] = 0
        return lm

    return FakeSegmenter(gt_of, num_classes=1, noise=0.0)


def _direct_reference(ann_file, iou_type):
    """Stats of pycocotools run by hand on the GT instances as detections (score 0.9)."""
    coco = _quiet_coco(ann_file)
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
             **{k: a[k] for k in ("bbox", "segmentation") if k != drop}}
            for a in coco.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_predictions_match_pycocotools(coco_dir, tmp_path):
    ann_file, img_dir = coco_dir
    seg = _gt_segmenter(ann_file)
    out = tmp_path / "out"
    res = evaluate_coco(seg, ann_file, img_dir, out_dir=out, progress=False)
    assert seg.class_names == ["background", "cat", "Dog", "traffic light"]
    assert res.num_predictions == len(OBJECTS) and res.num_images == 4
    for t in ("bbox", "segm"):
        np.testing.assert_allclose(res.metrics[t].stats, _direct_reference(ann_file, t))
        assert res.metrics[t].AP == pytest.approx(1.0)
        assert res.metrics[t].per_category == pytest.approx(
            {"cat": 1.0, "Dog": 1.0, "traffic light": 1.0})
    assert res.semantic.mIoU == pytest.approx(100.0)
    # the results file: GT ids, XYWH boxes, str counts, accepted by loadRes
    dets = json.loads((out / "coco_results.json").read_text())
    gt = _quiet_coco(ann_file)
    assert {d["image_id"] for d in dets} <= set(gt.getImgIds())
    assert {d["category_id"] for d in dets} == {3, 7, 12}
    for d in dets:
        assert isinstance(d["segmentation"]["counts"], str)
        np.testing.assert_allclose(d["bbox"], mask_utils.toBbox(d["segmentation"]))
    box = next(d["bbox"] for d in dets if d["image_id"] == 2 and d["category_id"] == 12)
    assert box == [5.0, 5.0, 4.0, 4.0]
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(gt.loadRes(dets).anns) == len(OBJECTS)
    report = json.loads((out / "metrics_coco.json").read_text())
    assert report["segm"]["AP"] == pytest.approx(1.0) and report["versions"]["pycocotools"]


def test_missed_instance_lowers_ap_consistently(coco_dir, tmp_path):
    ann_file, img_dir = coco_dir
    res = evaluate_coco(_gt_segmenter(ann_file, drop=(2,)), ann_file, img_dir,
                        out_dir=tmp_path, progress=False)
    dets = json.loads((tmp_path / "coco_results.json").read_text())
    gt = _quiet_coco(ann_file)
    again = run_cocoeval(gt, dets, "segm", verbose=False)
    assert res.metrics["segm"].AP < 1.0
    assert again.stats == res.metrics["segm"].stats
    assert res.metrics["segm"].per_category["cat"] == pytest.approx(1.0)
    assert res.semantic.mIoU < 100.0


def test_empty_predictions_give_zeros_and_warning(coco_dir):
    ann_file, img_dir = coco_dir
    seg = FakeSegmenter(lambda p: np.zeros((H, W), np.int64), num_classes=1, noise=0.0)
    with pytest.warns(RuntimeWarning, match="no predictions"):
        res = evaluate_coco(seg, ann_file, img_dir, progress=False, semantic=False)
    assert res.num_predictions == 0
    assert res.metrics["segm"].AP == 0.0 and res.metrics["bbox"].stats == [0.0] * 12


def test_vocabulary_from_classes_file(coco_dir, tmp_path):
    coco = _quiet_coco(coco_dir[0])
    f = tmp_path / "names.txt"
    f.write_text("background, floor\nTraffic Light, signal\ndog, puppy\nCAT\n")
    v = build_coco_vocabulary(coco, f)
    assert v.prompts == ["background, floor", "CAT", "dog, puppy", "Traffic Light, signal"]
    assert v.category_of(0) is None and v.category_of(3) == 12
    f.write_text("feline\ncanine\nlamp\n")
    v = build_coco_vocabulary(coco, f, background=False)
    assert v.prompts == ["feline", "canine", "lamp"] and v.category_of(0) == 3
    f.write_text("feline\ncanine\n")
    with pytest.raises(ValueError, match="GT categories"):
        build_coco_vocabulary(coco, f)


def test_connected_components_strategy():
    lm = np.zeros((10, 12), np.int64)
    lm[1:3, 1:3] = 1
    lm[3, 3] = 1          # touches the first blob diagonally: same component (8-connected)
    lm[6:9, 6:11] = 1     # second blob of class 1
    lm[0, 11] = 2         # one pixel of class 2
    scores = np.zeros((3, 10, 12), np.float32)
    scores[1][lm == 1] = 0.5
    scores[1][6:9, 6:11] = 0.8
    res = FakeResult(lm, ["background", "mug", "pen"], scores, has_background=True)
    dets = build_instances(res, "connected_components")
    assert len(dets) == 3 and dets.mask.shape == (3, 10, 12)
    order = np.argsort(dets.confidence)
    np.testing.assert_allclose(dets.confidence[order], [0.0, 0.5, 0.8])
    assert dets.class_name.count("mug") == 2
    big = int(np.argmax(dets.confidence))
    np.testing.assert_array_equal(dets.xyxy[big], [6, 6, 11, 9])
    assert dets.mask[big].sum() == 15
    assert len(build_instances(res, min_area=2)) == 2
    assert len(build_instances(dataclasses.replace(res, has_background=False))) == 4
    empty = build_instances(FakeResult(np.zeros((4, 5), np.int64), ["background", "x"], has_background=True))
    assert empty.xyxy.shape == (0, 4) and empty.mask.shape == (0, 4, 5)
    assert empty.class_id.dtype == np.int64 and isinstance(empty, Detections)


def test_paint_and_convert_coco_object(coco_dir, tmp_path):
    ann_file, _ = coco_dir
    coco = _quiet_coco(ann_file)
    lm = paint_instances(coco, 2, category_index(coco))
    assert lm[6, 6] == 3 and lm[20, 30] == 2 and lm[0, 0] == 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import convert_coco_object as conv

    out = tmp_path / "coco_stuff164k" / "annotations" / "val2017"
    with contextlib.redirect_stdout(io.StringIO()):
        conv.main(["--instances", str(ann_file), "--out", str(out)])
    png = np.array(Image.open(out / "000000000002_instanceTrainIds.png"))
    np.testing.assert_array_equal(png, lm)
    # stuffthingmaps route: thing value (coco_id - 1) -> 1..80, stuff and 255 -> 0
    stuff = tmp_path / "stuff"
    stuff.mkdir()
    Image.fromarray(np.array([[0, 89, 90, 91, 181, 255, 12]], np.uint8)).save(stuff / "a.png")
    with contextlib.redirect_stdout(io.StringIO()):
        conv.main(["--stuff-dir", str(stuff), "--out", str(stuff)])
    got = np.array(Image.open(stuff / "a_instanceTrainIds.png"))
    np.testing.assert_array_equal(got, [[1, 80, 0, 0, 0, 0, 12]])


def test_crowd_policy(coco_dir):
    coco = _quiet_coco(coco_dir[0])
    ann = dict(coco.anns[1], id=99, iscrowd=1, category_id=7)
    coco.dataset["annotations"].append(ann)
    coco.createIndex()
    cat_to_label = category_index(coco)
    assert paint_instances(coco, 1, cat_to_label, crowd="label")[5, 5] == 2
    assert paint_instances(coco, 1, cat_to_label, crowd="ignore")[5, 5] == 255
    assert paint_instances(coco, 1, cat_to_label, crowd="skip")[5, 5] == 1
    assert paint_instances(coco, 9, cat_to_label).max() == 0


def test_background_keyword_is_used_when_available(coco_dir):
    ann_file, img_dir = coco_dir
    seg = _gt_segmenter(ann_file)
    seen = {}

    def set_classes(classes, background=None):
        seen.update(classes=list(classes), background=background)
        seg.class_names = [background] + list(classes)
        seg.num_classes = len(seg.class_names)

    seg.set_classes = set_classes
    res = evaluate_coco(seg, ann_file, img_dir, progress=False, iou_types=("segm",), limit=2)
    assert seen == {"classes": ["cat", "Dog", "traffic light"], "background": "background"}
    assert res.num_images == 2 and res.metrics["segm"].AP == pytest.approx(1.0)


# ------------------------------------------------------------------ the options object
def test_options_object_is_frozen_checked_and_equal_to_the_legacy_keywords(coco_dir, tmp_path):
    ann_file, img_dir = coco_dir
    opts = CocoEvalOptions(iou_types=("segm",), limit=2, progress=False, semantic=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.limit = 3
    assert dataclasses.replace(opts, limit=3).limit == 3 and opts.limit == 2
    assert CocoEvalOptions(iou_types="bbox").iou_types == ("bbox",)
    for bad in ({"iou_types": ("keypoints",)}, {"iou_types": ()}, {"crowd": "maybe"}, {"limit": -1},
                {"max_dets": 0}):
        with pytest.raises(ValueError):
            CocoEvalOptions(**bad)
    with_options = evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, opts)
    with_keywords = evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, iou_types=("segm",), limit=2,
                                  progress=False, semantic=False)
    on_top = evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(progress=False),
                           iou_types=("segm",), limit=2, semantic=False)
    assert with_options.to_dict() == with_keywords.to_dict() == on_top.to_dict()
    assert with_options.num_images == 2 and set(with_options.metrics) == {"segm"}
    with pytest.raises(TypeError, match="min_aera"):
        evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, min_aera=3)


def test_each_image_goes_through_a_detector(coco_dir, tiny_backbone):
    """For an OVSegmenter the runner's per-image step is a Detector (proposal source + scorer):
    with the default source it equals connected components of the image's own prediction;
    a class-agnostic source gets the options' scorer. A test double without features still
    works through its result, and refuses a scorer."""
    from ovdense.evaluation import coco as coco_mod
    from test_contracts import tiny_segmenter

    import extending  # noqa: F401  (test_grid)

    ann_file, img_dir = coco_dir
    path = str(sorted(Path(img_dir).iterdir())[0])
    seg = tiny_segmenter(tiny_backbone)
    dets, res = coco_mod._image_detector(seg, CocoEvalOptions(strategy_options={"min_area": 2}))(path)
    ref = build_instances(seg.predict(path, return_scores=True), min_area=2)
    np.testing.assert_array_equal(dets.mask, ref.mask)
    np.testing.assert_array_equal(dets.confidence, ref.confidence)
    np.testing.assert_array_equal(res.label_map, seg.predict(path).label_map)
    grid, _ = coco_mod._image_detector(seg, CocoEvalOptions(strategy="test_grid", scorer="mask_pooling",
                                                                   strategy_options={"min_std": -1}))(path)
    assert len(grid) and (grid.class_id >= 0).all() and "proposal_score" in grid.data
    lm = np.zeros((10, 12), np.int64)
    lm[6:9, 6:11] = 1

    class Double:
        def predict(self, image, return_scores=False):
            return FakeResult(lm, ["background", "mug"], None, has_background=True)

    dets, _ = coco_mod._image_detector(Double(), CocoEvalOptions(strategy_options={"min_area": 5}))(path)
    assert isinstance(dets, Detections) and len(dets) == 1
    with pytest.raises(ValueError, match="scorer"):
        coco_mod._image_detector(Double(), CocoEvalOptions(scorer="mask_pooling"))


# ------------------------------------------------------------------ printing (finding a)
def test_pycocotools_stdout_is_captured_unless_verbose(coco_dir, capsys):
    ann_file, img_dir = coco_dir
    evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions())
    out = capsys.readouterr().out
    assert "Average Precision" not in out and "per-category" not in out
    assert "background class: added as class 0 (synonyms: background)" in out
    assert len(out.strip().splitlines()) <= 8, out
    evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(verbose=True))
    out = capsys.readouterr().out
    assert out.count("Average Precision") == 12 and "per-category bbox AP" in out and "mIoU" in out
    evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(progress=False))
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ the background class (finding b)
def test_background_class_is_recorded(coco_dir, tmp_path):
    ann_file, img_dir = coco_dir
    res = evaluate_coco(_gt_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(progress=False, out_dir=tmp_path))
    assert res.background_synonyms == ["background"] and res.background_source == "default"
    report = json.loads((tmp_path / "metrics_coco.json").read_text())
    assert report["background"] == {"added": True, "synonyms": ["background"], "source": "default"}
    coco = _quiet_coco(ann_file)
    names = tmp_path / "names.txt"
    names.write_text("background, sky\ncat\ndog\ntraffic light\n")
    v = build_coco_vocabulary(coco, names)
    assert v.background_synonyms == ["background", "sky"] and v.background_source == "classes_file"
    v = build_coco_vocabulary(coco, None, background=False)
    assert v.background_synonyms == [] and v.background_source is None


# ------------------------------------------------------------------ annotation files (finding c)
def test_load_coco_gt_names_the_file_and_the_problem(coco_dir, tmp_path):
    ann_file, _ = coco_dir
    data = json.loads(ann_file.read_text())
    assert sorted(load_coco_gt(ann_file).getImgIds()) == [1, 2, 5, 9]
    cases = {
        "no_categories": ({k: v for k, v in data.items() if k != "categories"}, 'has no "categories" list'),
        "no_annotations": ({k: v for k, v in data.items() if k != "annotations"}, 'has no "annotations" list'),
        "no_images": ({k: v for k, v in data.items() if k != "images"}, 'has no "images" list'),
        "no_height": ({**data, "images": [{"id": 1, "file_name": "a.jpg", "width": 3}]}, 'images[0] has no "height"'),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(DatasetError) as err:
            load_coco_gt(path)
        assert str(path) in str(err.value) and expected in str(err.value)
        assert "\n" not in str(err.value)
    (tmp_path / "bad.json").write_text("{\"images\": [")
    with pytest.raises(DatasetError, match="is not valid JSON"):
        load_coco_gt(tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="not found"):
        load_coco_gt(tmp_path / "missing.json")


# ------------------------------------------------------------------ unreadable images (finding d)
class _ReadingSegmenter(FakeSegmenter):
    def predict(self, image, return_scores=False):
        from ovdense.io.images import load_image

        load_image(image)
        return super().predict(image, return_scores)


def _reading_segmenter(ann_file):
    """Like the real model, reads each image (ImageLoadError on a corrupt file); predicts the GT."""
    return _ReadingSegmenter(_gt_segmenter(ann_file).gt_of, num_classes=1, noise=0.0)


def test_unreadable_image_is_skipped_and_left_out_of_the_metrics(coco_dir, tmp_path, caplog):
    ann_file, img_dir = coco_dir
    (img_dir / "000000000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with caplog.at_level("WARNING", logger="ovdense.evaluation.coco"):
        res = evaluate_coco(_reading_segmenter(ann_file), ann_file, img_dir,
                            CocoEvalOptions(progress=False, out_dir=tmp_path))
    warned = [r.getMessage() for r in caplog.records if "skipped unreadable image" in r.getMessage()]
    assert len(warned) == 1 and "000000000002.jpg" in warned[0]
    assert res.skipped_images == ["000000000002.jpg"] and res.num_images == 3
    # image 2's GT does not count as missed: the other images are predicted perfectly
    assert res.metrics["segm"].AP == pytest.approx(1.0) and res.metrics["bbox"].AP == pytest.approx(1.0)
    report = json.loads((tmp_path / "metrics_coco.json").read_text())
    assert report["num_skipped_images"] == 1 and report["skipped_images"] == ["000000000002.jpg"]
    with pytest.raises(DatasetError, match="unreadable image .*000000000002.jpg"):
        evaluate_coco(_reading_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(progress=False, strict=True))
    for p in img_dir.iterdir():
        p.write_bytes(b"junk")
    with pytest.raises(NoReadableImages, match="none of the 4 images"):
        evaluate_coco(_reading_segmenter(ann_file), ann_file, img_dir, CocoEvalOptions(progress=False))
