"""Image loading: every input becomes an ``(H, W, 3)`` uint8 RGB array.

Files are decoded with OpenCV exactly as mmcv's ``imread(..., 'color')`` does in the
reference benchmarks (grey and RGBA become 3-channel, 16-bit is reduced to 8-bit, EXIF
orientation applied), then swapped to RGB. PIL images get the same EXIF rotation, so a
photo gives the same array whether passed as a path or as ``Image.open(path)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
EXIF_ORIENTATION = 0x0112  # the EXIF tag ImageOps.exif_transpose reads

#: The smallest short side (pixels) of an input image.
MIN_IMAGE_SIDE = 2
#: The largest long side / short side of an input image. Resizing keeps the aspect ratio and
#: caps the long side (2048 px at the default scale), so a 100:1 strip becomes 2048 x 20 px,
#: still more than one row of 14 or 16 px ViT patches; a 1000:1 one would keep 2 px.
MAX_ASPECT_RATIO = 100.0

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")



@dataclass(frozen=True)
class LoadedImage:
    """An image already read into memory, with the file it came from: stages that find
    side files by image name (CorrCLIP's region maps) still see the path, and the file is not
    read twice (the folder tool and ``predict_iter`` pass their images so)."""

    array: np.ndarray
    path: str


ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image", LoadedImage]  # noqa: F821


def image_path(image: Any) -> Optional[str]:
    """The file an image input comes from (a path, or a :class:`LoadedImage`'s), else None."""
    if isinstance(image, LoadedImage):
        return os.fspath(image.path)
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None


class ImageLoadError(ValueError):
    """An image could not be read or has an unsupported layout; the message names it."""


class ImageNotFoundError(ImageLoadError, FileNotFoundError):
    """An image path that does not exist: both a :class:`FileNotFoundError` and (like every
    image problem) an :class:`ImageLoadError`; the message names the path."""


def check_image_geometry(height: int, width: int, name: str = "image") -> None:
    """Refuse an image too thin to segment: short side below :data:`MIN_IMAGE_SIDE` px, or
    long / short side above :data:`MAX_ASPECT_RATIO` (resized for CLIP, its short side would
    round to a few pixels, or to none). One :class:`ImageLoadError` names the image and every
    problem."""
    short, long = min(height, width), max(height, width)
    problems = []
    if short < MIN_IMAGE_SIDE:
        problems.append(f"its short side is {short} px, below the {MIN_IMAGE_SIDE} px minimum")
    if short > 0 and long / short > MAX_ASPECT_RATIO:
        problems.append(f"its aspect ratio {long / short:.0f}:1 is above the {MAX_ASPECT_RATIO:.0f}:1 limit "
                        f"(resized for CLIP its short side would shrink to a few pixels or none)")
    if problems:
        raise ImageLoadError(f"{name}: image of {height}x{width} px (HxW) is too thin to segment: "
                             f"{'; '.join(problems)}; crop or pad it first")


def _from_file(path: str) -> np.ndarray:
    import cv2

    if os.path.isdir(path):
        raise ImageLoadError(f"{path}: is a directory, not an image file (predict_iter takes a folder)")
    if not os.path.isfile(path):
        raise ImageNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"{path}: empty file")
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageLoadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _float_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """A float image in [0, 1] (float16, float32 or float64) as uint8, rounded."""
    if not np.isfinite(arr).all():
        raise ImageLoadError(f"{name}: float image contains NaN or inf")
    arr = arr.astype(np.float32, copy=False) if arr.dtype == np.float16 else arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ImageLoadError(f"{name}: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]; for 0-255 "
                             f"data pass uint8 (e.g. np.clip(a, 0, 255).astype(np.uint8))")
    return np.round(arr * 255).astype(np.uint8)


def _from_array(arr: np.ndarray, bgr: bool, name: str) -> np.ndarray:
    if arr.size == 0:
        raise ImageLoadError(f"{name}: empty image of shape {arr.shape}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        raise ImageLoadError(f"{name}: array of shape {arr.shape} looks channel-first (CxHxW); images are taken "
                             f"channel-last only: pass HxWx3 (e.g. a.transpose(1, 2, 0))")
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        hint = "; for a batch pass a list of images" if arr.ndim == 4 else ""
        raise ImageLoadError(f"{name}: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {arr.shape}{hint}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype in FLOAT_DTYPES:
        arr = _float_to_uint8(arr, name)
    elif arr.dtype != np.uint8:
        raise ImageLoadError(f"{name}: unsupported dtype {arr.dtype}: pass uint8 (0-255), uint16, or float "
                             f"in [0, 1] (e.g. np.clip(a, 0, 255).astype(np.uint8) for 0-255 integers)")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if bgr:
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def _exif_upright(image: "PIL.Image.Image") -> "PIL.Image.Image":  # noqa: F821
    """``image`` turned as its EXIF orientation tag says (what OpenCV does for files);
    the image itself when it has no such tag. Works for every mode, 16-bit included."""
    from PIL import ImageOps

    if image.getexif().get(EXIF_ORIENTATION, 1) in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _from_pil(image: "PIL.Image.Image") -> np.ndarray:  # noqa: F821
    image = _exif_upright(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image).astype(np.uint32)
        return _from_array((np.clip(arr, 0, 65535).astype(np.uint16)), False, "PIL image")
    return np.array(image.convert("RGB"))  # a writable copy (np.asarray of a PIL image is read-only)


def load_image(image: ImageInput, bgr: bool = False) -> np.ndarray:
    """Return ``(H, W, 3)`` uint8 RGB.

    Args:
        image: a file path, a PIL image (any mode: palette, grey, 1-bit, LA, RGBA, 16-bit
            ...), or a numpy array (HxW, HxWx1, HxWx3 or HxWx4, channel-last; uint8,
            uint16 (reduced to its high byte), or float16/32/64 in [0, 1], which is scaled
            by 255 and rounded). Arrays are taken as RGB unless ``bgr=True`` (OpenCV /
            cv_bridge users); a fourth channel (alpha) is dropped. Files (as OpenCV
            applies it) and PIL images are turned upright by their EXIF orientation;
            arrays are taken as they are. Channel-first ``(3, H, W)`` arrays and torch
            tensors are refused, never transposed by guess.

    Raises:
        ImageNotFoundError: a path that does not exist (a ``FileNotFoundError`` and an
            ``ImageLoadError``).
        ImageLoadError: one line naming the input and the problem (a directory, an empty
            or corrupt file, unsupported shape or dtype, a channel-first array or a tensor,
            float values outside [0, 1], NaN or inf, an empty array, an image too thin to
            segment: see :func:`check_image_geometry`).
    """
    if isinstance(image, LoadedImage):
        name = os.fspath(image.path)
        rgb = _from_array(image.array, bgr, name)
    elif isinstance(image, (str, os.PathLike)):
        name = os.fspath(image)
        rgb = _from_file(name)
    elif isinstance(image, np.ndarray):
        name = "array"
        rgb = _from_array(image, bgr, name)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow is a dependency
            Image = None
        if Image is None or not isinstance(image, Image.Image):
            if type(image).__module__.split(".")[0] == "torch":
                raise ImageLoadError(f"a torch {type(image).__name__} of shape {tuple(getattr(image, 'shape', ()))} "
                                     f"is not an image input (its layout would be a guess): pass a numpy HxWx3 "
                                     f"uint8 array, e.g. t.permute(1, 2, 0).cpu().numpy() for a CxHxW tensor")
            raise ImageLoadError(f"unsupported image input of type {type(image).__name__}: pass a file path, a "
                                 f"PIL image or a numpy HxWx3 uint8 array")
        name = "PIL image"
        rgb = _from_pil(image)
    check_image_geometry(rgb.shape[0], rgb.shape[1], name)
    return rgb
