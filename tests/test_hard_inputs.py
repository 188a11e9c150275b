"""Hard inputs through the public API: a clear ValueError / FileNotFoundError naming the
problem, or a correct result; never a traceback from inside torch or OpenCV.

(Thin images, None class names and the one-string rule are in test_newcomer.py.)
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ovdense
from ovdense.io.images import ImageLoadError, ImageNotFoundError, load_image
from ovdense.preprocess import Preprocessor
from ovdense.text import build_vocabulary


@pytest.fixture(scope="module")
def seg(tiny_backbone):
    """No resize (the tiny model's patch is 16 px), 32 px windows, two classes."""
    s = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu", preprocess=dict(short_side=None),
                            windows=dict(crop=32, stride=16), text_encoder=dict(cache_dir="", templates="simple"))
    s.set_classes(["cat", "dog"])
    return s


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ classes
@pytest.mark.parametrize("call", ["set_classes", "encode_vocabulary"])
def test_empty_class_list_is_refused(seg, call):
    with pytest.raises(ValueError, match="the vocabulary is empty"):
        getattr(seg, call)([])


def test_duplicate_class_names_are_refused_naming_both(seg):
    with pytest.raises(ValueError, match=r"duplicate class name 'Cat' \(classes 0 and 1\)"):
        seg.set_classes(["cat", "Cat"])
    assert seg.vocabulary.class_names == ("cat", "dog")  # the refused call changed nothing


@pytest.mark.parametrize("classes, index", [(["cat", "   "], 1), (["cat", ""], 1), (["\t\n", "cat"], 0),
                                            (["cat", ["  ", " "]], 1), (["cat", []], 1)])
def test_whitespace_only_class_is_refused(seg, classes, index):
    with pytest.raises(ValueError, match=rf"^class {index} has no name.*empty or only whitespace"):
        seg.set_classes(classes)


def test_whitespace_only_background_is_refused():
    with pytest.raises(ValueError, match=r"^class 0 has no name"):
        build_vocabulary(["cat"], background="  ")


def test_whitespace_only_synonyms_are_dropped():
    assert build_vocabulary([["dog", "  ", "puppy"]]).queries == ("dog", "puppy")
    assert build_vocabulary(["dog, , puppy"]).queries == ("dog", "puppy")


def test_a_set_of_classes_is_refused_as_unordered():
    with pytest.raises(ValueError, match=r"classes is a set, which has no order.*sorted\(classes\)"):
        build_vocabulary({"cat", "dog"})


def test_too_long_class_name_warns_naming_it(seg):
    # the tiny model's context is 16 tokens; CLIP's is 77: the same rule
    long = "very " * 30 + "long dog"
    assert seg.backbone.tokenizer().context_length == 16
    with pytest.warns(UserWarning, match=r"1 class name\(s\) longer than the text encoder's 16-token context .*"
                                         r"truncated by the tokenizer.*'very very"):
        vocab = seg.encode_vocabulary(["cat", long])
    assert vocab.vocabulary.class_names[1] == long
    assert torch.isfinite(vocab.text).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg.encode_vocabulary(["cat", "a short name"])  # no warning for names that fit
    assert set(seg.text.too_long(["cat", long])) == {long}


# ------------------------------------------------------------------ images: size
@pytest.mark.parametrize("shape", [(3, 3), (10, 200), (15, 15), (2, 2)])
def test_image_smaller_than_a_patch_is_refused_everywhere(seg, shape):
    image = _rgb(*shape)
    match = rf"image of {shape[0]}x{shape[1]} px \(HxW\), kept at its size .* smaller than the model's 16 px patch"
    with pytest.raises(ValueError, match=match):
        seg.predict(image)
    with pytest.raises(ValueError, match=match):
        seg.dense_embeddings(image)
    with pytest.raises(ValueError, match=match):
        ovdense.Detector(seg).detect(image)
    with pytest.raises(ValueError, match=match):
        list(seg.predict_iter([image]))


@pytest.mark.parametrize("shape", [(16, 16), (16, 200), (17, 33), (40, 17)])
def test_image_of_a_patch_or_more_but_under_a_window_segments(seg, shape):
    res = seg.predict(_rgb(*shape))
    assert res.label_map.shape == shape and res.label_map.min() >= -1 and res.label_map.max() < 2


def test_small_image_is_fine_when_resized_up(tiny_backbone):
    s = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu", preprocess=dict(short_side=32),
                            windows=dict(crop=32, stride=16), text_encoder=dict(cache_dir="", templates="simple"))
    s.set_classes(["cat", "dog"])
    assert s.predict(_rgb(3, 3)).label_map.shape == (3, 3)


def test_preprocessor_takes_min_side_from_the_weights(tiny_backbone):
    assert Preprocessor().with_weights(tiny_backbone.model).min_side == 16
    assert Preprocessor(min_side=8).with_weights(tiny_backbone.model).min_side == 8
    with pytest.raises(ValueError, match=r"resized to 10x100 px at scale \(100, 10\).*16 px patch"):
        Preprocessor(short_side=None, image_scale=(100, 10), min_side=16).resize(_rgb(20, 200))


# ------------------------------------------------------------------ images: layout and dtype
@pytest.mark.parametrize("array", [
    np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8),
    np.random.default_rng(0).integers(0, 256, (40, 50, 1), dtype=np.uint8),
    np.random.default_rng(0).integers(0, 256, (40, 50, 4), dtype=np.uint8),
], ids=["grey-2d", "grey-1ch", "rgba"])
def test_grey_and_rgba_arrays_become_rgb(seg, array):
    rgb = load_image(array)
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8
    grey = array.reshape(40, 50, -1)
    assert np.array_equal(rgb, np.repeat(grey, 3, axis=2) if grey.shape[2] == 1 else grey[:, :, :3])
    assert seg.predict(array).label_map.shape == (40, 50)


@pytest.mark.parametrize("mode", ["P", "LA", "1", "L", "RGBA", "PA", "CMYK", "I;16"])
def test_pil_modes_become_rgb(seg, mode):
    rgb = _rgb(40, 50)
    image = Image.fromarray(rgb).convert(mode) if mode != "I;16" else Image.fromarray(
        (rgb[:, :, 0].astype(np.uint16) * 257))
    out = load_image(image)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    if mode in ("RGBA",):
        assert np.array_equal(out, rgb)
    if mode == "I;16":  # 16-bit keeps its high byte
        assert np.array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))
    assert seg.predict(image).label_map.shape == (40, 50)


@pytest.mark.parametrize("mode", ["P", "LA", "1", "RGBA", "I;16"])
def test_files_of_every_mode_become_rgb(seg, mode, tmp_path):
    rgb = _rgb(40, 50)
    image = Image.fromarray(rgb).convert(mode) if mode != "I;16" else Image.fromarray(
        (rgb[:, :, 0].astype(np.uint16) * 257))
    path = tmp_path / f"{mode.replace(';', '')}.png"
    image.save(path)
    out = load_image(str(path))
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    if mode == "I;16":
        assert np.array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))
    assert seg.predict(str(path)).label_map.shape == (40, 50)


def test_float_images_in_unit_range_are_scaled_and_others_refused():
    rgb = _rgb(20, 30)
    assert np.array_equal(load_image(rgb / 255.0), rgb)
    assert np.array_equal(load_image((rgb / 255.0).astype(np.float32)), rgb)
    with pytest.raises(ValueError, match=r"^array: float images must lie in \[0, 1\], got values in \[0, 255\]; "
                                         r"for 0-255 data pass uint8"):
        load_image(rgb.astype(np.float64))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(seg, value):
    image = np.full((20, 30, 3), 0.5)
    image[3, 4, 1] = value
    with pytest.raises(ValueError, match="float image contains NaN or inf"):
        seg.predict(image)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, bool])
def test_other_dtypes_are_refused_saying_to_pass_uint8(dtype):
    with pytest.raises(ValueError, match=rf"unsupported dtype {np.dtype(dtype)}: pass uint8"):
        load_image(np.ones((20, 30, 3), dtype))


@pytest.mark.parametrize("shape", [(3, 40, 50), (4, 40, 50), (1, 40, 50), (3, 4, 5)])
def test_channel_first_arrays_are_refused_not_transposed(seg, shape):
    with pytest.raises(ValueError, match=rf"shape \({shape[0]}, {shape[1]}, {shape[2]}\) looks channel-first.*"
                                         r"pass HxWx3"):
        seg.predict(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(3, 40, 50), (40, 50, 3)])
def test_torch_tensors_are_refused_with_the_conversion(seg, shape):
    with pytest.raises(ValueError, match=r"a torch Tensor of shape .* pass a numpy HxWx3 uint8 array"):
        seg.predict(torch.zeros(shape, dtype=torch.uint8))


@pytest.mark.parametrize("shape, match", [
    ((1, 40, 50, 3), r"expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape \(1, 40, 50, 3\); for a batch"),
    ((40, 50, 2), r"expected an HxW.*got shape \(40, 50, 2\)"),
    ((0, 0, 3), r"empty image of shape \(0, 0, 3\)"),
    ((0,), r"empty image"),
    ((), r"expected an HxW.*got shape \(\)"),
    ((50,), r"expected an HxW.*got shape \(50,\)"),
])
def test_bad_array_shapes_are_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("thing", [None, [[1, 2], [3, 4]], b"abc", 3.0])
def test_other_objects_are_refused(thing):
    with pytest.raises(ValueError, match=r"unsupported image input of type"):
        load_image(thing)


# ------------------------------------------------------------------ files
def test_missing_path_is_a_file_not_found_error_naming_it(seg, tmp_path):
    path = tmp_path / "nope.png"
    for call in (lambda: load_image(path), lambda: seg.predict(str(path)), lambda: list(seg.predict_iter([path]))):
        with pytest.raises(FileNotFoundError, match=rf"^{path}: no such file") as err:
            call()
        assert isinstance(err.value, ImageNotFoundError) and isinstance(err.value, ValueError)


def test_a_directory_is_not_an_image(seg, tmp_path):
    with pytest.raises(ImageLoadError, match=rf"^{tmp_path}: is a directory, not an image file"):
        seg.predict(str(tmp_path))


# ------------------------------------------------------------------ property-based
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(h=st.integers(1, 300), w=st.integers(1, 300), names=st.lists(_names, min_size=1, max_size=5),
       seed=st.integers(0, 2**16))
def test_predict_returns_a_label_map_or_a_value_error(seg, h, w, names, seed):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    try:
        vocab = seg.encode_vocabulary(names)
    except ValueError as err:
        assert str(err)
        return
    try:
        res = seg.predict(image, vocab)
    except ValueError as err:
        assert str(err) and f"{h}x{w}" in str(err)
        return
    assert res.label_map.shape == (h, w)
    assert res.label_map.min() >= -1 and res.label_map.max() < vocab.vocabulary.num_classes
