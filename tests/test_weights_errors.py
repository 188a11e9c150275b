"""A weights file that is not a usable checkpoint: one line that names the file and says what it
is (an HTML page, an empty file, a state dict of another architecture, ...), raised as
:class:`ovdense.WeightsFormatError` (a ValueError); from the command line ``error: <that line>``
and exit code 2, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CONFIG
from ovdense import CLIPBackbone, WeightsFormatError

REPO = Path(__file__).resolve().parents[1]
TINY_ARCH = "ViT width 64, 3 layers, patch 16, 64 px"  # tests/fixtures/ovdense-tiny.json

HTML = (b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>openai/clip-vit-base-patch16"
        b" at main</title></head><body><div>Hugging Face</div></body></html>\n")


# ------------------------------------------------------------------ files that are not checkpoints
def _truncated_checkpoint(path):
    """A real torch checkpoint cut short, as an interrupted download leaves it."""
    full = path.with_suffix(".full")
    torch.save({"visual.conv1.weight": torch.zeros(64, 3, 16, 16)}, full)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_of_text(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not weights")


NOT_CHECKPOINTS = {
    # name: (how to write it, what the message must say)
    "html": (lambda p: p.write_bytes(HTML), "looks like an HTML page"),
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "random": (lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
                                       .tobytes().replace(b"\x80", b"\x81").replace(b"PK", b"pk")),
               "neither a zip archive nor a pickle"),
    "lfs_pointer": (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:"
                                           + "ab" * 32 + "\nsize 598641023\n"), "Git LFS pointer"),
    "truncated": (_truncated_checkpoint, "damaged or cut short"),
    "zip_of_text": (_zip_of_text, "zip archive that is not a torch checkpoint"),
    "json": (lambda p: p.write_text(json.dumps({"embed_dim": 512, "vision_cfg": {}})), "JSON file"),
}


def _one_line(err) -> str:
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "\n" not in message and "weights_only=False" not in message, message
    return message


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
@pytest.mark.parametrize("clip_model", [str(TINY_CONFIG), None], ids=["named", "unnamed"])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, kind, clip_model):
    write, says = NOT_CHECKPOINTS[kind]
    path = tmp_path / "ViT-B-16.pt"
    write(path)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(clip_model, str(path))
    message = _one_line(err)
    assert message.startswith(str(path)) and says in message, message


def test_pickles_torch_will_not_read_are_named(tmp_path):
    """Files that pass the first-bytes check but that torch.load(weights_only=True) refuses:
    the reason without torch's advice to load unsafely."""
    import argparse

    sd = {"visual.conv1.weight": torch.zeros(8, 3, 16, 16)}
    training = tmp_path / "training.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": sd}, training)
    legacy = tmp_path / "legacy.pt"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    legacy.write_bytes(data[: len(data) // 2])
    for path, says in ((training, "argparse.Namespace"), (legacy, "cut short")):
        for clip_model in (str(TINY_CONFIG), None):
            with pytest.raises(WeightsFormatError) as err:
                CLIPBackbone.load(clip_model, str(path))
            message = _one_line(err)
            assert message.startswith(str(path)) and says in message, message


def test_safetensors_problems_are_named(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(HTML)
    with pytest.raises(WeightsFormatError, match="looks like an HTML page"):
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(WeightsFormatError, match="not a safetensors file"):
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    renamed = tmp_path / "model.pt"  # a real safetensors file that open_clip would torch.load
    from safetensors.torch import save_file

    save_file({"visual.conv1.weight": torch.zeros(8, 3, 16, 16)}, str(renamed))
    with pytest.raises(WeightsFormatError, match="a safetensors file under another name"):
        CLIPBackbone.load(str(TINY_CONFIG), str(renamed))


# ------------------------------------------------------------------ torch files that hold no CLIP
def test_unrelated_tensors_are_not_a_clip_checkpoint(tmp_path):
    path = tmp_path / "unrelated.pt"
    torch.save({"a": torch.randn(3), "b": torch.zeros(2, 2)}, path)
    for clip_model in (str(TINY_CONFIG), None):
        with pytest.raises(WeightsFormatError) as err:
            CLIPBackbone.load(clip_model, str(path))
        message = _one_line(err)
        assert message.startswith(str(path)) and "not a CLIP ViT checkpoint" in message and "'a'" in message


def test_state_dict_of_a_non_clip_model_is_named(tmp_path):
    path = tmp_path / "convnet.pt"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    torch.save(net.state_dict(), path)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    assert "not a CLIP ViT checkpoint" in _one_line(err)
    torch.save([torch.zeros(3)], path)  # a torch file, but not a dict
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    assert "not a state dict" in _one_line(err) and "list" in str(err.value)


# ------------------------------------------------------------------ CLIP state dicts of another architecture
def _tiny_variant(tmp_path, name, **vision):
    cfg = json.loads(TINY_CONFIG.read_text())
    cfg["vision_cfg"].update(vision)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _tiny_weights(tmp_path, name, half=False, **vision):
    """The state dict of a random tiny open_clip CLIP whose vision tower differs by ``vision``."""
    torch.manual_seed(0)
    model = CLIPBackbone.load(str(_tiny_variant(tmp_path, name, **vision)), None).model
    sd = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / f"{name}.pt"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("vision, theirs, half", [
    (dict(width=128, head_width=64), "ViT width 128, 3 layers, patch 16, 64 px", False),
    (dict(layers=2), "ViT width 64, 2 layers, patch 16, 64 px", False),
    # float16 weights of another patch size: open_clip resized the positional embedding first
    # and failed with '"compute_index_ranges_weights" not implemented for 'Half''
    (dict(patch_size=8), "ViT width 64, 3 layers, patch 8, 64 px", True),
], ids=["width", "layers", "patch_fp16"])
def test_state_dict_of_another_architecture_names_both(tmp_path, vision, theirs, half):
    path = _tiny_weights(tmp_path, "ovdense-tiny-other-" + "-".join(map(str, vision.values())), half=half, **vision)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    message = _one_line(err)
    assert message.startswith(str(path)) and theirs in message and TINY_ARCH in message, message
    assert "ovdense-tiny" in message and "Half" not in message


def test_same_architecture_at_another_image_size(tmp_path):
    """float32 weights trained at another image size still load (open_clip resizes the positional
    embedding); float16 ones, which open_clip cannot resize on CPU, are refused in one line that
    says both sizes."""
    fp32 = _tiny_weights(tmp_path, "ovdense-tiny-96px", image_size=96)
    assert CLIPBackbone.load(str(TINY_CONFIG), str(fp32)).native_grid == (4, 4)
    fp16 = _tiny_weights(tmp_path, "ovdense-tiny-96px-fp16", half=True, image_size=96)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(str(TINY_CONFIG), str(fp16))
    message = _one_line(err)
    assert "96 px" in message and TINY_ARCH in message and "float16" in message, message


def test_same_vision_tower_other_text_tower(tmp_path):
    cfg = json.loads(TINY_CONFIG.read_text())
    cfg["text_cfg"]["width"] = 64
    config = tmp_path / "ovdense-tiny-text64.json"
    config.write_text(json.dumps(cfg))
    torch.manual_seed(0)
    path = tmp_path / "text64.pt"
    torch.save(CLIPBackbone.load(str(config), None).model.state_dict(), path)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(str(TINY_CONFIG), str(path))
    message = _one_line(err)
    assert message.startswith(str(path)) and "vision tower fits" in message and TINY_ARCH in message, message


def test_open_clip_state_dict_without_a_model_name(tmp_path):
    """clip_model=None means an OpenAI-format file; a state dict that OpenAI's builder cannot
    build says so and asks for the architecture."""
    path = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    torch.save(CLIPBackbone.load(str(TINY_CONFIG), None).model.state_dict(), path)
    with pytest.raises(WeightsFormatError) as err:
        CLIPBackbone.load(None, str(path))
    message = _one_line(err)
    assert message.startswith(str(path)) and TINY_ARCH in message and "clip_model" in message, message


def test_the_segmenter_and_the_exports(tmp_path):
    import ovdense
    from ovdense import OVSegmenter
    from ovdense.backbones import WeightsFormatError as from_package
    from ovdense.backbones.clip import WeightsFormatError as from_clip

    assert ovdense.WeightsFormatError is from_package is from_clip and issubclass(from_clip, ValueError)
    path = tmp_path / "ViT-B-16.pt"
    path.write_bytes(HTML)
    with pytest.raises(WeightsFormatError, match="looks like an HTML page"):
        OVSegmenter(backbone=dict(clip_model=str(TINY_CONFIG), pretrained=str(path)), head="maskclip",
                    device="cpu")


# ------------------------------------------------------------------ the command line
@pytest.fixture()
def png_folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(root / name)
    return root


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OVDENSE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "ovdense", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=str(REPO), timeout=300)


def _cli_error(proc, path) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0], lines
    return lines[0]


def test_cli_html_saved_as_weights(tmp_path, png_folder):
    """The user's report: an HTML page saved as ViT-B-16.pt, passed as --pretrained."""
    path = tmp_path / "ViT-B-16.pt"
    path.write_bytes(HTML)
    proc = _cli("segment", png_folder, "--classes", "a", "b", "--pretrained", path, "--out", tmp_path / "out",
                "--device", "cpu")
    assert "looks like an HTML page" in _cli_error(proc, path)


@pytest.mark.slow  # the HTML case covers the CLI path in the default set
def test_cli_state_dict_of_another_width(tmp_path, png_folder):
    path = _tiny_weights(tmp_path, "ovdense-tiny-cli-w128", width=128, head_width=64)
    proc = _cli("segment", png_folder, "--classes", "a", "b", "--clip-model", TINY_CONFIG, "--pretrained", path,
                "--out", tmp_path / "out", "--device", "cpu")
    line = _cli_error(proc, path)
    assert "ViT width 128" in line and TINY_ARCH in line
