"""Overlays with a legend and class contours, side-by-side panels and contact sheets.

Drawn with numpy, OpenCV and Pillow only (no matplotlib): these run once per image in folder
runs. Every function takes and returns ``(H, W, 3)`` uint8 RGB arrays.

Conventions: a label outside ``[0, len(class_names))`` (``UNLABELLED`` = -1, or a ground-truth
ignore value such as 255) is *unlabelled* and left clear (or hatched with
``unlabelled="hatch"``); with ``has_background`` class 0 is left clear too and gets no
contour. Contours are drawn inside each class's own pixels, along its border with other
labels (not along the image border), so they never cover unlabelled or background pixels.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .colors import class_colors

__all__ = ["LegendEntry", "legend_entries", "draw_overlay", "contour_mask", "side_by_side",
           "contact_sheet", "save_image", "font"]

ImageLike = Union[np.ndarray, str, os.PathLike]


@dataclass(frozen=True)
class LegendEntry:
    """One coloured class of a picture: its index, name, pixel count and share of the image."""

    index: int
    name: str
    pixels: int
    fraction: float


@functools.lru_cache(maxsize=16)
def font(size: int):
    """Pillow's built-in scalable font at ``size`` pixels (a bitmap font on very old Pillow)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text_width(fnt, text: str) -> int:
    box = fnt.getbbox(text)
    return int(box[2] - box[0])


def _font_size(height: int, width: int) -> int:
    return int(np.clip(round(max(height, width) / 22), 12, 28))


def _valid(label_map: np.ndarray, num_classes: int) -> np.ndarray:
    return (label_map >= 0) & (label_map < num_classes)


def legend_entries(label_map: np.ndarray, class_names: Sequence[str], has_background: bool = False,
                   skip: Iterable[int] = ()) -> List[LegendEntry]:
    """The classes a picture colours, largest area first (ties by class index).

    Background (class 0 with ``has_background``), classes in ``skip`` and unlabelled pixels
    are not entries.
    """
    lm = np.asarray(label_map)
    c = len(class_names)
    flat = lm[_valid(lm, c)].astype(np.int64).ravel()
    counts = np.bincount(flat, minlength=c)
    total = max(lm.size, 1)
    hidden = set(int(s) for s in skip) | ({0} if has_background else set())
    entries = [LegendEntry(i, str(class_names[i]), int(counts[i]), counts[i] / total)
               for i in range(c) if counts[i] and i not in hidden]
    return sorted(entries, key=lambda e: (-e.pixels, e.index))


def contour_mask(label_map: np.ndarray, classes: Iterable[int], thickness: int = 1) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the contour pixels of ``classes``.

    Each class's contours (``cv2.findContours`` on its mask) are drawn ``thickness`` pixels
    wide and kept inside that class's own pixels. The image border is not a boundary: the
    mask is padded by replication before tracing.
    """
    import cv2

    lm = np.asarray(label_map)
    out = np.zeros(lm.shape, dtype=bool)
    pad = thickness + 1
    for c in classes:
        mask = (lm == c).astype(np.uint8)
        if not mask.any():
            continue
        padded = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        contours, _ = cv2.findContours(padded, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        layer = np.zeros_like(padded)
        cv2.drawContours(layer, contours, -1, 1, thickness=thickness)
        out |= (layer[pad:-pad, pad:-pad] > 0) & (mask > 0)
    return out


def _hatch(shape: Tuple[int, int], period: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((xx + yy) % period) < max(period // 4, 1)


def draw_overlay(image: Optional[np.ndarray], label_map: np.ndarray, class_names: Sequence[str], *,
                 has_background: bool = False, alpha: Optional[float] = None, contours: bool = True,
                 legend: bool = True, unlabelled: str = "clear", colors: Optional[np.ndarray] = None,
                 skip: Iterable[int] = (), thickness: Optional[int] = None,
                 max_legend_rows: Optional[int] = None) -> np.ndarray:
    """Blend class colours over ``image`` with contours and a legend panel on the right.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` for a plain light canvas (then the colours
            are drawn nearly opaque).
        label_map: ``(H, W)`` integer labels indexing ``class_names``; other values are
            unlabelled (``-1``, an ignore value such as 255).
        class_names: name of each class index.
        has_background: class 0 is background: left clear, no contour, no legend swatch.
        alpha: colour opacity (default 0.5 over an image, 0.85 on the blank canvas).
        contours: draw each class's border in its full colour.
        legend: append a legend panel (swatch, name, area %) of the classes present, sorted
            by area, with background / unlabelled shares in grey below.
        unlabelled: ``"clear"`` (image untouched) or ``"hatch"`` (grey diagonal stripes).
        colors: ``(C, 3)`` uint8 colours (default :func:`~ovdense.viz.colors.class_colors`).
        skip: more classes to leave clear, like the background.
        thickness: contour width in pixels (default grows with the image, 1 up to 750 px).
        max_legend_rows: rows per legend column (default: as many as fit the image height).

    Returns:
        ``(H, W', 3)`` uint8 RGB: the overlay, plus the legend panel when ``legend``
        (``W' >= W``; the height grows only when the legend needs more room than 3 columns).
    """
    lm = np.asarray(label_map)
    if lm.ndim != 2:
        raise ValueError(f"label_map must be (H, W), got shape {lm.shape}")
    h, w = lm.shape
    c = len(class_names)
    if image is None:
        base = np.full((h, w, 3), 246, dtype=np.uint8)
        alpha = 0.85 if alpha is None else alpha
    else:
        base = np.asarray(image)
        if base.shape[:2] != (h, w) or base.ndim != 3 or base.shape[2] != 3:
            raise ValueError(f"image {base.shape} and label_map {lm.shape} differ in size (need (H, W, 3))")
        base = base.astype(np.uint8, copy=False)
        alpha = 0.5 if alpha is None else alpha
    cols = class_colors(c, has_background) if colors is None else np.asarray(colors, dtype=np.uint8)
    hidden = set(int(s) for s in skip) | ({0} if has_background else set())
    valid = _valid(lm, c)
    drawn = valid.copy()
    for s in hidden:
        drawn &= lm != s
    import cv2

    # uint8 arithmetic with OpenCV: a 12 MP photo blends in well under a second
    idx = np.where(drawn, lm, 0).astype(np.int32)
    colour_img = cols[idx] if c else np.zeros_like(base)
    blended = cv2.addWeighted(np.ascontiguousarray(base), 1 - alpha, colour_img, alpha, 0.0)
    out = base.copy()
    np.copyto(out, blended, where=drawn[..., None])
    if unlabelled == "hatch":
        stripes = ~valid & _hatch((h, w))
        grey = cv2.addWeighted(np.ascontiguousarray(base), 0.4, np.full_like(base, 90), 0.6, 0.0)
        np.copyto(out, grey, where=stripes[..., None])
    elif unlabelled != "clear":
        raise ValueError(f"unlabelled must be 'clear' or 'hatch', got {unlabelled!r}")
    if contours:
        t = thickness or int(np.clip(round(max(h, w) / 750) + 1, 1, 4))
        counts = np.bincount(idx[drawn].ravel(), minlength=max(c, 1))
        edge = contour_mask(lm, [int(i) for i in np.flatnonzero(counts)], t)
        out[edge] = cols[idx[edge]]
    if not legend:
        return out
    entries = legend_entries(lm, class_names, has_background, skip)
    notes = []
    total = max(lm.size, 1)
    if has_background and c and (lm == 0).any():
        notes.append(f"{class_names[0]} {100 * (lm == 0).sum() / total:.1f}% (clear)")
    if (~valid).any():
        notes.append(f"unlabelled {100 * (~valid).sum() / total:.1f}%"
                     + (" (hatched)" if unlabelled == "hatch" else " (clear)"))
    panel = render_legend(entries, cols, h, _font_size(h, w), notes, max_legend_rows)
    return side_by_side([out, panel], gap=0)


def render_legend(entries: Sequence[LegendEntry], colors: np.ndarray, height: int, font_size: int = 14,
                  notes: Sequence[str] = (), max_rows: Optional[int] = None) -> np.ndarray:
    """A white legend panel: one row per entry (swatch, name, area %), then grey ``notes``.

    Rows fill up to three columns of ``height``; what does not fit is summarised as
    ``+N more`` (the panel grows taller instead when even one column would not fit).
    """
    from PIL import Image, ImageDraw

    fnt = font(font_size)
    small = font(max(font_size - 2, 10))
    row = int(font_size * 1.45)
    pad = max(font_size // 2, 4)
    sw = int(font_size * 1.1)
    lines = [(e, _fit_text(fnt, e.name, 16 * font_size), f"{100 * e.fraction:.1f}%") for e in entries]
    rows_fit = max_rows or max((height - 2 * pad) // row - len(notes), 1)
    if max_rows is None and rows_fit < min(len(lines), 4):
        rows_fit = min(len(lines), 12)  # a tiny image: one taller column reads better than 3 short ones
    if len(lines) > rows_fit * 3 and max_rows is None:
        rows_fit = max(rows_fit, math.ceil((len(lines) + 1) / 3))
    shown = lines[: rows_fit * 3]
    more = len(lines) - len(shown)
    if more:
        shown = lines[: rows_fit * 3 - 1]
        more = len(lines) - len(shown)
    ncol = max(math.ceil((len(shown) + (1 if more else 0)) / rows_fit), 1)
    name_w = max([_text_width(fnt, n) for _, n, _ in shown] + [0])
    pct_w = max([_text_width(small, p) for _, _, p in shown] + [0])
    col_w = sw + pad + name_w + pad + pct_w + 2 * pad
    note_w = max([_text_width(small, n) for n in notes] + [0]) + 2 * pad
    width = max(ncol * col_w, note_w, 4 * font_size) + pad
    n_rows = min(len(shown) + (1 if more else 0), rows_fit)
    panel_h = max(height, 2 * pad + (n_rows + len(notes)) * row)
    img = Image.new("RGB", (width, panel_h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for k, (e, name, pct) in enumerate(shown):
        x = pad + (k // rows_fit) * col_w
        y = pad + (k % rows_fit) * row
        colour = tuple(int(v) for v in colors[e.index])
        d.rectangle([x, y + 2, x + sw, y + 2 + sw], fill=colour, outline=(60, 60, 60))
        d.text((x + sw + pad, y + 1), name, fill=(20, 20, 20), font=fnt)
        d.text((x + sw + pad + name_w + pad, y + 2), pct, fill=(110, 110, 110), font=small)
    if more:
        k = len(shown)
        d.text((pad + (k // rows_fit) * col_w, pad + (k % rows_fit) * row + 1), f"+{more} more",
               fill=(110, 110, 110), font=fnt)
    y = pad + n_rows * row
    if not shown and not more:
        d.text((pad, pad), "no classes", fill=(110, 110, 110), font=fnt)
        y = pad + row
    for n in notes:
        d.text((pad, y + 2), n, fill=(110, 110, 110), font=small)
        y += row
    return np.asarray(img)


def _title_bar(panel: np.ndarray, title: str, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    fnt = font(size)
    bar_h = int(size * 1.6)
    w = panel.shape[1]
    bar = Image.new("RGB", (w, bar_h), (255, 255, 255))
    text = _fit_text(fnt, title, w - 8)
    ImageDraw.Draw(bar).text((4, (bar_h - size) // 2 - 1), text, fill=(20, 20, 20), font=fnt)
    return np.concatenate([np.asarray(bar), panel], axis=0)


def _fit_text(fnt, text: str, width: int) -> str:
    """``text`` shortened in the middle with an ellipsis to fit ``width`` pixels."""
    if _text_width(fnt, text) <= width:
        return text
    keep = len(text)
    while keep > 3:
        keep -= 1
        cand = text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]
        if _text_width(fnt, cand) <= width:
            return cand
    return text[:1] + "…"


def side_by_side(panels: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None, gap: int = 6,
                 title_size: Optional[int] = None) -> np.ndarray:
    """Panels left to right on white, tops aligned, with an optional title above each."""
    panels = [np.asarray(p, dtype=np.uint8) for p in panels]
    if titles is not None:
        if len(titles) != len(panels):
            raise ValueError("one title per panel")
        size = title_size or _font_size(max(p.shape[0] for p in panels), max(p.shape[1] for p in panels))
        panels = [_title_bar(p, t, size) if t else p for p, t in zip(panels, titles)]
    h = max(p.shape[0] for p in panels)
    w = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    x = 0
    for p in panels:
        out[: p.shape[0], x: x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def _load_rgb(item: ImageLike) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    from PIL import Image

    with Image.open(item) as im:
        return np.asarray(im.convert("RGB"))


def _thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    f = min(size / h, size / w)
    nh, nw = max(int(round(h * f)), 1), max(int(round(w * f)), 1)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST
    return cv2.resize(np.ascontiguousarray(rgb), (nw, nh), interpolation=interp)


def contact_sheet(items: Sequence[Union[ImageLike, Tuple[str, ImageLike]]], out_path: Union[str, os.PathLike],
                  *, columns: Optional[int] = None, thumb_size: int = 256, max_items: int = 100,
                  title: Optional[str] = None) -> str:
    """Write a grid of thumbnails with their file names (a folder run at a glance).

    Args:
        items: image paths (the caption is the file name), ``(caption, path)`` pairs, or
            ``(caption, RGB array)`` pairs; usually the overlays a folder run wrote.
        out_path: ``.png`` or ``.jpg`` file to write (atomically; folders are made).
        columns: grid columns (default about square, at most 8).
        thumb_size: each thumbnail fits a ``thumb_size`` square (aspect kept).
        max_items: draw the first ``max_items`` only; the title says how many were left out.
        title: heading line (default ``"N images"``).

    Returns:
        ``out_path`` as a string. Unreadable images are drawn as a grey cell saying so.
    """
    from PIL import Image, ImageDraw

    named: List[Tuple[str, ImageLike]] = []
    for it in items:
        if isinstance(it, tuple):
            named.append((str(it[0]), it[1]))
        else:
            named.append((os.path.basename(os.fspath(it)), it))
    total = len(named)
    named = named[: max(int(max_items), 0)]
    size = int(np.clip(thumb_size // 16, 11, 18))
    fnt = font(size)
    thumbs: List[Tuple[str, Optional[np.ndarray], str]] = []
    for name, item in named:  # thumbnails first (small), so the cells fit what is drawn
        try:
            thumbs.append((name, _thumbnail(_load_rgb(item), thumb_size), ""))
        except (OSError, ValueError) as exc:  # unreadable file: say so in its cell
            thumbs.append((name, None, f"unreadable: {exc}"))
    n = max(len(thumbs), 1)
    cols = columns or min(max(int(math.ceil(math.sqrt(n))), 1), 8)
    rows = int(math.ceil(n / cols))
    cell_h = max([t.shape[0] for _, t, _ in thumbs if t is not None] + [thumb_size // 2])
    cap_h, gap = int(size * 1.7), 8
    head = title if title is not None else f"{total} image{'s' if total != 1 else ''}"
    if total > len(thumbs):
        head += f" (first {len(thumbs)} shown)"
    head_h = int(size * 2.4)
    width = cols * thumb_size + (cols + 1) * gap
    height = head_h + rows * (cell_h + cap_h + gap) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    d.text((gap, (head_h - size) // 2), head, fill=(20, 20, 20), font=font(size + 2))
    for k, (name, th, error) in enumerate(thumbs):
        x = gap + (k % cols) * (thumb_size + gap)
        y = head_h + (k // cols) * (cell_h + cap_h + gap)
        if th is None:
            d.rectangle([x, y, x + thumb_size - 1, y + cell_h - 1], fill=(238, 238, 238))
            d.text((x + 6, y + cell_h // 2 - size // 2), _fit_text(fnt, error, thumb_size - 12),
                   fill=(160, 0, 0), font=fnt)
        else:
            ox, oy = x + (thumb_size - th.shape[1]) // 2, y + (cell_h - th.shape[0]) // 2
            sheet.paste(Image.fromarray(th), (ox, oy))
            d.rectangle([ox - 1, oy - 1, ox + th.shape[1], oy + th.shape[0]], outline=(210, 210, 210))
        d.text((x, y + cell_h + 3), _fit_text(fnt, name, thumb_size), fill=(40, 40, 40), font=fnt)
    return save_image(out_path, np.asarray(sheet))


def save_image(path: Union[str, os.PathLike], rgb: np.ndarray, quality: int = 90) -> str:
    """Write an RGB array as PNG (or JPEG for ``.jpg``/``.jpeg``) atomically; returns the path."""
    from PIL import Image

    from ovdense.io.writers import atomic_path

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = "JPEG" if ext in (".jpg", ".jpeg") else "PNG"
    with atomic_path(path) as tmp:
        img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
        if fmt == "JPEG":
            img.save(tmp, format=fmt, quality=quality)
        else:
            img.save(tmp, format=fmt, optimize=False, compress_level=6)
    return path
