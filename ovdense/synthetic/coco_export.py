"""The COCO export shared by the synthetic worlds (v1 :mod:`.world`, v2 :mod:`.world_v2`).

:func:`write_coco_export` writes the files of one export; each world only says which scenes,
which masks per scene (and any extra annotation fields), its ``info`` block, categories and
class-name text.

Layout under ``out_dir``: ``images/{index:08d}.png`` (lossless RGB), ``labels/{index:08d}.png``
(uint8 class ids), ``annotations.json`` (COCO instances: image id = scene index, category id =
class id + 1, one annotation per mask in the order given, RLE segmentation with ``str`` counts,
``area`` = mask pixel count, ``bbox`` = tight box of the mask, ``iscrowd`` 0),
``captions.json`` (COCO captions, one per image) and ``names.txt``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, List, Mapping, Sequence, Tuple

import cv2
import numpy as np

from ovdense.ops.masks import encode_mask, mask_to_bbox

__all__ = ["write_coco_export"]

#: One annotation source: ``(class_id, bool mask, extra fields appended to the annotation)``.
MaskRecord = Tuple[int, np.ndarray, Mapping[str, Any]]


def write_coco_export(out_dir: str, scenes: Iterable[Tuple[int, Any]],
                      masks: Callable[[Any], Iterable[MaskRecord]], *, info: dict,
                      categories: Sequence[dict], names_text: str) -> str:
    """Write the scenes as a COCO export (layout in the module docstring).

    Args:
        out_dir: export folder (created with ``images/`` and ``labels/`` if missing).
        scenes: ``(index, scene)`` pairs in export order; a scene has ``image`` (RGB uint8),
            ``label_map`` (class ids, written as uint8) and ``caption``.
        masks: the annotations of one scene, as ``(class_id, mask, extra)`` records; ``extra``
            fields go after the standard ones, in their order.
        info: the ``info`` block of ``annotations.json``.
        categories: the COCO categories (id = class id + 1).
        names_text: content of ``names.txt``.

    Annotation ids count from 1 over the whole export. Returns the path of ``annotations.json``.
    """
    img_dir = os.path.join(out_dir, "images")
    lab_dir = os.path.join(out_dir, "labels")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lab_dir, exist_ok=True)
    images: List[dict] = []
    annotations: List[dict] = []
    captions: List[dict] = []
    ann_id = 1
    for index, scene in scenes:
        fname = f"{index:08d}.png"
        cv2.imwrite(os.path.join(img_dir, fname), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(os.path.join(lab_dir, fname), scene.label_map.astype(np.uint8))
        h, w = scene.label_map.shape
        images.append({"id": index, "file_name": fname, "height": h, "width": w})
        captions.append({"image_id": index, "id": index, "caption": scene.caption})
        for class_id, mask, extra in masks(scene):
            annotations.append({
                "id": ann_id, "image_id": index, "category_id": class_id + 1,
                "segmentation": encode_mask(mask), "area": float(np.count_nonzero(mask)),
                "bbox": [float(v) for v in mask_to_bbox(mask)], "iscrowd": 0, **extra,
            })
            ann_id += 1
    data = {"info": info, "images": images, "annotations": annotations, "categories": list(categories)}
    path = os.path.join(out_dir, "annotations.json")
    with open(path, "w") as f:
        json.dump(data, f)
    with open(os.path.join(out_dir, "captions.json"), "w") as f:
        json.dump({"images": images, "annotations": captions}, f)
    with open(os.path.join(out_dir, "names.txt"), "w") as f:
        f.write(names_text)
    return path
