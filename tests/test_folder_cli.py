"""The folder tool end to end: odd and broken images, resume, atomic outputs, CLI errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from ovdense.cli import main
from ovdense.io import ImageLoadError, load_image
from conftest import TINY_CONFIG


@pytest.fixture()
def tiny_config(tmp_path):
    path = tmp_path / "tiny_sclip.py"
    path.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None)\nhead = dict(type='sclip')\n"
        "preprocess = dict(short_side=64)\nwindows = dict(crop=64, stride=32)\ndecode = dict(logit_scale=40.0)\n"
        "text_encoder = dict(templates='simple')\n"
    )
    return str(path)


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(root / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 255, (33, 47, 4), dtype=np.uint8), mode="RGBA").save(root / "sub" / "rgba.png")
    cv2.imwrite(str(root / "deep16.png"), rng.integers(0, 65535, (36, 52, 3), dtype=np.uint16))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def test_load_image_variants(image_folder):
    assert load_image(str(image_folder / "sub" / "gray.png")).shape == (40, 30, 3)
    assert load_image(str(image_folder / "sub" / "rgba.png")).shape == (33, 47, 3)
    deep = load_image(str(image_folder / "deep16.png"))
    assert deep.dtype == np.uint8 and deep.shape == (36, 52, 3)
    raw16 = cv2.imread(str(image_folder / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(deep, (raw16 >> 8).astype(np.uint8)[:, :, ::-1])
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        load_image(str(image_folder / "corrupt.jpg"))
    with pytest.raises(ImageLoadError, match="empty.png: empty file"):
        load_image(str(image_folder / "empty.png"))
    assert load_image(np.zeros((4, 5), np.uint16)).shape == (4, 5, 3)


def test_segment_folder_end_to_end_with_resume(tmp_path, image_folder, tiny_config, capsys):
    out = tmp_path / "out"
    args = ["segment", str(image_folder), "--config", tiny_config, "--classes", "cat", "dog, puppy",
            "--background", "sky, wall", "--out", str(out), "--device", "cpu", "--quiet", "--batch-size", "2"]
    assert main(args) == 0
    good = ["rgb.jpg", "deep16.png", "sub/gray.png", "sub/rgba.png"]  # outputs keep the image's extension
    for name in good:
        label = np.array(Image.open(out / "labels" / f"{name}.png"))
        record = json.loads((out / "preds" / f"{name}.json").read_text())
        src = load_image(str(image_folder / name))
        assert label.shape == src.shape[:2] == (record["height"], record["width"])
        assert label.max() < 3 and sum(record["class_areas"].values()) == label.size
        assert (out / "overlays" / f"{name}.jpg").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == 4 and run["images"] == 6 and not run["interrupted"]
    failed = sorted(os.path.basename(f["path"]) for f in run["failed"])
    assert failed == ["corrupt.jpg", "empty.png"]
    assert run["config"]["head"]["type"] == "sclip"
    assert [c["name"] for c in json.loads((out / "categories.json").read_text())] == ["sky", "cat", "dog"]
    assert not list(out.rglob(".tmp-*"))
    assert (out / "contact_sheet.jpg").is_file()
    with Image.open(out / "overlays" / "rgb.jpg.jpg") as im:  # the image, then a legend panel
        assert im.size[1] >= 50 and im.size[0] > 80
    assert "corrupt.jpg" in capsys.readouterr().err

    # resume: finished images are skipped; a deleted record is redone
    (out / "preds" / "rgb.jpg.json").unlink()
    before = (out / "labels" / "deep16.png.png").stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == 1 and run["skipped_existing"] == 3
    assert (out / "labels" / "deep16.png.png").stat().st_mtime_ns == before


def test_cli_errors_are_clear(tmp_path, tiny_config, capsys):
    assert main(["segment", str(tmp_path / "missing"), "--config", tiny_config, "--classes", "cat",
                 "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"]) == 2
    assert "input folder not found" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), "--config", str(tmp_path / "nope.py"), "--classes", "cat",
                 "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), "--config", tiny_config, "--classes-file", str(tmp_path / "c.txt"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "error: class-name file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_tools_script_runs(tmp_path, image_folder, tiny_config):
    script = os.path.join(os.path.dirname(__file__), "..", "tools", "segment_folder.py")
    out = tmp_path / "script_out"
    proc = subprocess.run([sys.executable, script, str(image_folder / "rgb.jpg"), "--config", tiny_config,
                           "--classes", "cat", "--out", str(out), "--device", "cpu", "--quiet",
                           "--cfg-options", "decode.logit_scale=50"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "labels" / "rgb.jpg.png").is_file()
    assert json.loads((out / "run.json").read_text())["config"]["decode"]["logit_scale"] == 50


@pytest.mark.slow
def test_sharded_folder_run_equals_single_process(tmp_path, image_folder, tiny_backbone):
    """torchrun with 2 CPU processes (gloo) writes exactly the single-process outputs; rank 0 merges run.json."""
    import socket

    import torch

    weights = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), weights)
    config = tmp_path / "fixed.py"
    config.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained={str(weights)!r})\nhead = dict(type='naclip')\n"
        "preprocess = dict(short_side=64)\nwindows = dict(crop=64, stride=32)\n"
        "refiners = [dict(type='pamr', steps=2, dilations=(1, 2))]\ntext_encoder = dict(templates='simple')\n")
    common = [str(image_folder), "--config", str(config), "--classes", "cat", "dog", "--background", "sky",
              "--device", "cpu", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    single = tmp_path / "single"
    assert main(["segment", *common, "--out", str(single)]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sharded = tmp_path / "sharded"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "ovdense",
                           "segment", *common, "--out", str(sharded)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = sorted(p.relative_to(single) for p in (single / "labels").rglob("*.png"))
    assert labels == sorted(p.relative_to(sharded) for p in (sharded / "labels").rglob("*.png"))
    for rel in labels:
        assert np.array_equal(np.array(Image.open(single / rel)), np.array(Image.open(sharded / rel))), rel
    merged = json.loads((sharded / "run.json").read_text())
    ref = json.loads((single / "run.json").read_text())
    assert (merged["images"], merged["done"]) == (ref["images"], ref["done"]) == (6, 4)
    assert [f["path"] for f in merged["failed"]] == sorted(f["path"] for f in ref["failed"])
    assert [r["images"] for r in merged["shard"]["per_rank"]] == [3, 3]


# ------------------------------------------------------------------ runs that cannot mix results (issue 10 item 4)
def _run(src, out, config, *extra, classes=("cat", "dog")):
    return main(["segment", str(src), "--config", config, "--classes", *classes, "--out", str(out),
                 "--device", "cpu", "--quiet", *extra])


def test_same_stem_images_get_distinct_outputs(tmp_path, tiny_config):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(src / "photo.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 50, 3), dtype=np.uint8)).save(src / "photo.png")
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(src / "photo.JPEG")
    out = tmp_path / "out"
    assert _run(src, out, tiny_config) == 0
    for name, shape in (("photo.jpg", (30, 40)), ("photo.png", (20, 50)), ("photo.JPEG", (24, 24))):
        assert np.array(Image.open(out / "labels" / f"{name}.png")).shape == shape
        assert json.loads((out / "preds" / f"{name}.json").read_text())["height"] == shape[0]
        assert (out / "overlays" / f"{name}.jpg").is_file()


def test_resume_refuses_other_classes_or_config_and_overwrite_starts_over(tmp_path, image_folder, tiny_config,
                                                                           capsys):
    out = tmp_path / "out"
    assert _run(image_folder, out, tiny_config) == 0
    capsys.readouterr()
    # a second run into the same folder needs --resume or --overwrite
    assert _run(image_folder, out, tiny_config) == 2
    assert "already holds a run" in capsys.readouterr().err
    # other classes, other order, other config: refused, nothing touched
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "labels").iterdir())
    for extra, classes, what in ((["--resume"], ("dog", "cat"), "classes"),
                                 (["--resume", "--threshold", "0.3"], ("cat", "dog"), "decode"),
                                 (["--resume", "--head", "naclip"], ("cat", "dog"), "head")):
        assert _run(image_folder, out, tiny_config, *extra, classes=classes) == 2
        err = capsys.readouterr().err
        assert "cannot resume" in err and what in err and "--overwrite" in err, err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "labels").iterdir()) == before
    # the same classes and config resume
    assert _run(image_folder, out, tiny_config, "--resume") == 0
    assert json.loads((out / "run.json").read_text())["skipped_existing"] == 4
    # --overwrite starts over with the new classes
    (out / "labels" / "stale.png").write_bytes(b"x")
    assert _run(image_folder, out, tiny_config, "--overwrite", classes=("dog", "cat", "bird")) == 0
    assert not (out / "labels" / "stale.png").exists()
    assert [c["name"] for c in json.loads((out / "categories.json").read_text())] == ["dog", "cat", "bird"]
    assert json.loads((out / "run.json").read_text())["done"] == 4


def test_output_inside_source_is_never_read(tmp_path, image_folder, tiny_config):
    out = image_folder / "seg"
    assert _run(image_folder, out, tiny_config) == 0
    assert _run(image_folder, out, tiny_config, "--resume") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["images"] == 6 and run["skipped_existing"] == 4 and run["done"] == 0
    assert not list(out.rglob("seg"))


def test_output_permissions_follow_the_umask(tmp_path, image_folder, tiny_config):
    old = os.umask(0o022)
    try:
        assert _run(image_folder / "rgb.jpg", tmp_path / "out", tiny_config) == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files), \
        [(p.name, oct(p.stat().st_mode)) for p in files]


def test_run_json_records_classes_used_and_a_replayable_command(tmp_path, image_folder, tiny_config):
    import shlex

    out = tmp_path / "out dir"
    argv = ["segment", str(image_folder / "rgb.jpg"), "--config", tiny_config, "--classes", "red car",
            "dog, puppy", "--background", "sky, wall", "--out", str(out), "--device", "cpu", "--quiet",
            "--templates", "a photo of a {}.", "there is a {} in the scene.", "--threshold", "0.25",
            "--logit-scale", "55", "--image-size", "48", "--window", "32", "--stride", "16", "--pamr"]
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert shlex.split(run["command"]) == ["ovdense", *argv]
    cfg = run["config"]
    assert cfg["classes"] == {"names": [["sky", "wall"], ["red car"], ["dog", "puppy"]], "background": True}
    assert cfg["text_encoder"]["templates"] == ["a photo of a {}.", "there is a {} in the scene."]
    assert cfg["decode"]["background_threshold"] == 0.25 and cfg["decode"]["logit_scale"] == 55
    assert cfg["preprocess"]["short_side"] == 48 and (cfg["windows"]["crop"], cfg["windows"]["stride"]) == (32, 16)
    assert [r["type"] for r in cfg["refiners"]] == ["pamr"]
    assert [c["name"] for c in run["classes"]] == ["sky", "red car", "dog"]


def test_named_config_and_help(tmp_path, image_folder, capsys):
    """A shipped config by name (no path) with the tiny model; --help shows defaults and examples."""
    out = tmp_path / "out"
    assert main(["segment", str(image_folder / "rgb.jpg"), "--config", "sclip_voc21", "--clip-model",
                 str(TINY_CONFIG), "--pretrained", "none", "--image-size", "64", "--templates", "simple",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert len(json.loads((out / "categories.json").read_text())) == 21  # VOC's classes from the named config
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "(default: 4)" in text and "--threshold" in text and "--templates" in text


def test_demo_runs_offline_and_reruns(tmp_path, capsys, monkeypatch):
    """`ovdense demo`: shipped images + shipped tiny CLIP; a rerun replaces its own run, never another one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "example images segmented" in text and "water" in text
    overlays = sorted(p.name for p in (out / "overlays").glob("*.jpg"))
    assert len(overlays) == 4 and (out / "contact_sheet.jpg").is_file()
    assert json.loads((out / "run.json").read_text())["demo"] is True
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0  # its own previous run: replaced
    other = tmp_path / "other"
    (other / "preds").mkdir(parents=True)
    assert main(["demo", "--out", str(other), "--device", "cpu"]) == 2
    assert "holds another run" in capsys.readouterr().err


# ------------------------------------------------------------------ long runs: versions, quiet, big photos, globs
def test_run_json_records_the_installed_mmengine_version(tmp_path, image_folder, tiny_config):
    """mmengine may be installed as mmengine-lite (same module, other distribution name)."""
    import mmengine

    out = tmp_path / "out"
    assert _run(image_folder / "rgb.jpg", out, tiny_config) == 0
    versions = json.loads((out / "run.json").read_text())["versions"]
    assert versions["mmengine"] == mmengine.__version__
    assert versions["torch"] and versions["open_clip"]


def test_quiet_silences_the_text_encoding_bar(tmp_path, image_folder, tiny_config, capsys):
    many = ["--cfg-options", "text_encoder.batch_size=1"]  # one prompt per text batch: a bar is due
    assert main(["segment", str(image_folder / "rgb.jpg"), "--config", tiny_config, "--classes", "cat", "dog",
                 "bird", "car", "tree", "--out", str(tmp_path / "loud"), "--device", "cpu", *many]) == 0
    assert "text (" in capsys.readouterr().err  # shown without --quiet
    assert main(["segment", str(image_folder / "rgb.jpg"), "--config", tiny_config, "--classes", "cow", "hen", "pig",
                 "ox", "fox", "--out", str(tmp_path / "quiet"), "--device", "cpu", "--quiet", *many]) == 0
    err = capsys.readouterr().err
    assert "text (" not in err and "it/s" not in err and "batch/s" not in err, err


def test_resolution_model_writes_model_size_outputs_and_is_checked_at_resume(tmp_path, image_folder, tiny_config,
                                                                             capsys):
    out = tmp_path / "out"
    src = image_folder / "rgb.jpg"  # 50 x 80: the config's short side 64 makes the model see 64 x 102
    assert _run(src, out, tiny_config, "--resolution", "model") == 0
    label = np.array(Image.open(out / "labels" / "rgb.jpg.png"))
    assert label.shape[0] == 64 and abs(label.shape[1] - 102) <= 1
    record = json.loads((out / "preds" / "rgb.jpg.json").read_text())
    assert (record["height"], record["width"]) == label.shape
    assert (out / "overlays" / "rgb.jpg.jpg").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"]["resolution"] == "model"
    capsys.readouterr()
    assert _run(src, out, tiny_config, "--resume") == 2  # default resolution is input: another result
    err = capsys.readouterr().err
    assert "cannot resume" in err and "resolution" in err, err
    assert _run(src, out, tiny_config, "--resume", "--resolution", "model") == 0


def test_refine_at_reaches_the_segmenter_and_is_checked_at_resume(tmp_path, image_folder, tiny_config, capsys,
                                                                  monkeypatch):
    import inspect

    from ovdense.predictor import OVSegmenter

    out = tmp_path / "out"
    src = image_folder / "rgb.jpg"
    if "refine_at" not in inspect.signature(OVSegmenter.__init__).parameters:
        assert _run(src, out, tiny_config, "--refine-at", "model") == 2
        assert "--refine-at" in capsys.readouterr().err
        return
    import functools

    built = {}
    real_init = OVSegmenter.__init__

    @functools.wraps(real_init)  # keeps the signature the command line checks
    def spy(self, *a, **k):
        built.update(k)
        real_init(self, *a, **k)

    monkeypatch.setattr(OVSegmenter, "__init__", spy)
    assert _run(src, out, tiny_config, "--pamr", "--refine-at", "model") == 0
    assert built["refine_at"] == "model"
    assert json.loads((out / "run.json").read_text())["config"]["refine_at"] == "model"
    capsys.readouterr()
    assert _run(src, out, tiny_config, "--pamr", "--resume") == 2
    assert "refine_at" in capsys.readouterr().err
    assert _run(src, out, tiny_config, "--pamr", "--resume", "--refine-at", "model") == 0
    # without the flag nothing is passed (the segmenter's default); --refine-at input equals it at resume
    built.clear()
    assert _run(src, tmp_path / "o2", tiny_config) == 0
    assert "refine_at" not in built
    assert _run(src, tmp_path / "o2", tiny_config, "--resume", "--refine-at", "input") == 0


def test_glob_and_single_file_sources(tmp_path, tiny_config, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in ("a.jpg", "b.png", "sub/c.jpg", "sub/d.jpg"):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(src / name)
    out = tmp_path / "o1"
    assert _run(f"{src}/*.jpg", out, tiny_config) == 0  # quoted glob: this folder only
    assert sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.png")) == ["a.jpg.png"]
    out = src / "seg"  # recursive glob; the output folder inside the source is never read
    assert _run(f"{src}/**/*.jpg", out, tiny_config) == 0
    assert _run(f"{src}/**/*.jpg", out, tiny_config, "--resume") == 0
    assert sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.png")) == \
        ["a.jpg.png", "sub/c.jpg.png", "sub/d.jpg.png"]
    run = json.loads((out / "run.json").read_text())
    assert run["images"] == 3 and run["skipped_existing"] == 3
    out = tmp_path / "o3"  # one file
    assert _run(src / "sub" / "d.jpg", out, tiny_config) == 0
    assert [p.name for p in (out / "labels").rglob("*.png")] == ["d.jpg.png"]
    capsys.readouterr()
    assert _run(f"{src}/*.tif", tmp_path / "o4", tiny_config) == 1
    assert "no images match" in capsys.readouterr().err


class _BandedSegmenter:
    """Wraps a segmenter; its predict takes ``progress`` and reports the rows in 4 bands."""

    def __init__(self, seg):
        self.seg = seg
        self.vocabulary = seg.vocabulary
        self.config = seg.config
        self.dtype = seg.dtype
        self.calls = []

    def predict(self, image, resolution="input", progress=None):
        self.calls.append((len(image) if isinstance(image, list) else 1, progress is not None))
        out = self.seg.predict(image, resolution=resolution)
        if progress is not None:
            rows = (out[0] if isinstance(out, list) else out).label_map.shape[0]
            for k in range(1, 5):
                progress(min(rows, k * -(-rows // 4)), rows)
        return out


def test_large_images_get_a_row_progress_bar(tmp_path, tiny_config, monkeypatch, capsys):
    from ovdense.apps import folder
    from ovdense.predictor import OVSegmenter

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(src / "big.png")
    for name in ("s1.png", "s2.png"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(src / name)
    seg = OVSegmenter.from_config(tiny_config, classes=["cat", "dog"], device="cpu")
    wrapped = _BandedSegmenter(seg)
    monkeypatch.setattr(folder, "LARGE_IMAGE_PIXELS", 60 * 90 - 1)  # big.png counts as large
    summary = folder.segment_folder(wrapped, str(src), str(tmp_path / "out"), batch_size=4, progress=True)
    assert summary.done == 3
    # the large image alone, with the callback; the small ones batched together, without
    assert sorted(wrapped.calls) == [(1, True), (2, False)]
    err = capsys.readouterr().err
    assert "big.png rows" in err and "/60" in err, err  # its bar, over its 60 rows
    # progress=False (--quiet): the callback is not even passed
    wrapped.calls.clear()
    folder.segment_folder(wrapped, str(src), str(tmp_path / "out2"), batch_size=4, progress=False)
    assert sorted(wrapped.calls) == [(1, False), (2, False)]
    assert "rows" not in capsys.readouterr().err
