"""Writers for per-image outputs; every file is written atomically (temp file + rename)."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Union

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


def write_text(path: Union[str, os.PathLike], text: str) -> str:
    """Write UTF-8 text atomically; returns the path."""
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


#: ``--save-txt`` formats: ``box`` (YOLO detection) and ``polygon`` (YOLO segmentation).
YOLO_FORMATS = ("box", "polygon")


def yolo_lines(detections: Any, height: int, width: int, fmt: str = "box", class_offset: int = 0,
               digits: int = 6) -> List[str]:
    """One YOLO text line per instance, coordinates normalised to ``[0, 1]`` by the image size.

    * ``fmt="box"``: ``class x_center y_center width height`` (YOLO detection labels), from
      the instances' ``xyxy`` boxes (pixel edges: ``x2 = x1 + width``).
    * ``fmt="polygon"``: ``class x1 y1 x2 y2 ...`` (YOLO segmentation labels), the outer
      contour of each instance mask (``cv2.findContours``, pixel centres; the largest one if a
      mask has several). An instance too thin for a polygon (one pixel, one line) gets its box.

    Args:
        detections: :class:`~ovdense.structures.Detections` (``xyxy``, ``mask``, ``class_id``),
            e.g. ``ovdense.build_instances(result, "connected_components")``.
        height, width: size of the label map the instances come from.
        class_offset: added to each class id (``-1`` drops a background class 0 from the ids).
    """
    _check_yolo_format(fmt)
    lines = []
    for i in range(len(detections)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.xyxy[i])
        crop = detections.mask[i][y1:y2, x1:x2] if fmt == "polygon" else None
        lines.append(_yolo_line(int(detections.class_id[i]) + class_offset, (x1, y1, x2, y2), crop,
                                height, width, fmt, digits))
    return lines


def yolo_label_lines(label_map: np.ndarray, has_background: bool, fmt: str = "box",
                     class_offset: Optional[int] = None, digits: int = 6) -> List[str]:
    """The lines of :func:`yolo_lines` for ``build_instances(result, "connected_components")``
    (one instance per 8-connected region of each class; no background class 0, no unlabelled
    pixel), found straight from the label map: no ``(N, H, W)`` instance masks are made, so a
    12 MP photo with hundreds of regions costs one label map of memory, not hundreds.

    ``class_offset`` defaults to ``-1`` with a background class (the ids skip it), else 0.
    """
    import cv2

    _check_yolo_format(fmt)
    offset = (-1 if has_background else 0) if class_offset is None else class_offset
    label_map = np.asarray(label_map)
    height, width = label_map.shape
    lines = []
    for cls in np.unique(label_map):
        cls = int(cls)
        if cls < 0 or (has_background and cls == 0):
            continue
        count, comp, stats, _ = cv2.connectedComponentsWithStats((label_map == cls).astype(np.uint8), connectivity=8)
        for i in range(1, count):
            x, y, w, h = (int(v) for v in stats[i, :4])
            crop = comp[y:y + h, x:x + w] == i if fmt == "polygon" else None
            lines.append(_yolo_line(cls + offset, (x, y, x + w, y + h), crop, height, width, fmt, digits))
    return lines


def _check_yolo_format(fmt: str) -> None:
    if fmt not in YOLO_FORMATS:
        raise ValueError(f"YOLO format must be one of {YOLO_FORMATS}, got {fmt!r}")


def _yolo_line(cls: int, box: Sequence[int], crop: Optional[np.ndarray], height: int, width: int, fmt: str,
               digits: int) -> str:
    x1, y1, x2, y2 = box
    if fmt == "box":
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
    else:
        points = _outer_contour(crop, box)
        values = np.clip(points / np.array([width, height], dtype=np.float64), 0.0, 1.0).ravel().tolist()
    return " ".join([str(cls)] + [f"{v:.{digits}f}" for v in values])


def _outer_contour(crop: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``(K, 2)`` float ``x, y`` pixel points (K >= 3) of the outer contour of a mask cropped to
    its ``box`` (``x1, y1, x2, y2``); the box's corners when the mask is too thin for a polygon."""
    import cv2

    x1, y1, x2, y2 = box
    contours, _ = cv2.findContours(np.ascontiguousarray(crop, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    best = max(contours, key=lambda c: (cv2.contourArea(c), len(c)), default=None)
    if best is None or len(best) < 3 or cv2.contourArea(best) == 0:
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    return best.reshape(-1, 2).astype(np.float64) + np.array([x1, y1], dtype=np.float64)


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
