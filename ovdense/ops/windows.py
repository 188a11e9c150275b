"""Sliding-window geometry and stitching (mmseg ``slide_inference`` placement).

``n = max(H - crop + stride - 1, 0) // stride + 1`` windows per axis; window ``i`` starts at
``i * stride`` and the last one is shifted back to end at the border. When the image is
smaller than the crop the window is the whole axis (no padding), so every window of one
image has the same size and all of them run as one batch.

Padding (``pad_to``) comes in two modes: ``"centre"`` (ClearCLIP, ProxyCLIP: zeros of the
normalised image, i.e. the mean colour, centred; the padding is cut from the window's output)
and ``"end"`` (CLIP-DINOiser's ``make_input_divisible``: black pixels, i.e. 0 on the uint8 image
before normalisation, at the bottom and right, a whole-image pass included; the output of the
padded window is resized over the unpadded window, as its mmseg ``encode_decode`` does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple, Union

import torch
import torch.nn.functional as F

Box = Tuple[int, int, int, int]  # y1, y2, x1, x2
PAD_MODES = ("centre", "end")


def _starts(size: int, crop: int, stride: int) -> List[Tuple[int, int]]:
    n = max(size - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(n):
        end = min(i * stride + crop, size)
        spans.append((max(end - crop, 0), end))
    return spans


def window_boxes(height: int, width: int, crop: int, stride: int) -> List[Box]:
    """Windows ``(y1, y2, x1, x2)`` covering an image; ``crop <= 0`` means one whole-image window."""
    if crop <= 0:
        return [(0, height, 0, width)]
    if stride <= 0:
        raise ValueError("slide_stride must be positive")
    return [(y1, y2, x1, x2) for y1, y2 in _starts(height, crop, stride) for x1, x2 in _starts(width, crop, stride)]


def centred_padding(height: int, width: int, multiple: int) -> Tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding to the next multiple (ClearCLIP/ProxyCLIP style)."""
    if multiple <= 1:
        return (0, 0, 0, 0)
    ph = (-height) % multiple
    pw = (-width) % multiple
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def end_padding(height: int, width: int, multiple: int) -> Tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding to the next multiple at the bottom and right (CLIP-DINOiser)."""
    if multiple <= 1:
        return (0, 0, 0, 0)
    return (0, (-width) % multiple, 0, (-height) % multiple)


def crop_windows(image: torch.Tensor, boxes: List[Box], pad: Tuple[int, int, int, int] = (0, 0, 0, 0),
                 value: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
    """Stack the windows of ``image`` [C, H, W] into ``[n, C, h, w]`` (padded with ``value`` if asked:
    a number, or one value per channel ``[C]``)."""
    crops = torch.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])
    if not any(pad):
        return crops
    if not isinstance(value, torch.Tensor):
        return F.pad(crops, pad, value=value)
    left, right, top, bottom = pad
    h, w = crops.shape[-2:]
    out = value.to(crops).view(1, -1, 1, 1).expand(crops.shape[0], crops.shape[1], h + top + bottom,
                                                    w + left + right).clone()
    out[:, :, top:top + h, left:left + w] = crops
    return out


def stitch(window_logits: torch.Tensor, boxes: List[Box], size: Tuple[int, int]) -> torch.Tensor:
    """Average per-window maps ``[n, K, h, w]`` into ``[K, H, W]`` by the coverage count."""
    k = window_logits.shape[1]
    out = window_logits.new_zeros((k,) + tuple(size))
    count = window_logits.new_zeros((1,) + tuple(size))
    for logit, (y1, y2, x1, x2) in zip(window_logits, boxes):
        out[:, y1:y2, x1:x2] += logit
        count[:, y1:y2, x1:x2] += 1
    return out / count


@dataclass(frozen=True)
class SlidingWindows:
    """Where the backbone looks: the window plan of a resized image (config ``windows=dict(...)``).

    Args:
        crop: window side in pixels of the resized image; 0 runs one pass over the whole image.
        stride: step between windows.
        pad_to: zero-pad each window, centred, to a multiple of this (ClearCLIP: the patch
            size; 0 = none, the patch embedding floors leftover pixels as SCLIP/NACLIP do).
        pad_mode: ``"centre"`` (default, as above) or ``"end"``: pad with black pixels (0 on the
            uint8 image, before normalisation) at the bottom and right, also in a whole-image pass,
            and stretch the padded window's output over the unpadded window (CLIP-DINOiser).
    """

    crop: int = 224
    stride: int = 112
    pad_to: int = 0
    pad_mode: str = "centre"

    def __post_init__(self) -> None:
        if self.crop < 0 or (self.crop > 0 and self.stride <= 0):
            raise ValueError(f"windows: crop must be >= 0 and stride > 0, got crop={self.crop}, stride={self.stride}")
        if self.pad_to < 0:
            raise ValueError(f"windows: pad_to must be >= 0, got {self.pad_to}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"windows: pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")

    @property
    def whole(self) -> bool:
        return self.crop <= 0

    def plan(self, size: Tuple[int, int]) -> Tuple[List[Box], Tuple[int, int, int, int]]:
        """``(boxes, pad)`` for an image of ``size``: window boxes and the padding of every window."""
        boxes = window_boxes(size[0], size[1], self.crop, self.stride)
        y1, y2, x1, x2 = boxes[0]
        if self.pad_mode == "end":
            return boxes, end_padding(y2 - y1, x2 - x1, self.pad_to)
        if self.whole:
            return boxes, (0, 0, 0, 0)
        return boxes, centred_padding(y2 - y1, x2 - x1, self.pad_to)


#: How :func:`stitch_grid` finds the valid cells of a window: ``"padded"`` (the window's grid less the
#: padding rounded up to cells, OV-Stitcher's DINO stitch) or ``"window"`` (the unpadded window's size
#: in whole cells, its CLIP stitch).
GRID_VALID = ("padded", "window")


def stitch_grid(windows: torch.Tensor, boxes: List[Box], pad: Tuple[int, int, int, int], patch: int,
                size: Tuple[int, int], valid: str = "padded") -> torch.Tensor:
    """Average per-window token grids ``[n, C, gh, gw]`` into one grid ``[C, H // patch, W // patch]``
    of the ``size`` (H, W) canvas, as OV-Stitcher stitches features: each window's valid cells (see
    :data:`GRID_VALID`; padding cut in whole cells, ``ceil(pad / patch)``) go to cell
    ``(y1 // patch, x1 // patch)`` (floor: a window starting between cells is placed at the cell
    before), overlaps averaged. Every cell must be covered."""
    if valid not in GRID_VALID:
        raise ValueError(f"stitch_grid: valid must be one of {GRID_VALID}, got {valid!r}")
    n, channels, gh, gw = windows.shape
    rows, cols = int(size[0]) // patch, int(size[1]) // patch
    out = windows.new_zeros((channels, rows, cols))
    count = windows.new_zeros((1, rows, cols))
    left, right, top, bottom = pad
    top_cells, left_cells = math.ceil(top / patch), math.ceil(left / patch)
    for window, (y1, y2, x1, x2) in zip(windows, boxes):
        if valid == "padded":
            vh, vw = gh - top_cells - math.ceil(bottom / patch), gw - left_cells - math.ceil(right / patch)
        else:
            vh, vw = (y2 - y1) // patch, (x2 - x1) // patch
        py, px = y1 // patch, x1 // patch
        out[:, py:py + vh, px:px + vw] += window[:, top_cells:top_cells + vh, left_cells:left_cells + vw]
        count[:, py:py + vh, px:px + vw] += 1
    if bool((count == 0).any()):
        raise ValueError(f"stitch_grid: the windows leave cells of the {rows}x{cols} grid uncovered")
    return out / count

