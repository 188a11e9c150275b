"""``segment --save-txt``: YOLO-format instance files (boxes, or segmentation polygons) and classes.txt."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ovdense import build_instances
from ovdense.cli import main
from ovdense.io.writers import yolo_label_lines, yolo_lines


def _result(label_map, names, has_background):
    return SimpleNamespace(label_map=label_map, class_names=names, has_background=has_background, scores=None)


def _parse(lines):
    return [(int(line.split()[0]), [float(v) for v in line.split()[1:]]) for line in lines]


@pytest.fixture()
def painted():
    """20 x 40 label map: background 0, one 'cat' rectangle, two 'dog' blobs."""
    lm = np.zeros((20, 40), np.int64)
    lm[2:6, 4:14] = 1          # cat: x 4..13, y 2..5
    lm[10:12, 0:2] = 2         # dog: x 0..1, y 10..11
    lm[15:20, 30:40] = 2       # dog: x 30..39, y 15..19
    return _result(lm, ["background", "cat", "dog"], True)


def test_box_lines_are_yolo_normalised_without_the_background_class(painted):
    lines = yolo_lines(build_instances(painted, "connected_components"), 20, 40, class_offset=-1)
    got = sorted(_parse(lines))
    want = sorted([(0, [9 / 40, 4 / 20, 10 / 40, 4 / 20]),      # centre x, centre y, width, height
                   (1, [1 / 40, 11 / 20, 2 / 40, 2 / 20]),
                   (1, [35 / 40, 17.5 / 20, 10 / 40, 5 / 20])])
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, g), (_, w) in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6)
    assert all(len(line.split()) == 5 for line in lines)


def test_polygon_lines_trace_each_instance(painted):
    lines = yolo_lines(build_instances(painted, "connected_components"), 20, 40, fmt="polygon", class_offset=-1)
    parsed = _parse(lines)
    assert sorted(c for c, _ in parsed) == [0, 1, 1]
    for cls, coords in parsed:
        assert len(coords) >= 6 and len(coords) % 2 == 0 and all(0.0 <= v <= 1.0 for v in coords)
    cat = next(coords for cls, coords in parsed if cls == 0)
    xs, ys = np.array(cat[0::2]) * 40, np.array(cat[1::2]) * 20
    # the rectangle's corner pixels (cv2.findContours traces pixel centres)
    assert sorted(zip(xs.round().astype(int), ys.round().astype(int))) == [(4, 2), (4, 5), (13, 2), (13, 5)]
    # a one-pixel instance still gets a polygon (its pixel's square)
    one = _result(np.pad(np.ones((1, 1), np.int64), 3), ["bg", "dot"], True)
    (line,) = yolo_lines(build_instances(one, "connected_components"), 7, 7, fmt="polygon", class_offset=-1)
    assert line.split()[0] == "0" and len(line.split()) >= 7


@pytest.mark.parametrize("fmt", ["box", "polygon"])
@pytest.mark.parametrize("has_background", [True, False])
def test_label_map_export_equals_the_connected_component_instances(fmt, has_background):
    """What segment --save-txt writes (straight from the label map, no N x H x W masks) is line for
    line what build_instances(result, "connected_components") gives."""
    rng = np.random.default_rng(7)
    lm = rng.integers(0, 4, (9, 13))
    lm = np.kron(lm, np.ones((3, 2), np.int64))  # blocks, so that regions of several pixels exist
    lm[rng.random(lm.shape) < 0.05] = -1  # unlabelled pixels make no instance
    res = _result(lm, ["background", "cat", "dog", "bird"], has_background)
    h, w = lm.shape
    ref = yolo_lines(build_instances(res, "connected_components"), h, w, fmt=fmt,
                     class_offset=-1 if has_background else 0)
    assert len(ref) > 10
    assert yolo_label_lines(lm, has_background, fmt=fmt) == ref


def test_no_instance_gives_no_line():
    empty = _result(np.zeros((5, 6), np.int64), ["background", "cat"], True)
    assert yolo_lines(build_instances(empty, "connected_components"), 5, 6, class_offset=-1) == []
    assert yolo_label_lines(empty.label_map, True) == []


# ------------------------------------------------------------------ the command line, on a known synthetic scene
def _box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _synth_config(path):
    from ovdense.cli.main import demo_config

    cfg = demo_config("maskclip")
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in cfg.items()))
    return str(path)


@pytest.mark.parametrize("fmt", ["box", "polygon"])
def test_save_txt_on_a_synthetic_scene_finds_its_objects(tmp_path, fmt):
    """The shipped tiny CLIP on a held-out scene whose objects are known: each object's box is exported
    (IoU >= 0.5 with the drawn object's box) under its class id, and classes.txt names the ids."""
    from ovdense.assets import asset_path
    from ovdense.synthetic import SyntheticWorld

    world = SyntheticWorld(image_size=192, seed=0)
    scene = world.sample(1_000_004)  # the shipped example shapes_on_grass.png
    src = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(src)
    out = tmp_path / "out"
    extra = ["--save-txt"] + (["--save-txt-format", "polygon"] if fmt == "polygon" else [])
    assert main(["segment", str(src), "--config", _synth_config(tmp_path / "synth.py"), "--classes-file",
                 asset_path("synth_classes.txt"), "--out", str(out), "--device", "cpu", "--quiet", *extra]) == 0
    names = (out / "classes.txt").read_text().splitlines()
    assert names == world.class_names  # no background class: txt ids are the label ids
    lines = _parse((out / "txt" / "scene.txt").read_text().splitlines())
    assert lines
    h, w = scene.label_map.shape
    found = []
    for cls, coords in lines:
        if fmt == "box":
            assert len(coords) == 4
            xc, yc, bw, bh = coords
            found.append((cls, ((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h)))
        else:
            assert len(coords) >= 6 and len(coords) % 2 == 0
            xs, ys = np.array(coords[0::2]) * w, np.array(coords[1::2]) * h
            found.append((cls, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)))
    things = [(cid, mask) for cid, mask in scene.instances if cid in world.thing_ids]
    assert things
    for cid, mask in things:
        ys, xs = np.nonzero(mask)
        truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        best = max((_box_iou(truth, box) for c, box in found if c == cid), default=0.0)
        assert best >= 0.5, (world.class_names[cid], truth, [b for c, b in found if c == cid])
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"]["save_txt"] == fmt


def test_save_txt_with_a_background_class_and_resume(tmp_path):
    """With a background class, txt ids skip it (classes.txt lists the others); every image gets a
    file (empty when nothing was found); --resume checks the export format."""
    from ovdense.cli.main import demo_config

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.jpg", "b.png"):  # b.jpg and b.png: same stem, each keeps its own file
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(src / name)
    cfg = tmp_path / "c.py"
    cfg.write_text("".join(f"{k} = {v!r}\n" for k, v in demo_config("maskclip").items()))
    base = ["segment", str(src), "--config", str(cfg), "--classes", "red circle", "white square",
            "--background", "grass, lawn", "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet", "--save-txt"]
    assert main(base) == 0
    out = tmp_path / "out"
    assert (out / "classes.txt").read_text().splitlines() == ["red circle", "white square"]
    files = sorted(p.relative_to(out / "txt").as_posix() for p in (out / "txt").rglob("*.txt"))
    assert files == ["a.txt", "b.jpg.txt", "b.png.txt"]
    for f in files:
        for cls, coords in _parse((out / "txt" / f).read_text().splitlines()):
            assert cls in (0, 1) and len(coords) == 4
    assert main(base + ["--resume", "--save-txt-format", "polygon"]) == 2  # another export: refused
    assert main(base + ["--resume"]) == 0
    assert main(base[:-1] + ["--overwrite"]) == 0  # overwrite removes the previous export
    assert not (out / "txt").exists() and not (out / "classes.txt").exists()
