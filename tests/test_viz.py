"""Pictures: overlays (legend, contours, clear unlabelled pixels), contact sheets, result plot/save,
and the evaluation reports (files exist, valid PNGs of the expected sizes, links resolve, worst N)."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from PIL import Image

from ovdense.structures import UNLABELLED, SegmentationResult
from ovdense.viz import contact_sheet, draw_overlay, legend_entries, side_by_side
from ovdense.viz.draw import contour_mask
from ovdense.viz.report import WorstImages, html_links, image_scores

NAMES = ["sky", "cat", "dog", "car", "tree"]


def _blocks(h=40, w=60):
    """A label map of rectangles that touch the image border: classes 1 (largest), 3, 4."""
    lm = np.full((h, w), 1, np.int64)
    lm[5:25, 10:30] = 3
    lm[20:40, 40:60] = 4
    return lm


def _image(h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ overlays
def test_legend_lists_exactly_the_classes_present_sorted_by_area():
    lm = _blocks()
    lm[0:3, 0:3] = UNLABELLED
    entries = legend_entries(lm, NAMES)
    assert [e.name for e in entries] == ["cat", "car", "tree"]  # 0 and 2 absent; by area
    assert [e.pixels for e in entries] == [int((lm == c).sum()) for c in (1, 3, 4)]
    assert entries[0].fraction == pytest.approx((lm == 1).sum() / lm.size)
    # with a background class, class 0 is not an entry even when present
    lm[30:, :10] = 0
    assert [e.index for e in legend_entries(lm, NAMES, has_background=True)] == [1, 3, 4]
    # the legend panel is appended on the right; a short image gets a taller canvas, white below
    img = _image()
    out = draw_overlay(img, lm, NAMES, has_background=True)
    assert out.shape[0] >= 40 and out.shape[1] > 60
    np.testing.assert_array_equal(out[:40, :60], draw_overlay(img, lm, NAMES, has_background=True, legend=False))
    assert (out[40:, :60] == 255).all()


def _boundary(lm, connectivity):
    """Pixels with a neighbour of another label (the image border is not a boundary)."""
    p = np.pad(lm, 1, mode="edge")
    h, w = lm.shape
    offs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        offs += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    out = np.zeros(lm.shape, bool)
    for dy, dx in offs:
        out |= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != lm
    return out


def test_contours_only_at_class_boundaries():
    lm = _blocks()
    lm[30:36, 2:8] = 2  # an island
    img = _image()
    plain = draw_overlay(img, lm, NAMES, contours=False, legend=False)
    lined = draw_overlay(img, lm, NAMES, contours=True, legend=False, thickness=1)
    changed = (plain != lined).any(axis=2)
    drawn = contour_mask(lm, [1, 2, 3, 4], thickness=1)
    assert changed.any()
    assert not (changed & ~drawn).any()
    assert not (drawn & ~_boundary(lm, 8)).any()          # only at class boundaries ...
    inner4 = _boundary(lm, 4)
    assert (drawn & inner4).sum() >= 0.95 * inner4.sum()  # ... and along all of them
    assert not drawn[0, :].any() and not drawn[:, 0].any()  # the image border is no boundary
    # contour pixels carry their class's full colour
    from ovdense.viz import class_colors

    cols = class_colors(len(NAMES))
    ys, xs = np.nonzero(drawn)
    assert (lined[ys, xs] == cols[lm[ys, xs]]).all()


def test_unlabelled_and_background_pixels_stay_clear():
    lm = _blocks()
    lm[0:10, 0:10] = UNLABELLED
    lm[30:40, 0:20] = 0
    lm[12:16, 45:50] = 255  # a value outside the classes (GT ignore) is unlabelled too
    img = _image()
    out = draw_overlay(img, lm, NAMES, has_background=True, legend=False)
    clear = (lm == UNLABELLED) | (lm == 0) | (lm == 255)
    assert (out[clear] == img[clear]).all()
    assert (out[~clear] != img[~clear]).any(axis=-1).mean() > 0.9
    hatched = draw_overlay(img, lm, NAMES, has_background=True, legend=False, unlabelled="hatch")
    unl = (lm == UNLABELLED) | (lm == 255)
    assert (hatched[unl] != img[unl]).any(axis=-1).mean() > 0.15
    assert (hatched[lm == 0] == img[lm == 0]).all()
    with pytest.raises(ValueError, match="unlabelled"):
        draw_overlay(img, lm, NAMES, unlabelled="grey")


def test_overlay_sizes_and_side_by_side():
    lm, img = _blocks(), _image()
    assert draw_overlay(img, lm, NAMES, legend=False).shape == (40, 60, 3)
    blank = draw_overlay(None, lm, NAMES, legend=False)
    assert blank.shape == (40, 60, 3) and blank.dtype == np.uint8
    many = np.arange(40 * 60).reshape(40, 60) % 30  # 30 classes on a short image: legend in columns
    names = [f"class number {i}" for i in range(30)]
    with_legend = draw_overlay(None, many, names)
    assert with_legend.shape[1] > 60 and with_legend.shape[0] <= 240  # 3 columns of 12 rows
    pair = side_by_side([img, with_legend], titles=["image", "prediction"], gap=6)
    assert pair.shape[1] == 60 + 6 + with_legend.shape[1]
    assert pair.shape[0] > with_legend.shape[0]  # title bars on top
    with pytest.raises(ValueError):
        draw_overlay(_image(10, 10), lm, NAMES)


def test_contact_sheet_grid_and_captions(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"img_{i}.png"
        Image.fromarray(_image(30 + 10 * i, 40, seed=i)).save(p)
        paths.append(str(p))
    items = paths + [("array.png", _image(50, 20)), str(tmp_path / "missing.jpg")]
    out = contact_sheet(items, tmp_path / "sheet" / "contact_sheet.png", thumb_size=64)
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        w, h = im.size
    assert w == 3 * 64 + 4 * 8  # 5 items: 3 columns, 2 rows
    assert 2 * 64 < h < 2 * 64 + 120
    capped = contact_sheet(paths, tmp_path / "c.jpg", thumb_size=32, max_items=2, columns=1)
    with Image.open(capped) as im:
        assert im.format == "JPEG" and im.size[0] == 32 + 2 * 8


def test_result_plot_and_save(tmp_path):
    lm = _blocks()
    lm[0:4, 0:4] = UNLABELLED
    res = SegmentationResult(label_map=lm, class_names=NAMES)
    img = _image()
    pic = res.plot(img)
    assert pic.shape[0] >= 40 and pic.shape[1] > 60 and pic.dtype == np.uint8
    assert (pic[:4, :4] == img[:4, :4]).all()
    assert res.plot(legend=False).shape == (40, 60, 3)  # blank canvas
    # a smaller result (resolution="model") is drawn over the resized image
    assert SegmentationResult(lm[::2, ::2], NAMES).plot(img, legend=False).shape == (20, 30, 3)
    # path of the result is used when no image is given
    Image.fromarray(img).save(tmp_path / "in.png")
    with_path = SegmentationResult(lm, NAMES, path=str(tmp_path / "in.png"))
    assert (with_path.plot(legend=False)[:4, :4] == img[:4, :4]).all()

    out = res.save(str(tmp_path / "o" / "overlay.png"), img)
    with Image.open(out) as im:
        assert im.size == (pic.shape[1], pic.shape[0]) and im.mode == "RGB"
    np.testing.assert_array_equal(np.load(res.save(str(tmp_path / "lm.npy"))), lm)
    lab = res.save(str(tmp_path / "labels.png"), labels=True)
    with Image.open(lab) as im:
        arr = np.asarray(im)
    assert im.mode == "P" and arr[0, 0] == 255 and arr[10, 20] == 3
    with pytest.raises(ValueError, match="extension"):
        res.save(str(tmp_path / "x.txt"))


# ------------------------------------------------------------------------------------ worst N
def test_worst_images_keeps_the_k_lowest_in_bounded_memory():
    rng = np.random.default_rng(0)
    scores = rng.random(200) * 100
    tracker = WorstImages(5)
    held = 0
    for i, s in enumerate(scores):
        tracker.offer(float(s), f"im{i}", prediction=np.full((2, 2), i))
        held = max(held, len(tracker))
    tracker.offer(float("nan"), "nan-image")
    assert held == 5
    expected = [f"im{i}" for i in np.argsort(scores)[:5]]
    assert [w.image_id for w in tracker.items()] == expected
    assert all(w.prediction[0, 0] == int(w.image_id[2:]) for w in tracker.items())
    assert WorstImages(0).offer(1.0, "a") is False


def test_triptych_of_a_large_image_is_shrunk():
    from ovdense.viz.report import render_triptych

    lm = np.zeros((1000, 1500), np.int64)
    lm[200:600, 300:900] = 2
    pic = render_triptych(np.zeros((1000, 1500, 3), np.uint8), lm, lm, NAMES, title="big")
    assert 3 * 640 < pic.shape[1] < 3 * 640 + 400 and 427 < pic.shape[0] < 427 + 100
    small = render_triptych(_image(), _blocks(), _blocks(), NAMES)  # 40 x 60: enlarged 5x to 200 x 300
    assert 3 * 300 < small.shape[1] < 3 * 300 + 400 and 200 < small.shape[0] < 200 + 60


def test_image_scores_by_hand():
    m = np.array([[8, 2], [0, 6]])  # class 0: 8/(10+8-8)=0.8; class 1: 6/(8)=0.75
    miou, acc = image_scores(m)
    assert miou == pytest.approx((0.8 + 0.75) / 2 * 100)
    assert acc == pytest.approx(14 / 16 * 100)
    assert np.isnan(image_scores(np.zeros((3, 3)))[0])


# ------------------------------------------------------------------------------------ reports
H, W = 24, 32
SHIFTS = [3, 0, 7, 6, 5, 2, 1, 4]  # image i's prediction moves the class border right by SHIFTS[i]


def _expected_miou(d):
    """GT: class 0 left of column 16, class 1 right; the prediction's border is d columns right."""
    return (16 / (16 + d) + (16 - d) / 16) / 2 * 100


@dataclass
class _Sample:
    image_id: str
    image_path: Path
    gt_path: Path


class _Dataset:
    name = "halves"
    num_classes = 2

    def __init__(self, root: Path, write: bool = True):
        self.samples = []
        root.mkdir(parents=True, exist_ok=True)
        for i in range(len(SHIFTS)):
            img, gt = root / f"im{i}.png", root / f"im{i}_gt.npy"
            if write:
                Image.fromarray(_image(H, W, seed=i)).save(img)
                lm = np.zeros((H, W), np.uint8)
                lm[:, 16:] = 1
                lm[0, 0] = 255  # one ignored pixel
                np.save(gt, lm)
            self.samples.append(_Sample(f"im{i}", img, gt))

    def load_gt(self, gt_path):
        return np.load(gt_path)


@dataclass
class _Result:
    label_map: np.ndarray
    class_names: list
    has_background: bool = False
    scores: Optional[Any] = None


class _ShiftSegmenter:
    class_names = ["left", "right"]

    def predict(self, path, return_scores=False):
        d = SHIFTS[int(re.search(r"im(\d+)", str(path)).group(1))]
        lm = np.zeros((H, W), np.int64)
        lm[:, 16 + d:] = 1
        return _Result(lm, list(self.class_names))


def _check_report(folder: Path):
    """report.html exists, references only existing files, every PNG opens; returns the sizes."""
    page = (folder / "report.html").read_text()
    links = html_links(page)
    assert links
    sizes = {}
    for link in links:
        assert not link.startswith(("http:", "https:", "//", "/")), link
        target = (folder / link).resolve()
        assert target.is_file(), link
        if link.endswith(".png"):
            with Image.open(target) as im:
                im.verify()
            with Image.open(target) as im:
                assert im.format == "PNG"
                sizes[link] = im.size
    assert "<script" not in page.lower()
    return page, sizes


def test_semantic_report_files_sizes_links_and_worst(tmp_path):
    pytest.importorskip("matplotlib")
    from ovdense.evaluation.semantic_runner import evaluate_semantic
    from ovdense.viz.charts import confusion_figsize

    ds = _Dataset(tmp_path / "data")
    out = tmp_path / "run"
    metrics = evaluate_semantic(_ShiftSegmenter(), ds, out_dir=out, progress=False, report=True, report_worst=3)
    folder = out / "report"
    page, sizes = _check_report(folder)
    assert "../metrics.json" in html_links(page)
    # per-image scores by hand (the ignored pixel is not counted: column 0 is class 0 in both)
    rows = [ln.split(",") for ln in (folder / "per_image.csv").read_text().splitlines()[1:]]
    got = {r[0]: float(r[1]) for r in rows}
    for i, d in enumerate(SHIFTS):
        left_gt = 16 * H - 1
        exp = (left_gt / (left_gt + d * H) + (16 - d) / 16) / 2 * 100
        assert got[f"im{i}"] == pytest.approx(exp, abs=1e-3)
    # the three truly worst images (largest shifts 7, 6, 5), worst first
    worst = sorted(range(len(SHIFTS)), key=lambda i: -SHIFTS[i])[:3]
    pictures = sorted(p.name for p in (folder / "worst").iterdir())
    assert pictures == [f"{k + 1:02d}_im{i}.png" for k, i in enumerate(worst)]
    assert [f"worst/{p}" for p in pictures] == [ln for ln in html_links(page) if ln.startswith("worst/")]
    tw, th = sizes["worst/01_im2.png"]
    assert tw > 3 * 8 * W and 8 * H < th < 8 * H + 80  # image | GT | prediction | legend, title bars (24 x 32: 8x)
    # chart sizes follow the class count (100 dpi)
    assert sizes["per_class_iou.png"] == (750, round(100 * (1.3 + 0.22 * 2)))
    side = confusion_figsize(2)[0]
    assert sizes["confusion.png"] == (round(100 * (side + 1.2)), round(100 * side))
    assert f"{metrics.mIoU:.2f}" in page


def _report_worker(rank, world, port, data, out):
    """One rank of a torchrun-like report run (environment as torchrun sets it)."""
    import torch

    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from ovdense.evaluation.semantic_runner import evaluate_semantic

    evaluate_semantic(_ShiftSegmenter(), _Dataset(Path(data), write=False), out_dir=out, progress=False,
                      report=True, report_worst=3)


@pytest.mark.slow
def test_sharded_report_draws_the_global_worst(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from fakes import run_ranks

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    _Dataset(tmp_path / "data")
    out = tmp_path / "run"
    run_ranks(_report_worker, str(tmp_path / "data"), str(out))
    folder = out / "report"
    _check_report(folder)
    worst = sorted(range(len(SHIFTS)), key=lambda i: -SHIFTS[i])[:3]  # im2, im4 on rank 0; im3 on rank 1
    assert sorted(p.name for p in (folder / "worst").iterdir()) == [f"{k + 1:02d}_im{i}.png"
                                                                    for k, i in enumerate(worst)]
    assert len((folder / "per_image.csv").read_text().splitlines()) == 1 + len(SHIFTS)


def test_report_needs_a_folder_and_report_dir_implies_report(tmp_path):
    from ovdense.evaluation.semantic_runner import evaluate_semantic

    ds = _Dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="report needs"):
        evaluate_semantic(_ShiftSegmenter(), ds, progress=False, report=True)
    pytest.importorskip("matplotlib")
    evaluate_semantic(_ShiftSegmenter(), ds, progress=False, report_dir=tmp_path / "r", limit=2)
    _check_report(tmp_path / "r")
    assert len(list((tmp_path / "r" / "worst").iterdir())) == 2


def test_confusion_image_grows_sensibly_with_classes(tmp_path):
    pytest.importorskip("matplotlib")
    from ovdense.viz.charts import confusion_image

    sizes = []
    rng = np.random.default_rng(0)
    for c in (5, 21, 150):
        m = rng.integers(0, 50, (c, c)) + np.eye(c, dtype=np.int64) * 500
        names = [f"class {i}" for i in range(c)]
        with Image.open(confusion_image(m, names, tmp_path / f"conf{c}.png", annotate=c < 10)) as im:
            sizes.append(im.size)
    (w5, h5), (w21, h21), (w150, h150) = sizes
    assert w5 < w21 < w150 and h5 < h21 < h150
    assert h150 <= 3200 and w150 <= 3400  # 150 classes stay a usable picture ...
    assert (h150 - 280) / 150 >= 14        # ... with >= 14 px per class row


def test_coco_report(tmp_path):
    pytest.importorskip("matplotlib")
    import cv2

    from ovdense.evaluation.coco import evaluate_coco
    from ovdense.synthetic import WorldV2

    root = tmp_path / "coco"
    ann = WorldV2(seed=0).write_coco(str(root), n=3)

    class Seg:
        def set_classes(self, names, background=None):
            self.names = ([background] if background else []) + list(names)

        def predict(self, path, return_scores=False):
            lab = cv2.imread(str(root / "labels" / Path(path).name), cv2.IMREAD_UNCHANGED).astype(np.int64) + 1
            lab[lab <= 4] = 0  # stuff is not annotated: background
            lab[:, :20] = 0    # a missed strip lowers the AP
            sc = np.zeros((len(self.names),) + lab.shape, np.float32)
            np.put_along_axis(sc, lab[None], 0.9, axis=0)
            return _Result(lab, list(self.names), True, sc)

    res = evaluate_coco(Seg(), ann, root / "images", out_dir=tmp_path / "out", progress=False, report=True)
    folder = tmp_path / "out" / "report"
    page, sizes = _check_report(folder)
    assert sizes["pr_curves.png"] == (1040, 460)
    assert {"per_category_ap_bbox.png", "per_category_ap_segm.png", "per_class_iou.png",
            "confusion.png", "../metrics_coco.json"} <= set(html_links(page))
    assert f"{res.metrics['segm'].AP:.3f}" in page
    # the precision arrays stay out of the JSON
    assert '"pr"' not in (tmp_path / "out" / "metrics_coco.json").read_text()
    assert "pr" not in res.to_dict()["segm"]
