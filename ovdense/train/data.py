"""Unlabelled training images for the trainable heads: a folder of images, or synthetic world v2 scenes.

Every item is ``dict(inputs=uint8 tensor [3, S, S])`` (RGB, 0-255; the model normalises for CLIP and
for its teacher itself); batch them with mmengine's ``default_collate``. The augmentation follows
CLIP-DINOiser's ``train.py`` (``Resize(im_size)``, ``RandomCrop(im_size)``, ``RandomHorizontalFlip``,
``ColorJitter(0.5)``, a brightness jitter): short side resized to ``short_side`` (PIL bilinear), a random
``crop`` x ``crop`` crop, a horizontal flip with probability ``hflip``, brightness scaled by a factor
drawn from ``[1 - brightness, 1 + brightness]``.

The random draws are a pure function of ``(seed, index, n)``, ``n`` counting how often this process
has read item ``index``, so a run is reproducible and a resumed run (mmengine replays the data loader
up to the saved iteration) sees the very images an uninterrupted run would.
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..registry import DATASETS

#: What :class:`ImageFolder` reads (lower-case suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def find_images(root: str) -> List[str]:
    """Every image file under ``root``, recursively, sorted (hidden folders and files skipped)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root}: no such folder")
    out = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(folder, f) for f in files
                   if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES))
    return sorted(out)


class _Augmented(Dataset):
    """Resize / random crop / flip / brightness on uint8 RGB images, reproducibly (see the module doc)."""

    def __init__(self, crop: int, short_side: Optional[int], hflip: float, brightness: float, seed: int) -> None:
        self.crop = int(crop)
        self.short_side = None if short_side is None else int(short_side)
        self.hflip = float(hflip)
        self.brightness = float(brightness)
        self.seed = int(seed)
        self._reads: Dict[int, int] = defaultdict(int)

    def _rng(self, index: int) -> np.random.Generator:
        n = self._reads[index]
        self._reads[index] += 1
        return np.random.default_rng([self.seed, int(index), n])

    def augment(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        image = image.convert("RGB")
        if self.short_side is not None:
            w, h = image.size
            scale = self.short_side / min(w, h)
            size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
            if size != (w, h):
                image = image.resize(size, Image.BILINEAR)
        arr = np.asarray(image)
        h, w = arr.shape[:2]
        if h < self.crop or w < self.crop:  # no short_side: pad small images (black) up to the crop
            arr = np.pad(arr, ((0, max(0, self.crop - h)), (0, max(0, self.crop - w)), (0, 0)))
            h, w = arr.shape[:2]
        y0 = int(rng.integers(0, h - self.crop + 1))
        x0 = int(rng.integers(0, w - self.crop + 1))
        arr = arr[y0:y0 + self.crop, x0:x0 + self.crop]
        if rng.random() < self.hflip:
            arr = arr[:, ::-1]
        if self.brightness > 0:
            factor = rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness)
            arr = np.clip(arr.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


@DATASETS.register_module("ImageFolder")
class ImageFolder(_Augmented):
    """Every image under ``root`` (recursively; class folders are not needed and labels are not read).

    Args:
        root: the folder (e.g. ImageNet's ``train``).
        crop: side of the square random crop (official ``im_size`` 448).
        short_side: resize the short side to this first (official: = ``crop``); None keeps the size.
        hflip: probability of a horizontal flip (official 0.5).
        brightness: brightness jitter (official ``ColorJitter(0.5)``: 0.5; 0 turns it off).
        num_images: use a fixed random subset of this many images (official ``ds_size`` 1000, drawn
            with replacement as the official ``np.random.choice``); None: every image.
        seed: seed of the subset and of the augmentation.
    """

    def __init__(self, root: str, crop: int = 448, short_side: Optional[int] = 448, hflip: float = 0.5,
                 brightness: float = 0.5, num_images: Optional[int] = None, seed: int = 0) -> None:
        super().__init__(crop, short_side, hflip, brightness, seed)
        self.root = root
        files = find_images(root)
        if not files:
            raise FileNotFoundError(f"image folder {root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        if num_images is not None:
            picks = np.random.default_rng(self.seed).choice(len(files), int(num_images))
            files = [files[i] for i in picks]
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.files[index]) as image:
            return dict(inputs=self.augment(image, self._rng(index)))


@DATASETS.register_module("WorldV2Images")
class WorldV2Images(_Augmented):
    """Training-range scenes of ``WorldV2(seed=world_seed)`` (160 x 224), rendered on the fly: item ``i``
    is scene ``train_range[start + i]`` (no file is read; labels are not used).

    Args:
        num_scenes: how many scenes (the dataset's length).
        crop, short_side, hflip, brightness, seed: as :class:`ImageFolder` (defaults: 64 px crops of the
            unresized scenes, the tiny CLIP v2's native window).
    """

    def __init__(self, num_scenes: int = 2000, start: int = 0, world_seed: int = 0, crop: int = 64,
                 short_side: Optional[int] = None, hflip: float = 0.5, brightness: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(crop, short_side, hflip, brightness, seed)
        from ..synthetic import WorldV2

        self.world = WorldV2(seed=int(world_seed))
        self.indices: Sequence[int] = self.world.train_range[int(start):int(start) + int(num_scenes)]
        if len(self.indices) != int(num_scenes):
            raise ValueError(f"WorldV2Images: {num_scenes} scenes from {start} leave the training range")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        image = Image.fromarray(self.world.sample(self.indices[index]).image)
        return dict(inputs=self.augment(image, self._rng(index)))
