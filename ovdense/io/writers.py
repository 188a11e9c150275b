"""Writers for per-image outputs; every file is written atomically (temp file + rename)."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, Sequence, Union

import numpy as np


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _json_default(obj: Any) -> Any:
    """Fallback encoder: numpy scalars/arrays, sets; ``str`` for anything else (paths...)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def write_json(path: Union[str, os.PathLike], data: Any) -> str:
    """Write indented JSON atomically (numpy values are converted); returns the path."""
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=_json_default)
            fh.write("\n")
    return path


def palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours; the Pascal VOC bit-interleaved palette."""
    ids = np.arange(num_classes)
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for bit in range(8):
        for c in range(3):
            colours[:, c] |= (((ids >> (3 * bit + c)) & 1) << (7 - bit)).astype(np.uint8)
    return colours


def write_label_png(path: str, label_map: np.ndarray, num_classes: int) -> None:
    """A palette PNG (<= 255 classes) or a 16-bit grey PNG of class indices.

    Unlabelled pixels (-1) are written as 255 (the usual ignore value) in palette PNGs and
    as 65535 in 16-bit ones.
    """
    from PIL import Image

    with atomic_path(path) as tmp:
        if num_classes <= 255:
            img = Image.fromarray(label_map.astype(np.uint8), mode="P")
            pal = np.zeros((256, 3), dtype=np.uint8)
            pal[:num_classes] = palette(num_classes)
            img.putpalette(pal.ravel().tolist())
            img.save(tmp, format="PNG")
        else:
            import cv2

            if not cv2.imwrite(tmp, label_map.astype(np.uint16)):
                raise OSError(f"could not write {path}")


def overlay(image: np.ndarray, label_map: np.ndarray, num_classes: int, alpha: float = 0.5,
            skip: Sequence[int] = ()) -> np.ndarray:
    """Blend class colours over an RGB image; classes in ``skip`` (e.g. background) and
    unlabelled pixels (negative labels) stay clear."""
    colours = palette(max(num_classes, 1)).astype(np.float32)[np.clip(label_map, 0, None)]
    out = image.astype(np.float32)
    mask = label_map >= 0
    for c in skip:
        mask &= label_map != c
    out[mask] = (1 - alpha) * out[mask] + alpha * colours[mask]
    return out.round().astype(np.uint8)


def write_overlay_jpg(path: str, image: np.ndarray, label_map: np.ndarray, num_classes: int,
                      skip: Sequence[int] = (), quality: int = 90) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(overlay(image, label_map, num_classes, skip=skip)).save(tmp, format="JPEG", quality=quality)
