"""`ovdense encode-classes` and `ovdense segment --vocabulary`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ovdense.cli import main
from ovdense.structures import EncodedVocabulary
from ovdense.text import Vocabulary
from conftest import TINY_CONFIG


@pytest.fixture()
def tiny_config(tmp_path, tiny_backbone):
    """The tiny CLIP with fixed weights (the same model in every command of a test)."""
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), weights)
    path = tmp_path / "tiny_sclip.py"
    path.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained={str(weights)!r})\nhead = dict(type='sclip')\n"
        "preprocess = dict(short_side=64)\nwindows = dict(crop=64, stride=32)\ndecode = dict(logit_scale=40.0)\n"
        "text_encoder = dict(templates='simple')\n"
    )
    return str(path)


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "images" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(path)
    return path


def _segment(src, out, config, *extra):
    return main(["segment", str(src), "--config", config, "--out", str(out), "--device", "cpu", "--quiet",
                 "--no-overlays", *extra])


def test_encode_then_segment_with_the_file_equals_classes(tmp_path, tiny_config, image, capsys):
    vocab_path = tmp_path / "pets.pt"
    assert main(["encode-classes", "cat", "dog, puppy", "--background", "sky, wall", "--config", tiny_config,
                 "--device", "cpu", "--quiet", "-o", str(vocab_path)]) == 0
    assert "3 classes (5 queries" in capsys.readouterr().out
    enc = EncodedVocabulary.load(str(vocab_path))
    assert enc.class_names == ("sky", "cat", "dog") and enc.has_background and enc.text.shape[0] == 5
    np.testing.assert_allclose(enc.text.norm(dim=-1).numpy(), 1.0, atol=1e-5)

    assert _segment(image, tmp_path / "by_file", tiny_config, "--vocabulary", str(vocab_path)) == 0
    assert _segment(image, tmp_path / "by_names", tiny_config, "--classes", "cat", "dog, puppy",
                    "--background", "sky, wall") == 0
    a = np.array(Image.open(tmp_path / "by_file" / "labels" / "a.png.png"))
    b = np.array(Image.open(tmp_path / "by_names" / "labels" / "a.png.png"))
    assert np.array_equal(a, b)
    run = json.loads((tmp_path / "by_file" / "run.json").read_text())
    assert run["config"]["classes"]["names"][1] == ["cat"] and "vocabulary_sha256" in run["config"]["classes"]
    # --resume with the same file is the same run
    assert _segment(image, tmp_path / "by_file", tiny_config, "--vocabulary", str(vocab_path), "--resume") == 0


def test_encode_classes_from_a_file_with_background_first(tmp_path, tiny_config):
    names = tmp_path / "names.txt"
    names.write_text("background\ncat\ndog; puppy\n")
    out = tmp_path / "v.pt"
    assert main(["encode-classes", "--classes-file", str(names), "--background-first", "--config", tiny_config,
                 "--device", "cpu", "--quiet", "-o", str(out)]) == 0
    enc = EncodedVocabulary.load(str(out))
    assert enc.class_names == ("background", "cat", "dog") and enc.has_background


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_errors_are_one_line(tmp_path, tiny_config, image, capsys):
    good = tmp_path / "good.pt"
    EncodedVocabulary(Vocabulary.from_synonyms([["cat"], ["dog"]]), torch.randn(2, 32)).save(str(good))
    # both a vocabulary and classes
    assert _segment(image, tmp_path / "o1", tiny_config, "--vocabulary", str(good), "--classes", "cat") == 2
    _one_error_line(capsys, "--vocabulary", "--classes")
    # not a vocabulary file: text, and a torch file of something else
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, str(other))
    for bad in (text, other):
        assert _segment(image, tmp_path / "o2", tiny_config, "--vocabulary", str(bad)) == 2
        _one_error_line(capsys, str(bad), "not an ovdense vocabulary file")
    assert _segment(image, tmp_path / "o2", tiny_config, "--vocabulary", str(tmp_path / "missing.pt")) == 2
    _one_error_line(capsys, "vocabulary file not found")
    # a width other than the model's
    width = json.loads(TINY_CONFIG.read_text())["embed_dim"]
    wide = tmp_path / "wide.pt"
    EncodedVocabulary(Vocabulary.from_synonyms([["cat"]]), torch.randn(1, width + 3)).save(str(wide))
    assert _segment(image, tmp_path / "o3", tiny_config, "--vocabulary", str(wide)) == 2
    _one_error_line(capsys, f"{width + 3} wide", f"{width} wide")
    assert not (tmp_path / "o3").exists()  # refused before any output
    # encode-classes: no names; an output that is a folder
    assert main(["encode-classes", "--config", tiny_config, "--device", "cpu", "-o", str(tmp_path / "x.pt")]) == 2
    _one_error_line(capsys, "no classes")
    assert main(["encode-classes", "cat", "--config", tiny_config, "--device", "cpu", "-o", str(tmp_path)]) == 2
    _one_error_line(capsys, "is a folder")
