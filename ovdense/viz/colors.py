"""Class colours for pictures: vivid, distinct, never black for a real class."""
from __future__ import annotations

import colorsys

import numpy as np

# 20 high-contrast colours (Kelly / Glasbey style), chosen to stay apart from each other at a
# 50 % blend over photos; classes beyond them get golden-ratio hues.
_BASE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
], dtype=np.uint8)


def class_colors(num_classes: int, has_background: bool = False) -> np.ndarray:
    """``(num_classes, 3)`` uint8 RGB colours for drawing.

    With ``has_background`` class 0 (never drawn) gets grey and the real classes start at the
    first vivid colour, so the colours of the user's classes do not depend on whether a
    background class was added.
    """
    offset = 1 if has_background else 0
    n = max(num_classes - offset, 0)
    cols = [tuple(int(v) for v in _BASE[i]) for i in range(min(n, len(_BASE)))]
    for i in range(len(cols), n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.35 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 3) % 2)
        cols.append(tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)))
    out = np.zeros((max(num_classes, 0), 3), dtype=np.uint8)
    if offset and num_classes:
        out[0] = (128, 128, 128)
    if n:
        out[offset:] = np.array(cols, dtype=np.uint8)
    return out


def text_color(rgb) -> tuple:
    """Black or white, whichever reads better on ``rgb``."""
    r, g, b = (int(v) for v in rgb)
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
