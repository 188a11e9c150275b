"""Every user error of every subcommand: one ``error: ...`` line on stderr, exit code 2, no traceback,
and (where it is an input) reported before any model is loaded. Exit code 1 when nothing was produced."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ovdense.cli import main
from conftest import TINY_CONFIG

sys.path.insert(0, os.path.dirname(__file__))
from fakes import make_layout  # noqa: E402


@pytest.fixture()
def tiny_config(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None)\nhead = dict(type='maskclip')\n"
        "preprocess = dict(short_side=64)\nwindows = dict(crop=0)\ntext_encoder = dict(templates='simple')\n")
    return str(path)


@pytest.fixture()
def images(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / "a.jpg")
    return root


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a model is built: the error must come before that."""
    import ovdense.cli.common as common
    import ovdense.cli.evaluate as evaluate

    def boom(*a, **k):
        raise AssertionError("a model was built before the inputs were checked")

    monkeypatch.setattr(common, "build_segmenter", boom)
    monkeypatch.setattr(evaluate, "_build_segmenter", boom)
    monkeypatch.setattr(sys.modules["ovdense.cli.main"], "build_segmenter", boom)


def _error(capsys, code, expected_code=2):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expected_code, err
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def _segment(images, out, config, *extra):
    return main(["segment", str(images), "--config", config, "--classes", "cat", "dog", "--out", str(out),
                 "--device", "cpu", "--quiet", *extra])


# ------------------------------------------------------------------ segment: inputs, before the model
def test_segment_input_errors_come_before_the_model(tmp_path, images, tiny_config, capsys, no_model):
    out = tmp_path / "out"
    assert "input folder not found" in _error(capsys, _segment(tmp_path / "missing", out, tiny_config))
    (tmp_path / "run.mp4").write_bytes(b"\0" * 64)  # a video: refused with what to do instead
    message = _error(capsys, _segment(tmp_path / "run.mp4", out, tiny_config))
    assert "run.mp4 is a video" in message and "predict_iter" in message and "ffmpeg" in message
    (tmp_path / "afile").write_text("x")
    assert "exists and is not a folder" in _error(capsys, _segment(images, tmp_path / "afile", tiny_config))
    # a folder that cannot be created (its parent is a file; as root, chmod would not stop us)
    assert "cannot write to output folder" in _error(capsys, _segment(images, tmp_path / "afile" / "o", tiny_config))
    assert "class-name file not found" in _error(capsys, main(
        ["segment", str(images), "--config", tiny_config, "--classes-file", str(tmp_path / "c.txt"),
         "--out", str(out)]))
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "names no class" in _error(capsys, main(
        ["segment", str(images), "--config", tiny_config, "--classes-file", str(tmp_path / "empty.txt"),
         "--out", str(out)]))
    assert "not both" in _error(capsys, main(
        ["segment", str(images), "--config", tiny_config, "--classes", "a", "--classes-file",
         str(tmp_path / "empty.txt"), "--out", str(out)]))
    assert "--background-first" in _error(capsys, _segment(images, out, tiny_config, "--background-first"))
    assert "unknown device 'tpu'" in _error(capsys, _segment(images, out, tiny_config, "--device", "tpu"))
    import torch

    if not torch.cuda.is_available():
        assert "CUDA is not available" in _error(capsys, _segment(images, out, tiny_config, "--device", "cuda:0"))
    assert "unknown open_clip model 'ViT-Q-99'" in _error(
        capsys, _segment(images, out, tiny_config, "--clip-model", "ViT-Q-99"))
    assert "unknown head 'bogus'" in _error(capsys, _segment(images, out, tiny_config, "--head", "bogus"))
    assert "unknown config section 'bogus'" in _error(
        capsys, _segment(images, out, tiny_config, "--cfg-options", "bogus.x=1"))
    assert "0.1 config layout" in _error(capsys, _segment(images, out, tiny_config, "--cfg-options", "model.x=1"))
    assert "CLIP weights file not found: /nope/w.pt" in _error(
        capsys, _segment(images, out, tiny_config, "--pretrained", "/nope/w.pt"))
    assert "config file not found: nope_voc21" in _error(capsys, _segment(images, out, "nope_voc21"))
    assert "unknown method 'bogus'" in _error(capsys, main(
        ["segment", str(images), "--method", "bogus", "--classes", "a", "--out", str(out)]))
    assert "no shipped config naclip_voc99" in _error(capsys, main(
        ["segment", str(images), "--method", "naclip", "--dataset", "voc99", "--out", str(out)]))
    assert "--templates" in _error(capsys, _segment(images, out, tiny_config, "--templates", "no braces"))
    assert not out.exists() or not os.listdir(out)


def test_argparse_errors_are_one_line_with_code_2(tmp_path, capsys):
    for argv in (["segment", "x", "--threshold", "2"], ["segment", "x", "--batch-size", "0"],
                 ["segment", "x", "--dtype", "fp8"], ["nosuchcommand"], ["segment"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), (argv, err)


def test_version(capsys):
    import ovdense

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"ovdense {ovdense.__version__}"


# ------------------------------------------------------------------ segment: exit codes and outputs
def test_no_image_and_every_image_failed_exit_1(tmp_path, tiny_config, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    assert "no images found" in _error(capsys, _segment(empty, tmp_path / "o1", tiny_config), expected_code=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"not a jpeg")
    (broken / "y.png").write_bytes(b"")
    assert "every image failed" in _error(capsys, _segment(broken, tmp_path / "o2", tiny_config), expected_code=1)
    # one good image among bad ones: 0, or 1 with --strict
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(broken / "good.png")
    assert _segment(broken, tmp_path / "o3", tiny_config) == 0
    assert _segment(broken, tmp_path / "o4", tiny_config, "--strict") == 1


def test_full_disk_is_reported_not_raised(tmp_path, images, tiny_config, capsys, monkeypatch):
    import ovdense.cli.common as common

    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(common.os, "write", full)
    assert "no space left" in _error(capsys, _segment(images, tmp_path / "o", tiny_config))
    monkeypatch.setattr(common.os, "write", real_write)

    # the disk fills during the run: one error line, exit 2, no traceback
    import ovdense.apps.folder as folder

    def full_label(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "write_label_png", full_label)
    msg = _error(capsys, _segment(images, tmp_path / "o2", tiny_config))
    assert "cannot write to" in msg and "no space left" in msg.lower()


def test_offline_weights_error_names_the_cli_flag(tmp_path, images, tiny_config, capsys, monkeypatch):
    """No network: the hub is put offline for the load, so it fails at once (no minute of retries)."""
    import time

    import ovdense.backbones.loading as clip

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(clip, "_hub_reachable", lambda *a, **k: False)  # as on a machine without network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    t0 = time.perf_counter()
    msg = _error(capsys, _segment(images, tmp_path / "o", tiny_config, "--clip-model", "ViT-B-16",
                                  "--pretrained", "openai"))
    assert "could not load CLIP weights 'openai'" in msg and "--pretrained /path/to/ViT-B-16.pt" in msg
    assert time.perf_counter() - t0 < 30
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after the load


# ------------------------------------------------------------------ eval commands
def test_eval_semantic_errors(tmp_path, capsys, no_model):
    base = ["eval-semantic", "--config", "sclip_voc21", "--device", "cpu"]
    assert "data root not found" in _error(capsys, main(base + ["--data-root", str(tmp_path / "nope")]))
    (tmp_path / "data").mkdir()
    msg = _error(capsys, main(base + ["--data-root", str(tmp_path / "data")]))
    assert "voc21" in msg and "not found" in msg  # missing dataset parts
    make_layout("voc21", tmp_path / "voc", n_images=2, seed=0)
    assert "unknown dataset 'voc99'" in _error(capsys, main(base + ["--data-root", str(tmp_path / "voc"),
                                                                    "--dataset", "voc99"]))
    assert "class-name file not found" in _error(capsys, main(base + ["--data-root", str(tmp_path / "voc"),
                                                                      "--classes-file", "nope.txt"]))
    assert "unknown device" in _error(capsys, main(base + ["--data-root", str(tmp_path / "voc"), "--device", "gpu"]))
    (tmp_path / "f").write_text("x")
    assert "not a folder" in _error(capsys, main(base + ["--data-root", str(tmp_path / "voc"),
                                                         "--out", str(tmp_path / "f")]))


def test_eval_semantic_model_errors_after_checks(tmp_path, capsys):
    make_layout("voc21", tmp_path / "voc", n_images=2, seed=0)
    base = ["eval-semantic", "--config", "sclip_voc21", "--device", "cpu", "--data-root", str(tmp_path / "voc"),
            "--out", str(tmp_path / "o")]
    assert "unknown head" in _error(capsys, main(base + ["--head", "nope"]))
    assert "unknown config section" in _error(capsys, main(base + ["--cfg-options", "nope.x=1"]))
    assert "CLIP weights file not found" in _error(capsys, main(base + ["--pretrained", "/no/w.pt"]))


def test_eval_coco_errors(tmp_path, capsys, no_model):
    base = ["eval-coco", "--config", "sclip_coco_object", "--device", "cpu"]
    assert "COCO annotation file not found" in _error(capsys, main(base + ["--gt", str(tmp_path / "a.json"),
                                                                          "--images", str(tmp_path)]))
    (tmp_path / "a.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert "COCO image folder not found" in _error(capsys, main(base + ["--gt", str(tmp_path / "a.json"),
                                                                       "--images", str(tmp_path / "imgs")]))
    assert "--iou-type" in _error(capsys, main(base + ["--gt", str(tmp_path / "a.json"), "--images", str(tmp_path),
                                                       "--iou-type", "keypoints"]))


def test_subprocess_error_has_no_traceback(tmp_path):
    """The real entry point (python -m ovdense): one line on stderr, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "ovdense", "segment", str(tmp_path / "missing"), "--classes", "a",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: input folder not found: {tmp_path / 'missing'}"]


def test_eval_semantic_batch_size_and_report(tmp_path, capsys):
    """The eval flags reach the run: --batch-size (windows per forward), --report (report.html), a named config."""
    make_layout("voc21", tmp_path / "voc", n_images=2, seed=1, size=(40, 56))
    out = tmp_path / "out"
    code = main(["eval-semantic", "--config", "sclip_voc21", "--clip-model", str(TINY_CONFIG), "--pretrained", "none",
                 "--image-size", "64", "--templates", "a photo of a {}.", "--batch-size", "3", "--device", "cpu",
                 "--data-root", str(tmp_path / "voc"), "--out", str(out), "--quiet", "--report", "--report-worst", "1"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 2
    assert report["config"]["runtime"]["batch_size"] == 3
    assert (out / "report" / "report.html").is_file()


def test_eval_semantic_on_your_own_folders_and_dataset_index_space(tmp_path, capsys):
    """--img-dir/--ann-dir/--classes-file (mmseg CustomDataset) with reduce_zero_label, and the predictions
    written back in the label files' own index space (+1, unlabelled 0)."""
    rng = np.random.default_rng(3)
    (tmp_path / "img" / "sub").mkdir(parents=True)
    (tmp_path / "ann" / "sub").mkdir(parents=True)
    for name in ("a", "sub/b"):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{name}.jpg")
        Image.fromarray(rng.integers(0, 4, (32, 48), dtype=np.uint8)).save(tmp_path / "ann" / f"{name}.png")
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    out = tmp_path / "out"
    base = ["eval-semantic", "--img-dir", str(tmp_path / "img"), "--ann-dir", str(tmp_path / "ann"),
            "--classes-file", str(tmp_path / "names.txt"), "--reduce-zero-label", "--device", "cpu", "--quiet",
            "--method", "maskclip", "--clip-model", str(TINY_CONFIG), "--pretrained", "none", "--image-size", "64",
            "--templates", "simple"]
    code = main(base + ["--out", str(out), "--save-predictions", "--prediction-format", "dataset"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 2 and report["num_classes"] == 3 and report["reduce_zero_label"]
    for name in ("a", "sub/b"):
        ours = np.array(Image.open(out / "preds" / f"{name}.png"))
        theirs = np.array(Image.open(out / "preds_dataset" / f"{name}.png"))
        assert ours.shape == theirs.shape == (32, 48)
        np.testing.assert_array_equal(theirs, np.where(ours == 255, 0, ours.astype(np.int64) + 1))
    # a label file missing, a folder missing: one error line, exit 2
    (tmp_path / "ann" / "a.png").unlink()
    assert "have no label file" in _error(capsys, main(base + ["--out", str(tmp_path / "o2")]))
    assert "label folder not found" in _error(capsys, main(
        ["eval-semantic", "--img-dir", str(tmp_path / "img"), "--ann-dir", str(tmp_path / "nope"),
         "--classes-file", str(tmp_path / "names.txt")]))
    assert "--classes-file" in _error(capsys, main(
        ["eval-semantic", "--img-dir", str(tmp_path / "img"), "--ann-dir", str(tmp_path / "ann")]))


# ------------------------------------------------------------- long runs: sources, flags and reruns, before the model
def test_segment_glob_and_refine_at_errors_come_before_the_model(tmp_path, images, tiny_config, capsys, no_model,
                                                                 monkeypatch):
    cli_main = sys.modules["ovdense.cli.main"]  # (ovdense.cli.main is also the name of the function)
    out = tmp_path / "out"
    assert "input folder not found: " + str(tmp_path / "nope") in _error(
        capsys, _segment(f"{tmp_path}/nope/*.jpg", out, tiny_config))
    assert "no images match" in _error(capsys, _segment(f"{images}/*.tif", out, tiny_config), expected_code=1)
    monkeypatch.setattr(cli_main, "_segmenter_accepts", lambda name: False)  # an OVSegmenter without refine_at
    assert "--refine-at" in _error(capsys, _segment(images, out, tiny_config, "--refine-at", "model"))
    for argv in (["segment", "x", "--resolution", "half"], ["segment", "x", "--save-txt-format", "obb"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: ")


def test_eval_semantic_rerun_and_resume_mismatch_are_refused_before_the_model(tmp_path, capsys, monkeypatch):
    """An --out holding a run: refused without --resume/--overwrite, and --resume with another config,
    both before any model is built; --overwrite clears exactly the previous results."""
    import ovdense.cli.evaluate as evaluate

    make_layout("voc21", tmp_path / "voc", n_images=2, seed=0, size=(24, 32))
    out = tmp_path / "o"
    base = ["eval-semantic", "--config", "sclip_voc21", "--clip-model", str(TINY_CONFIG), "--pretrained", "none",
            "--image-size", "32", "--templates", "simple", "--device", "cpu", "--data-root", str(tmp_path / "voc"),
            "--out", str(out), "--quiet"]
    assert main(base + ["--save-predictions"]) == 0
    assert "metrics: " + str(out / "metrics.json") in capsys.readouterr().out
    built = []
    real_build = evaluate._build_segmenter
    monkeypatch.setattr(evaluate, "_build_segmenter", lambda a: built.append(a) or real_build(a))
    assert "already holds an evaluation" in _error(capsys, main(base))
    msg = _error(capsys, main(base + ["--resume", "--threshold", "0.5"]))
    assert "cannot resume" in msg and "decode.background_threshold" in msg
    assert "head.type" in _error(capsys, main(base + ["--resume", "--head", "naclip"]))
    assert "dtype" in _error(capsys, main(base + ["--resume", "--dtype", "bf16"]))
    assert built == []  # every refusal came before the model
    (out / "mine.txt").write_text("not a result")
    assert main(base + ["--overwrite"]) == 0
    assert built and (out / "mine.txt").is_file() and not (out / "preds").exists()
