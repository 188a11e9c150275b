"""Image loading: every input becomes an ``(H, W, 3)`` uint8 RGB array.

Files are decoded with OpenCV exactly as mmcv's ``imread(..., 'color')`` does in the
reference benchmarks (grey and RGBA become 3-channel, 16-bit is reduced to 8-bit, EXIF
orientation applied), then swapped to RGB.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")

ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image"]  # noqa: F821


class ImageLoadError(ValueError):
    """An image could not be read or has an unsupported layout; the message names it."""


def _from_file(path: str) -> np.ndarray:
    import cv2

    if not os.path.isfile(path):
        raise ImageLoadError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"{path}: empty file")
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageLoadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _from_array(arr: np.ndarray, bgr: bool, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageLoadError(f"{name}: expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"{name}: empty image of shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype in (np.float32, np.float64):
        if arr.min() < 0 or arr.max() > 1:
            raise ImageLoadError(f"{name}: float images must lie in [0, 1]")
        arr = np.round(arr * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageLoadError(f"{name}: unsupported dtype {arr.dtype} (use uint8)")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if bgr:
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def load_image(image: ImageInput, bgr: bool = False) -> np.ndarray:
    """Return ``(H, W, 3)`` uint8 RGB.

    Args:
        image: a file path, a PIL image, or a numpy array (HxW, HxWx3 or HxWx4; uint8,
            uint16, or float in [0, 1]). Arrays are taken as RGB unless ``bgr=True``
            (OpenCV / cv_bridge users).
    """
    if isinstance(image, (str, os.PathLike)):
        return _from_file(os.fspath(image))
    if isinstance(image, np.ndarray):
        return _from_array(image, bgr, "array")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(image).astype(np.uint32)
            return _from_array((np.clip(arr, 0, 65535).astype(np.uint16)), False, "PIL image")
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    raise ImageLoadError(f"unsupported image input of type {type(image).__name__}")
