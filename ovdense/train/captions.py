"""Captioned training images for Talk2DINO's projection: a COCO-captions JSON with its image folder, or
synthetic world v2 scenes with their captions.

Every item is ``dict(inputs=uint8 tensor [3, H, W], captions=str, keys=str)`` (RGB, 0-255; ``keys`` names
the image, so a trainer may cache what a frozen model computes from it); mmengine's ``default_collate``
batches them (the captions and keys as lists of strings).

The official Talk2DINO training (``train.py`` + ``dino_extraction_v2.py``) pairs every COCO caption with its
image (one sample per caption: an image with 5 captions is 5 samples) and feeds DINOv2 the image resized
to short side 448 (bicubic) and centre-cropped to 448 x 448, without augmentation (the features are
extracted once): :class:`COCOCaptions` does the same (PIL bicubic, torchvision's rounding).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Dict, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..registry import DATASETS


def resize_center_crop(image: Image.Image, short_side: Optional[int], crop: Optional[int]) -> torch.Tensor:
    """torchvision's ``Resize(short_side, BICUBIC)`` then ``CenterCrop(crop)`` on a PIL image (either None:
    skipped), as a uint8 ``[3, H, W]`` RGB tensor."""
    image = image.convert("RGB")
    if short_side is not None:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(short_side * long / short)  # torchvision's _compute_resized_output_size
        size = (short_side, new_long) if w <= h else (new_long, short_side)
        if size != (w, h):
            image = image.resize(size, Image.BICUBIC)
    arr = np.asarray(image)
    if crop is not None:
        h, w = arr.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"image of {w}x{h} is smaller than the {crop} crop (set short_side >= crop)")
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        arr = arr[top:top + crop, left:left + crop]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


@DATASETS.register_module("COCOCaptions")
class COCOCaptions(Dataset):
    """Image-caption pairs from a COCO-captions JSON (``captions_train2014.json``'s layout:
    ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``; the synthetic exports'
    ``captions.json`` has it too), one item per caption, images read from ``img_dir/file_name``.

    Args:
        ann_file: the JSON file.
        img_dir: the folder of the images (e.g. ``coco/train2014``).
        short_side: resize the short side to this (bicubic) first (official 448); None keeps the size.
        crop: centre crop to ``crop x crop`` (official 448); None keeps the whole image (then batch only
            images of one size).
        num_captions: keep only the first this many captions (None: all).
    """

    def __init__(self, ann_file: str, img_dir: str, short_side: Optional[int] = 448, crop: Optional[int] = 448,
                 num_captions: Optional[int] = None) -> None:
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"COCOCaptions: caption file {ann_file}: no such file")
        with open(ann_file) as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise ValueError(f"COCOCaptions: {ann_file} is not a COCO-captions JSON (no 'images' / 'annotations')")
        files = {img["id"]: img["file_name"] for img in data["images"]}
        self.samples = [(ann["image_id"], files[ann["image_id"]], ann["caption"]) for ann in data["annotations"]
                        if "caption" in ann]
        if num_captions is not None:
            self.samples = self.samples[:int(num_captions)]
        if not self.samples:
            raise ValueError(f"COCOCaptions: {ann_file} has no captions")
        self.img_dir = img_dir
        self.short_side = None if short_side is None else int(short_side)
        self.crop = None if crop is None else int(crop)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image_id, file_name, caption = self.samples[index]
        with Image.open(os.path.join(self.img_dir, file_name)) as image:
            inputs = resize_center_crop(image, self.short_side, self.crop)
        return dict(inputs=inputs, captions=str(caption), keys=f"coco:{image_id}")


@DATASETS.register_module("WorldV2Captions")
class WorldV2Captions(Dataset):
    """Training-range scenes of ``WorldV2(seed=world_seed)`` (whole 160 x 224 scenes, no crop: the caption
    names every object) with their captions, rendered on the fly: item ``i`` is scene
    ``train_range[start + i]``.

    Args:
        num_scenes: how many scenes (the dataset's length).
        shuffle_captions: shuffle the caption's order of objects per read (``WorldV2.caption(scene, rng)``,
            drawn from ``(seed, index, read count)``, so a resumed run reads the same captions); False: the
            scene's fixed caption (objects by decreasing area).
    """

    def __init__(self, num_scenes: int = 2000, start: int = 0, world_seed: int = 0, shuffle_captions: bool = True,
                 seed: int = 0) -> None:
        from ..synthetic import WorldV2

        self.world = WorldV2(seed=int(world_seed))
        self.world_seed = int(world_seed)
        self.indices = self.world.train_range[int(start):int(start) + int(num_scenes)]
        if len(self.indices) != int(num_scenes):
            raise ValueError(f"WorldV2Captions: {num_scenes} scenes from {start} leave the training range")
        self.shuffle_captions = bool(shuffle_captions)
        self.seed = int(seed)
        self._reads: Dict[int, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        scene_index = self.indices[index]
        scene = self.world.sample(scene_index)
        caption = scene.caption
        if self.shuffle_captions:
            n = self._reads[index]
            self._reads[index] += 1
            caption = self.world.caption(scene, np.random.default_rng([self.seed, int(index), n]))
        return dict(inputs=torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1).contiguous(),
                    captions=caption, keys=f"worldv2:{self.world_seed}:{scene_index}")
