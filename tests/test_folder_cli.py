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
    good = ["rgb", "deep16", "sub/gray", "sub/rgba"]
    for name in good:
        label = np.array(Image.open(out / "labels" / f"{name}.png"))
        record = json.loads((out / "preds" / f"{name}.json").read_text())
        src = load_image(str(next(image_folder.glob(f"{name}.*"))))
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
    assert "corrupt.jpg" in capsys.readouterr().err

    # resume: finished images are skipped; a deleted record is redone
    (out / "preds" / "rgb.json").unlink()
    before = (out / "labels" / "deep16.png").stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == 1 and run["skipped_existing"] == 3
    assert (out / "labels" / "deep16.png").stat().st_mtime_ns == before


def test_cli_errors_are_clear(tmp_path, tiny_config, capsys):
    assert main(["segment", str(tmp_path / "missing"), "--config", tiny_config, "--classes", "cat",
                 "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"]) == 2
    assert "input folder not found" in capsys.readouterr().err
    assert main(["segment", str(tmp_path), "--config", str(tmp_path / "nope.py"), "--classes", "cat",
                 "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="class-name file not found"):
        main(["segment", str(tmp_path), "--config", tiny_config, "--classes-file", str(tmp_path / "c.txt"),
              "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_tools_script_runs(tmp_path, image_folder, tiny_config):
    script = os.path.join(os.path.dirname(__file__), "..", "tools", "segment_folder.py")
    out = tmp_path / "script_out"
    proc = subprocess.run([sys.executable, script, str(image_folder / "rgb.jpg"), "--config", tiny_config,
                           "--classes", "cat", "--out", str(out), "--device", "cpu", "--quiet",
                           "--cfg-options", "decode.logit_scale=50"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "labels" / "rgb.png").is_file()
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
