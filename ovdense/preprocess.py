"""Resize and normalise images for CLIP (config section ``preprocess``).

The normalisation belongs to the weights: by default it is read from open_clip's
preprocess config of the loaded model (``model.visual.preprocess_cfg``). For weights with
OpenAI's CLIP mean/std the constants are the ones the reference methods' mmseg data
preprocessors use (the same values rounded to three decimals on the 0-255 scale), so the
logits match theirs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

#: CLIP's normalisation on 0-255 RGB, as in the reference methods' data preprocessors.
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def weights_normalisation(model) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(mean, std)`` on 0-255 RGB from an open_clip model's preprocess config."""
    cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
    mean = tuple(float(m) for m in cfg.get("mean", _OPENAI_MEAN))
    std = tuple(float(s) for s in cfg.get("std", _OPENAI_STD))
    if np.allclose(mean, _OPENAI_MEAN, atol=1e-6) and np.allclose(std, _OPENAI_STD, atol=1e-6):
        return CLIP_MEAN, CLIP_STD
    return tuple(255.0 * m for m in mean), tuple(255.0 * s for s in std)


def model_patch_size(model) -> Optional[int]:
    """The larger side of an open_clip model's patch (``model.visual.patch_size``), or None."""
    patch = getattr(getattr(model, "visual", None), "patch_size", None)
    if patch is None:
        return None
    try:
        return int(max(patch)) if isinstance(patch, (tuple, list)) else int(patch)
    except (TypeError, ValueError):
        return None


def rescale_size(height: int, width: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv ``imrescale`` size: factor ``min(max(scale)/long, min(scale)/short)``, rounded half up."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


@dataclass(frozen=True)
class Preprocessor:
    """Resize (mmcv ``Resize(keep_ratio=True)``) and normalise.

    Args:
        short_side: resize so the short side is this long (mmcv ``scale=(2048, short_side)``);
            None keeps the input size.
        image_scale: the full mmcv ``(long, short)`` pair instead (e.g. ``(520, 520)``).
        mean, std: normalisation on 0-255 RGB; None (default) follows the weights.
        min_side: the smallest short side (px) the model takes after resizing: its patch
            size. None (default) follows the weights (:meth:`with_weights`); a smaller
            image (e.g. 10x200 with ``short_side=None``) is refused with a ValueError
            naming it, never passed on to fail inside the patch embedding.
        multiple_of: after the resize, fit the image to multiples of this (Trident's
            ``preprocess_image``, see :func:`fit_size`): the *normalised* image is resized
            bilinearly (torch, unrounded, as the official code), the uint8 one the same way and
            rounded. 0 (default): no second resize.
        min_fit: the smallest side of that fit (Trident: the window crop, 336).
    """

    short_side: Optional[int] = 336
    image_scale: Optional[Tuple[int, int]] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    min_side: Optional[int] = None
    multiple_of: int = 0
    min_fit: int = 0

    def __post_init__(self) -> None:
        if self.short_side is not None and self.image_scale is not None:
            raise ValueError("preprocess: give short_side or image_scale, not both")
        if self.short_side is not None and int(self.short_side) <= 0:
            raise ValueError(f"preprocess: short_side must be positive, got {self.short_side}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(tuple(value)) != 3:
                raise ValueError(f"preprocess: {name} needs 3 values (RGB on 0-255), got {value}")

    @property
    def scale(self) -> Optional[Tuple[int, int]]:
        """The mmcv ``(long, short)`` rescale target, or None (no resize)."""
        if self.image_scale is not None:
            return int(self.image_scale[0]), int(self.image_scale[1])
        return None if self.short_side is None else (2048, int(self.short_side))

    def with_weights(self, model) -> "Preprocessor":
        """This preprocessor with mean/std (from ``model``'s preprocess config) and
        ``min_side`` (its patch size) filled in where not given."""
        out = self
        if self.min_side is None:
            patch = model_patch_size(model)
            if patch:
                out = dataclasses.replace(out, min_side=patch)
        if self.mean is not None and self.std is not None:
            return out
        mean, std = weights_normalisation(model)
        return dataclasses.replace(out, mean=tuple(self.mean or mean), std=tuple(self.std or std))

    def resize(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` -> resized uint8 RGB (bilinear, as mmcv).

        Raises:
            ValueError: (an :class:`~ovdense.io.ImageLoadError`) naming ``name``, for an image
                too thin to segment (:func:`~ovdense.io.images.check_image_geometry`) or one
                that this scale would resize to nothing or to a short side below ``min_side``
                (the model's patch).
        """
        import cv2

        from .io.images import ImageLoadError, check_image_geometry

        h, w = image.shape[:2]
        check_image_geometry(h, w, name)
        nh, nw = (h, w) if self.scale is None else rescale_size(h, w, self.scale)
        if min(nh, nw) < 1:
            raise ImageLoadError(f"{name}: image of {h}x{w} px (HxW) would resize to {nh}x{nw} px at scale "
                                 f"{self.scale} (long, short): too thin for this scale; crop or pad it first")
        if self.min_side and min(nh, nw) < self.min_side:
            how = ("kept at its size (preprocess short_side=None)" if self.scale is None
                   else f"resized to {nh}x{nw} px at scale {self.scale} (long, short)")
            raise ImageLoadError(f"{name}: image of {h}x{w} px (HxW), {how}, is smaller than the model's "
                                 f"{self.min_side} px patch; resize or pad it first, or set preprocess short_side")
        if (nh, nw) == (h, w):
            return image
        return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``[3, H, W]`` (any device) -> float32 ``(x - mean) / std``."""
        if self.mean is None or self.std is None:
            raise RuntimeError("Preprocessor.normalise needs mean/std: call with_weights(model) first")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=image.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=image.device).view(3, 1, 1)
        return (image.float() - mean) / std

    def __call__(self, image: np.ndarray, device: torch.device,
                 name: str = "image") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(uint8 [3, H', W'], normalised float32 [3, H', W'])`` of a uint8 RGB image, on ``device``
        (``name`` says which image in error messages)."""
        raw = torch.from_numpy(np.ascontiguousarray(self.resize(image, name))).to(device).permute(2, 0, 1)
        size = fit_size(int(raw.shape[-2]), int(raw.shape[-1]), int(self.multiple_of), int(self.min_fit))
        if size == tuple(raw.shape[-2:]):
            return raw, self.normalise(raw)
        import torch.nn.functional as F

        normalised = F.interpolate(self.normalise(raw)[None], size=size, mode="bilinear", align_corners=False)[0]
        fitted = F.interpolate(raw[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        return fitted.round_().clamp_(0, 255).to(torch.uint8), normalised


def fit_size(height: int, width: int, multiple: int, min_fit: int = 0) -> Tuple[int, int]:
    """Trident's ``preprocess_image`` size: unchanged when both sides are multiples of ``multiple``
    (or ``multiple`` is 0); else the long side goes up to the next multiple, the short one scales
    with it (truncated) and goes up to the next multiple, and each side is at least ``min_fit``."""
    if multiple <= 0 or (height % multiple == 0 and width % multiple == 0):
        return height, width
    longer = max(height, width)
    dst = longer if longer % multiple == 0 else (longer // multiple + 1) * multiple
    nh, nw = int(height * dst / longer), int(width * dst / longer)
    nh = nh if nh % multiple == 0 else (nh // multiple + 1) * multiple
    nw = nw if nw % multiple == 0 else (nw // multiple + 1) * multiple
    return max(nh, min_fit), max(nw, min_fit)
