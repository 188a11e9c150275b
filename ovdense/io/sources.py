"""Where input images come from: a folder (recursive), one file, or a glob pattern.

Shared by the folder tool (``ovdense segment SRC``) and :meth:`OVSegmenter.predict_iter`.
"""
from __future__ import annotations

import glob
import os
from typing import List, Sequence

from .images import IMAGE_EXTENSIONS


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
