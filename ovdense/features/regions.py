"""Class-agnostic region maps as an image-scope provider: the ``regions`` CorrCLIP reads.

``features=dict(regions=dict(type="regions", directory="data/region_masks/voc"))`` reads the
maps CorrCLIP publishes (one ``<image stem>.npz`` per image holding ``instance_mask``, an
integer ``(H, W)`` map at the image's size); ``proposals=dict(type="sam_automatic",
provider="sam", points_per_side=8, ...)`` makes them from any class-agnostic proposal source
of the image (SAM, SAM 2) the way CorrCLIP's ``generate_mask`` does: masks sorted by area,
smallest first, painted in that order with ids ``1, 2, ...`` (so where masks overlap the
larger one wins), 0 where no mask lies.

Its map ``[1, 1, H, W]`` (float ids, exact below 2**24) covers the input image; a head that
``requires`` it gets it resized to the canvas by nearest neighbour and cut into the windows,
whose padding gets the id 10000 (CorrCLIP's ``pad(..., value=10000)``): the
``canvas_interpolation`` and ``pad_value`` the segmenter reads. The smallest id of a window
stands for its unsegmented pixels in CorrCLIP's maths.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from ..registry import FEATURES, PROPOSALS, build
from .base import FeatureProvider


def paint_regions(regions: Any) -> np.ndarray:
    """Class-agnostic regions (``Detections`` with masks, or boolean masks ``[n, H, W]``) -> int32
    ids ``(H, W)``: sorted by area (stable), smallest first, each painted over the earlier ones with
    ids 1..n; 0 where no mask lies (:meth:`Detections.label_image` in that order)."""
    from ..structures import Detections

    dets = regions if isinstance(regions, Detections) else Detections.from_masks(regions)
    order = np.argsort(dets.mask.reshape(len(dets), -1).sum(1), kind="stable")
    return dets[order].label_image(*dets.mask.shape[1:])


@FEATURES.register_module("regions")
class RegionMap(FeatureProvider):
    """Args (exactly one source):
        directory: folder of ``<stem>.npz`` files with an integer ``key`` map per image (the
            image's own size), as CorrCLIP publishes its region masks.
        proposals: a ``PROPOSALS`` spec of a class-agnostic source (``sam_automatic``,
            ``sam2_automatic``) whose masks are painted as CorrCLIP's ``generate_mask`` does.
        key: the array name inside each ``.npz``.
    """

    scope = "image"
    reads_context = True
    canvas_interpolation = "nearest"
    pad_value = 10000.0

    def __init__(self, directory: Optional[Union[str, os.PathLike]] = None,
                 proposals: Optional[Mapping[str, Any]] = None, key: str = "instance_mask") -> None:
        super().__init__()
        if (directory is None) == (proposals is None):
            raise ValueError("regions: give exactly one of directory= (region maps on disk) or proposals= "
                             "(a class-agnostic proposal source such as dict(type='sam_automatic'))")
        self.directory = None if directory is None else Path(directory)
        self.key = key
        self.source = None
        if proposals is not None:
            self.source = build(PROPOSALS, dict(proposals))
            if getattr(self.source, "needs_result", False):
                raise ValueError(f"regions: proposal source {dict(proposals).get('type')!r} reads a semantic "
                                 f"result, which does not exist before the head runs; use a class-agnostic one")
        self.requires = tuple(getattr(self.source, "requires", ()))

    def read(self, path: Union[str, os.PathLike], size) -> np.ndarray:
        """The region map of the image at ``path`` (its ``<stem>.npz`` in :attr:`directory`)."""
        file = self.directory / (Path(path).stem + ".npz")
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no region map for image {os.fspath(path)!r}")
        with np.load(file) as data:
            if self.key not in data:
                raise ValueError(f"{file}: no array {self.key!r} (it has {sorted(data.files)})")
            ids = np.asarray(data[self.key])
        if ids.ndim != 2 or tuple(ids.shape) != tuple(size):
            raise ValueError(f"{file}: region map of shape {tuple(ids.shape)}, expected the image's {tuple(size)}")
        if not np.issubdtype(ids.dtype, np.integer) and not np.array_equal(ids, np.round(ids)):
            raise ValueError(f"{file}: region ids must be integers, got {ids.dtype}")
        return ids.astype(np.int64)

    def context_map(self, context: Any, name: str) -> torch.Tensor:
        size = tuple(context.original_size)
        if self.directory is not None:
            if context.path is None:
                raise ValueError(f"regions {name!r} are read by image file name, and this image has no path")
            ids = self.read(context.path, size)
        else:
            ids = paint_regions(self.source(context))
        if np.abs(ids).max(initial=0) >= 2 ** 24:
            raise ValueError(f"regions {name!r}: ids beyond 2**24 are not exact as floats")
        return torch.from_numpy(ids).to(context.device, torch.float32)[None, None]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the regions provider runs on an image's context (its path or its SAM masks), "
                           "not on bare pixels")

    def extra_repr(self) -> str:
        return f"directory={self.directory}, source={type(self.source).__name__ if self.source else None}"
