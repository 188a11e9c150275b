"""Where input images come from: a folder (recursive), one file, a glob pattern, a video, or
any iterable of images.

Shared by the folder tool (``ovdense segment SRC``) and :meth:`OVSegmenter.predict_iter`.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .images import IMAGE_EXTENSIONS, ImageLoadError, load_image


def _is_glob(path: str) -> bool:
    return glob.has_magic(path) and not os.path.exists(path)


def find_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                exclude: Sequence[str] = ()) -> List[str]:
    """Image files below ``root`` (recursive, sorted); ``root`` may also be one image file, or a
    glob pattern (``photos/*.jpg``, ``photos/**/*.png``; ``**`` spans folders) matched here.

    Folders in ``exclude`` (e.g. the run's own output folder) and hidden entries are skipped.
    """
    exts = tuple(e.lower() for e in extensions)
    skip = {os.path.realpath(e) for e in exclude}
    if _is_glob(root):
        found = []
        for path in glob.glob(root, recursive=True):
            real = os.path.realpath(path)
            if (os.path.isfile(path) and path.lower().endswith(exts)
                    and not any(real == s or real.startswith(s + os.sep) for s in skip)):
                found.append(path)
        return sorted(found)
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"input folder not found: {root}")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) not in skip)
        found += [os.path.join(folder, f) for f in files if f.lower().endswith(exts) and not f.startswith(".")]
    return sorted(found)


def source_base(src: str) -> str:
    """The folder that output names are relative to: the folder itself, an image's folder, or a
    glob's fixed leading folders (``photos/**/*.jpg`` -> ``photos``)."""
    if _is_glob(src):
        parts = []
        for part in src.split(os.sep):
            if glob.has_magic(part):
                break
            parts.append(part)
        fixed = os.sep.join(parts)
        return fixed if fixed or not src.startswith(os.sep) else os.sep
    return src if os.path.isdir(src) else os.path.dirname(src)


#: Files read as videos by :func:`iter_images` (decoded with OpenCV).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def iter_images(source: Any, bgr: bool = False) -> Iterator[Tuple[Any, Optional[str]]]:
    """``(image, path)`` pairs of a source, read lazily (a file is loaded when its pair is pulled).

    ``source``: a folder (the images below it, sorted), one image file, a glob pattern, a video
    file (frames decoded with OpenCV, BGR turned to RGB, path ``f"{video}#{index}"``), one
    image (array, PIL image), or any iterable of images, paths or ImageContexts (``bgr`` for
    arrays). A source that names nothing raises ``FileNotFoundError`` at once.
    """
    from ..structures import ImageContext

    def files(paths: Sequence[str]) -> Iterator[Tuple[Any, Optional[str]]]:
        for path in paths:
            yield load_image(path), path

    def items(iterable: Any) -> Iterator[Tuple[Any, Optional[str]]]:
        for item in iterable:
            if isinstance(item, ImageContext):
                yield item, item.path
            elif isinstance(item, (str, os.PathLike)):
                yield load_image(item), os.fspath(item)
            else:
                yield load_image(item, bgr=bgr), None

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS):
            return video_frames(path)
        if os.path.exists(path) or glob.has_magic(path):
            found = find_images(path)
            if not found:
                raise FileNotFoundError(f"no images {'match' if glob.has_magic(path) else 'found in'} {path}")
            return files(found)
        raise FileNotFoundError(f"no such file, folder or pattern: {path}")
    if isinstance(source, np.ndarray) and source.ndim in (2, 3):
        return items([source])  # one image (a 4-D array is a stack of frames)
    if not hasattr(source, "__iter__") or hasattr(source, "getexif"):  # PIL images are not streams
        return items([source])
    return items(source)


def video_frames(path: str) -> Iterator[Tuple[np.ndarray, str]]:
    """The RGB frames of a video file with their ``f"{path}#{index}"`` names (opened at once,
    decoded lazily, released when the iteration ends)."""
    import cv2

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise ImageLoadError(f"{path}: not a readable video")

    def frames() -> Iterator[Tuple[np.ndarray, str]]:
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield load_image(frame, bgr=True), f"{path}#{index}"
                index += 1
        finally:
            capture.release()

    return frames()
