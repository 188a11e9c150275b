"""Newcomer findings: subpackages as attributes, one rule for a plain class string, clear errors
for too-thin images and bad class entries."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ovdense
from ovdense.io.images import MAX_ASPECT_RATIO, MIN_IMAGE_SIDE, ImageLoadError, load_image
from ovdense.preprocess import Preprocessor
from ovdense.text import build_vocabulary

REPO = Path(__file__).resolve().parents[1]
LAZY = ("evaluation", "datasets", "viz", "synthetic", "apps", "bench", "io")


# ------------------------------------------------------------------ 1. subpackages as attributes
def test_subpackages_are_attributes_imported_on_first_use():
    """In a fresh interpreter: ``import ovdense`` leaves the applications unimported, and
    ``ovdense.evaluation`` (etc.) imports them on first access."""
    code = f"""
import sys, types
import ovdense
heavy = ("evaluation", "datasets", "viz", "synthetic", "apps", "bench")
eager = [n for n in heavy if "ovdense." + n in sys.modules]
assert not eager, f"imported by 'import ovdense': {{eager}}"
for name in {LAZY!r}:
    mod = getattr(ovdense, name)
    assert isinstance(mod, types.ModuleType) and mod is sys.modules["ovdense." + name], name
assert ovdense.evaluation.SemanticEvaluator and ovdense.datasets
assert set({LAZY!r}) <= set(dir(ovdense))
try:
    ovdense.no_such_subpackage
except AttributeError as err:
    assert "no_such_subpackage" in str(err)
else:
    raise AssertionError("no AttributeError")
assert not hasattr(ovdense, "no_such_subpackage")
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_lazy_attribute_in_this_process():
    assert ovdense.evaluation.__name__ == "ovdense.evaluation"
    assert ovdense.bench.__name__ == "ovdense.bench"
    with pytest.raises(AttributeError, match="nope"):
        ovdense.nope


# ------------------------------------------------------------------ 2. one rule for a plain string
def test_plain_string_is_one_class_line_like_a_list_element():
    single = build_vocabulary("dog, puppy")
    assert single == build_vocabulary(["dog, puppy"]) == build_vocabulary([["dog", "puppy"]])
    assert single.class_names == ("dog",) and single.queries == ("dog", "puppy")
    assert build_vocabulary("dog; puppy") == build_vocabulary(["dog; puppy"])
    assert build_vocabulary("cat", background="sky, wall") == build_vocabulary(["cat"], background="sky, wall")


def test_plain_string_naming_a_file_is_a_name_file(tmp_path):
    names = tmp_path / "names"  # no .txt suffix: an existing file is enough
    names.write_text("cat\ndog, puppy\n")
    expected = build_vocabulary(["cat", "dog, puppy"])
    assert build_vocabulary(str(names)) == expected and build_vocabulary(names) == expected
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_vocabulary(str(tmp_path / "missing.txt"))


def test_set_classes_with_a_string_equals_the_list_form(tiny_backbone):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="sclip", device="cpu", preprocess=dict(short_side=None),
                              windows=dict(crop=0), text_encoder=dict(cache_dir=""))
    from_string = seg.set_classes("dog, puppy")
    from_list = seg.set_classes(["dog, puppy"])
    assert from_string == from_list and from_string.num_classes == 1 and from_string.num_queries == 2


def test_cli_classes_are_one_class_line_each():
    from ovdense.cli.main import _classes_from_args, _vocabulary, build_parser

    args = build_parser().parse_args(["segment", "images", "--classes", "cat", "dog, puppy"])
    vocab = _vocabulary(*_classes_from_args(args))
    assert vocab.class_names == ("cat", "dog") and vocab.synonyms[1] == ("dog", "puppy")
    args = build_parser().parse_args(["segment", "images", "--classes", "dog, puppy"])
    assert _vocabulary(*_classes_from_args(args)) == build_vocabulary("dog, puppy")


@pytest.mark.parametrize("classes, match", [
    (["cat", None], r"^class 1 is None \(NoneType\)"),
    ([None], r"^class 0 is None"),
    (["cat", ["dog", None]], r"^class 1, synonym 1 is None"),
    (["cat", "dog", 3], r"^class 2 is 3 \(int\)"),
    (None, r"^classes is None"),
])
def test_bad_class_entries_name_the_entry_and_its_position(classes, match):
    with pytest.raises(ValueError, match=match):
        build_vocabulary(classes)


def test_bad_background_entry_is_a_value_error():
    with pytest.raises(ValueError, match=r"^background, synonym 1 is None"):
        build_vocabulary(["cat"], background=["sky", None])


def test_cli_reports_a_bad_entry_as_a_user_error():
    from ovdense.cli.common import UserError
    from ovdense.cli.main import _vocabulary

    with pytest.raises(UserError, match="class 1 is None"):
        _vocabulary(["cat", None], None)


# ------------------------------------------------------------------ 3. too-thin images
@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (1, 1)])
def test_one_pixel_images_are_refused_with_one_clear_error(shape):
    with pytest.raises(ImageLoadError, match=rf"^array: image of {shape[0]}x{shape[1]} px \(HxW\) is too thin "
                                             rf"to segment: its short side is 1 px, below the 2 px minimum"):
        load_image(np.zeros(shape + (3,), np.uint8))


def test_extreme_aspect_ratio_is_refused_and_the_limit_itself_loads():
    assert MIN_IMAGE_SIDE == 2 and MAX_ASPECT_RATIO == 100
    with pytest.raises(ValueError, match=r"^array: image of 2x202 px .* aspect ratio 101:1 is above the 100:1"):
        load_image(np.zeros((2, 202, 3), np.uint8))
    assert load_image(np.zeros((2, 200, 3), np.uint8)).shape == (2, 200, 3)
    assert load_image(np.zeros((200, 2, 3), np.uint8)).shape == (200, 2, 3)


def test_file_and_pil_inputs_are_named(tmp_path):
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 5000, 3), np.uint8)).save(path)
    with pytest.raises(ImageLoadError, match=rf"^{path}: image of 1x5000 px"):
        load_image(str(path))
    with pytest.raises(ImageLoadError, match=r"^PIL image: image of 1x5000 px"):
        load_image(Image.new("RGB", (5000, 1)))


def test_preprocessor_refuses_thin_images_instead_of_an_opencv_assertion():
    with pytest.raises(ValueError, match=r"^strip.png: image of 1x5000 px"):
        Preprocessor(short_side=336).resize(np.zeros((1, 5000, 3), np.uint8), name="strip.png")
    # the limit case resizes (mmcv rule: long side capped at 2048) ...
    assert Preprocessor(short_side=336).resize(np.zeros((2, 200, 3), np.uint8)).shape == (20, 2048, 3)
    # ... unless a small scale would round its short side to nothing
    with pytest.raises(ValueError, match=r"^image: image of 2x200 px \(HxW\) would resize to 0x32 px"):
        Preprocessor(short_side=None, image_scale=(32, 32)).resize(np.zeros((2, 200, 3), np.uint8))


def test_predict_names_the_thin_image_and_segments_the_limit_case(tiny_backbone, tmp_path):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="sclip", device="cpu", preprocess=dict(short_side=64),
                              windows=dict(crop=64, stride=32), text_encoder=dict(cache_dir=""))
    seg.set_classes(["cat", "dog"])
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 5000, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=rf"^{path}: image of 1x5000 px .*short side is 1 px"):
        seg.predict(str(path))
    rng = np.random.default_rng(0)
    res = seg.predict(rng.integers(0, 255, (3, 300, 3), dtype=np.uint8))
    assert res.label_map.shape == (3, 300)
