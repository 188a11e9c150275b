"""Image loading: float arrays (NaN/inf, float16) and EXIF orientation for PIL inputs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from ovdense.io.images import ImageLoadError, load_image

ORIENTATION = 0x0112


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    """A gradient image: JPEG keeps it to within a few levels, and no two corners match."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + 2 * y) % 256], -1).astype(np.uint8)


def _save_with_orientation(image: Image.Image, path, orientation: int) -> None:
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    image.save(path, exif=exif)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_with_nan_or_inf_are_refused(bad, dtype):
    arr = np.full((4, 5, 3), 0.5, dtype)
    arr[1, 2, 0] = bad
    with pytest.raises(ImageLoadError, match=r"^array: float image contains NaN or inf$"):
        load_image(arr)


def test_float_range_is_still_checked():
    with pytest.raises(ImageLoadError, match=r"array: float images must lie in \[0, 1\]"):
        load_image(np.full((2, 2, 3), 1.5, np.float32))


def test_float16_loads_like_float32():
    rng = np.random.default_rng(0)
    arr16 = rng.random((6, 7, 3)).astype(np.float16)
    out16 = load_image(arr16)
    assert out16.dtype == np.uint8 and out16.shape == (6, 7, 3)
    np.testing.assert_array_equal(out16, load_image(arr16.astype(np.float32)))
    np.testing.assert_array_equal(load_image(np.ones((2, 2), np.float16)), np.full((2, 2, 3), 255, np.uint8))


def test_pil_images_are_turned_by_exif_like_paths(tmp_path):
    """Orientation 6 (rotate 90 degrees clockwise): the path (OpenCV) and the PIL image
    give the same upright array, turned relative to the stored pixels."""
    stored = _smooth_rgb(40, 64)
    path = tmp_path / "rotated.jpg"
    _save_with_orientation(Image.fromarray(stored), path, 6)

    raw = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    raw = raw[:, :, ::-1]
    assert raw.shape == (40, 64, 3)  # the stored (un-turned) pixels

    from_path = load_image(str(path))
    with Image.open(path) as im:
        from_pil = load_image(im)
    assert from_path.shape == from_pil.shape == (64, 40, 3)
    diff = np.abs(from_path.astype(int) - from_pil.astype(int))
    assert diff.max() <= 8 and diff.mean() < 1.0  # two JPEG decoders of the same file
    np.testing.assert_array_equal(from_path, np.rot90(raw, k=-1))  # clockwise


def test_pil_without_orientation_is_used_as_is(tmp_path):
    stored = _smooth_rgb(10, 12)
    path = tmp_path / "plain.png"
    Image.fromarray(stored).save(path)
    with Image.open(path) as im:
        np.testing.assert_array_equal(load_image(im), stored)


def test_sixteen_bit_pil_images_are_turned_and_reduced(tmp_path):
    values = (np.arange(30 * 50).reshape(30, 50) * 40).astype(np.uint16)
    path = tmp_path / "deep.png"
    _save_with_orientation(Image.fromarray(values), path, 6)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16") and im.getexif().get(ORIENTATION) == 6
        out = load_image(im)
    assert out.shape == (50, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], np.rot90(values >> 8, k=-1).astype(np.uint8))
