"""`ovdense eval-coco` as a user meets it: what it prints, what it writes, how it fails.

Most tests call the CLI's ``main([...])`` in-process with the model replaced by a fake that
reads each image (as the real segmenter does, so a corrupt file fails the same way) and predicts
the painted ground truth; one test runs the real entry point (``python -m ovdense``) on the
tiny random CLIP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from conftest import TINY_CONFIG  # noqa: E402
from fakes import FakeSegmenter  # noqa: E402

from ovdense.cli import main  # noqa: E402

H, W = 40, 56
CATS = [{"id": 1, "name": "cat"}, {"id": 4, "name": "dog"}]
# (image id, category id, y0, y1, x0, x1)
OBJECTS = [(1, 1, 2, 14, 3, 20), (1, 4, 20, 38, 30, 54), (2, 4, 5, 30, 5, 25), (3, 1, 10, 30, 10, 40)]


def _poly(y0, y1, x0, x1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(root: Path, images=(1, 2, 3)) -> tuple[Path, Path]:
    """A tiny COCO instances file and its images (random pixels); returns (json, image folder)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = []
    for i in images:
        name = f"{i:06d}.jpg"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(img_dir / name)
        imgs.append({"id": i, "file_name": name, "height": H, "width": W})
    anns = [{"id": k, "image_id": img, "category_id": cat, "segmentation": _poly(y0, y1, x0, x1),
             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0}
            for k, (img, cat, y0, y1, x0, x1) in enumerate(OBJECTS, start=1) if img in images]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": CATS}))
    return ann, img_dir


class ReadingSegmenter(FakeSegmenter):
    """Reads the image like the real model (ImageLoadError on a corrupt file), predicts the GT."""

    def predict(self, image, return_scores=False):
        from ovdense.io.images import load_image

        load_image(image)
        return super().predict(image, return_scores)


def _gt_reader(ann_file):
    import contextlib
    import io

    from pycocotools.coco import COCO

    from ovdense.datasets import category_index, paint_instances

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    by_name = {im["file_name"]: im["id"] for im in coco.dataset["images"]}
    labels = category_index(coco, background=True)
    return lambda path: paint_instances(coco, by_name[Path(path).name], labels)


@pytest.fixture()
def coco(tmp_path):
    return write_coco(tmp_path / "coco")


@pytest.fixture()
def fake_model(monkeypatch, coco):
    """The model the CLI builds is a ReadingSegmenter; ``built`` counts how many were built."""
    import ovdense.cli.evaluate as evaluate

    built = []

    def build(args):
        seg = ReadingSegmenter(_gt_reader(coco[0]), num_classes=1, noise=0.0)
        built.append(seg)
        return seg

    monkeypatch.setattr(evaluate, "_build_segmenter", build)
    return built


def _run(coco, out, *extra):
    ann, img_dir = coco
    return main(["eval-coco", "--config", "sclip_coco_object", "--device", "cpu", "--gt", str(ann),
                 "--images", str(img_dir), "--out", str(out), *extra])


def _one_error(capsys, code):
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip() and "eval coco:" not in ln]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ------------------------------------------------------------------ a. pycocotools' printout
def test_pycocotools_printout_only_with_verbose(coco, fake_model, tmp_path, capsys):
    assert _run(coco, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "Average Precision" not in out and "DONE (t=" not in out
    lines = out.strip().splitlines()
    assert len(lines) <= 12, out  # short table, background line, outputs
    assert any(ln.startswith("bbox") and "1.000" in ln for ln in lines), out
    assert _run(coco, tmp_path / "verbose", "--verbose") == 0
    out = capsys.readouterr().out
    assert out.count("Average Precision") == 2 * 6 and out.count("Average Recall") == 2 * 6
    assert "per-category segm AP" in out


def test_quiet_and_verbose_together_are_refused(coco, fake_model, tmp_path, capsys):
    assert "--quiet" in _one_error(capsys, _run(coco, tmp_path / "out", "--quiet", "--verbose"))
    assert not fake_model


# ------------------------------------------------------------------ b. the background class
def test_background_class_is_stated_and_can_be_turned_off(coco, fake_model, tmp_path, capsys):
    assert _run(coco, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "background class: added as class 0 (synonyms: background)" in out
    report = json.loads((tmp_path / "out" / "metrics_coco.json").read_text())
    assert report["background"] == {"added": True, "synonyms": ["background"], "source": "default"}
    assert report["classes"][0] == "background"
    assert fake_model[-1].class_names == ["background", "cat", "dog"]

    assert _run(coco, tmp_path / "nobg", "--no-background") == 0
    out = capsys.readouterr().out
    assert "background class: none" in out
    report = json.loads((tmp_path / "nobg" / "metrics_coco.json").read_text())
    assert report["background"] == {"added": False, "synonyms": [], "source": None}
    assert fake_model[-1].class_names == ["cat", "dog"]

    names = tmp_path / "names.txt"
    names.write_text("background, floor, wall\ncat\ndog\n")
    assert _run(coco, tmp_path / "file", "--classes-file", str(names)) == 0
    out = capsys.readouterr().out
    assert "background class: added as class 0 (synonyms: background, floor, wall; from the first line of" in out
    report = json.loads((tmp_path / "file" / "metrics_coco.json").read_text())
    assert report["background"]["synonyms"] == ["background", "floor", "wall"]
    assert report["background"]["source"] == "classes_file"


def test_background_default_is_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval-coco", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--background, --no-background" in text
    assert "class 0" in text and "(default: True)" in text


# ------------------------------------------------------------------ c. malformed annotation files
@pytest.mark.parametrize("case, expected", [
    ("no_categories", 'has no "categories" list'),
    ("no_images", 'has no "images" list'),
    ("no_annotations", 'has no "annotations" list'),
    ("categories_not_list", 'has no "categories" list'),
    ("top_level_list", "not a COCO annotation file"),
    ("bad_json", "is not valid JSON"),
    ("empty_categories", '"categories" list is empty'),
    ("category_without_name", 'categories[0] has no "name"'),
    ("annotation_unknown_category", "category_id 99"),
])
def test_malformed_annotation_file_is_one_line_naming_it(coco, fake_model, tmp_path, capsys, case, expected):
    ann, _ = coco
    data = json.loads(ann.read_text())
    bad = tmp_path / f"{case}.json"
    if case == "bad_json":
        bad.write_text(ann.read_text()[:-20])
    elif case == "top_level_list":
        bad.write_text(json.dumps([data]))
    else:
        if case.startswith("no_"):
            del data[case[3:]]
        elif case == "categories_not_list":
            data["categories"] = {"1": "cat"}
        elif case == "empty_categories":
            data["categories"] = []
        elif case == "category_without_name":
            del data["categories"][0]["name"]
        elif case == "annotation_unknown_category":
            data["annotations"][0]["category_id"] = 99
        bad.write_text(json.dumps(data))
    line = _one_error(capsys, _run((bad, coco[1]), tmp_path / "out"))
    assert str(bad) in line and expected in line, line
    assert not fake_model, "the model was built before the annotation file was checked"


def test_missing_annotation_file(coco, fake_model, tmp_path, capsys):
    line = _one_error(capsys, _run((tmp_path / "nope.json", coco[1]), tmp_path / "out"))
    assert line == f"error: COCO annotation file not found: {tmp_path / 'nope.json'}"
    assert not fake_model


# ------------------------------------------------------------------ d. corrupt images
def _corrupt(img_dir):
    bad = img_dir / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated JPEG
    (img_dir / "000003.jpg").write_bytes(b"not an image at all")
    return ["000002.jpg", "000003.jpg"]


def test_corrupt_images_are_skipped_with_a_warning(coco, fake_model, tmp_path, capsys):
    names = _corrupt(coco[1])
    assert _run(coco, tmp_path / "out") == 0
    captured = capsys.readouterr()
    warned = [ln for ln in captured.err.splitlines() if "skipped unreadable image" in ln]
    assert len(warned) == 2 and all(n in w for n, w in zip(names, warned)), captured.err
    assert "Traceback" not in captured.err
    assert "2 of 3 images skipped (unreadable)" in captured.out
    report = json.loads((tmp_path / "out" / "metrics_coco.json").read_text())
    assert report["num_skipped_images"] == 2 and report["skipped_images"] == names
    assert report["num_images"] == 1
    # the skipped images' GT is left out of the AP: the one readable image is predicted perfectly
    assert report["segm"]["AP"] == pytest.approx(1.0) and report["bbox"]["AP"] == pytest.approx(1.0)


def test_corrupt_image_with_strict_is_one_error_line(coco, fake_model, tmp_path, capsys):
    _corrupt(coco[1])
    line = _one_error(capsys, _run(coco, tmp_path / "out", "--strict"))
    assert str(coco[1] / "000002.jpg") in line and "unreadable image" in line, line
    assert not (tmp_path / "out" / "metrics_coco.json").exists()


def test_every_image_unreadable_exits_1(coco, fake_model, tmp_path, capsys):
    for p in coco[1].iterdir():
        p.write_bytes(b"junk")
    assert _run(coco, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "none of the 3 images" in err[-1], err


# ------------------------------------------------------------------ e. where the outputs went
def test_output_locations_are_printed(coco, fake_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(coco, out) == 0
    text = capsys.readouterr().out
    assert f"metrics: {out / 'metrics_coco.json'}" in text
    assert f"results: {out / 'coco_results.json'}" in text
    assert (out / "metrics_coco.json").is_file() and (out / "coco_results.json").is_file()
    assert _run(coco, tmp_path / "quiet", "--quiet") == 0
    text = capsys.readouterr().out
    assert f"metrics: {tmp_path / 'quiet' / 'metrics_coco.json'}" in text
    assert "background class" not in text and "segm: AP 1.000" in text


# ------------------------------------------------------------------ f. an existing run
def test_existing_run_is_refused_unless_overwrite(coco, fake_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(coco, out) == 0
    capsys.readouterr()
    first = (out / "metrics_coco.json").read_text()
    line = _one_error(capsys, _run(coco, out))
    assert str(out) in line and "--overwrite" in line, line
    assert len(fake_model) == 1, "the model was built before the output folder was checked"
    assert (out / "metrics_coco.json").read_text() == first
    assert _run(coco, out, "--overwrite", "--limit", "2") == 0
    assert json.loads((out / "metrics_coco.json").read_text())["num_images"] == 2


# ------------------------------------------------------------------ the real entry point
@pytest.mark.slow  # three subprocess runs; the fake-model tests cover the logic in the default set
def test_real_entry_point_with_a_corrupt_image(tmp_path):
    """`python -m ovdense eval-coco` on the tiny random CLIP: short stdout, one warning, no traceback."""
    ann, img_dir = write_coco(tmp_path / "coco")
    (img_dir / "000003.jpg").write_bytes(b"garbage")
    config = tmp_path / "tiny.py"
    config.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None)\nhead = dict(type='maskclip')\n"
        "preprocess = dict(short_side=64)\nwindows = dict(crop=0)\ntext_encoder = dict(templates='simple')\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ovdense", "eval-coco", "--config", str(config), "--gt", str(ann),
           "--images", str(img_dir), "--device", "cpu", "--out", str(out)]
    env = dict(os.environ, OVDENSE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Average Precision" not in proc.stdout and "Traceback" not in proc.stderr
    assert len(proc.stdout.strip().splitlines()) <= 12, proc.stdout
    assert "background class: added" in proc.stdout and str(out / "metrics_coco.json") in proc.stdout
    assert sum("skipped unreadable image" in ln and "000003.jpg" in ln for ln in proc.stderr.splitlines()) == 1
    report = json.loads((out / "metrics_coco.json").read_text())
    assert report["num_skipped_images"] == 1 and report["skipped_images"] == ["000003.jpg"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--overwrite" in again.stderr
    # --quiet: no progress bar at all, the text encoder's included (one prompt per text batch)
    quiet = subprocess.run(cmd + ["--overwrite", "--quiet", "--cfg-options", "text_encoder.batch_size=1"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "text (" not in quiet.stderr and "it/s" not in quiet.stderr and "batch/s" not in quiet.stderr
    report = json.loads((out / "metrics_coco.json").read_text())
    assert report["versions"]["mmengine"], "the installed mmengine(-lite) version is recorded"


def test_unknown_proposal_source_or_scorer_is_one_line(coco, fake_model, tmp_path, capsys):
    """--strategy/--scorer name registry entries; a wrong name is refused before any model loads."""
    for flag, what in (("--strategy", "proposal source"), ("--scorer", "region scorer")):
        line = _one_error(capsys, _run(coco, tmp_path / flag, flag, "nope"))
        assert f"unknown {what} 'nope'" in line, line
    assert len(fake_model) == 0
