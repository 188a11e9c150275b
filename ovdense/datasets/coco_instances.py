"""Paint COCO instance annotations into semantic label maps (COCO-Object style).

Used by ``tools/convert_coco_object.py`` and by the semantic half of the COCO evaluator.

Painting rules (a documented simplification of COCO-Stuff's thing maps):

* categories are sorted by their COCO id and numbered contiguously; with ``background=True``
  the background is 0 and the categories are ``1..K`` (COCO-Object: ``K = 80``), otherwise
  the categories are ``0..K-1`` and unlabelled pixels get ``ignore_index``;
* instances are painted in annotation order (ascending annotation id), later over earlier, so
  an overlap takes the label of the later instance;
* crowd regions (``iscrowd=1``) are painted with their category by default
  (``crowd="label"``), marked ``ignore_index`` (``crowd="ignore"``), or skipped
  (``crowd="skip"``). Crowd regions are painted after the regular instances.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

__all__ = ["category_index", "paint_instances"]

CrowdPolicy = Literal["label", "ignore", "skip"]


def category_index(coco: Any, background: bool = True) -> dict[int, int]:
    """Map COCO category id -> contiguous label (``1..K`` with background, else ``0..K-1``)."""
    offset = 1 if background else 0
    return {cid: i + offset for i, cid in enumerate(sorted(coco.getCatIds()))}


def paint_instances(
    coco: Any,
    image_id: int,
    cat_to_label: dict[int, int],
    *,
    background: bool = True,
    crowd: CrowdPolicy = "label",
    ignore_index: int = 255,
) -> np.ndarray:
    """Return the ``(H, W)`` int64 label map of image ``image_id`` from a ``pycocotools.COCO``.

    Args:
        coco: a loaded ``pycocotools.coco.COCO`` object.
        image_id: the COCO image id.
        cat_to_label: COCO category id -> label (see :func:`category_index`); annotations of
            other categories are skipped.
        background: unlabelled pixels are 0 if true, else ``ignore_index``.
        crowd: what to do with crowd regions (see the module docstring).
        ignore_index: value for ignored pixels.
    """
    if crowd not in ("label", "ignore", "skip"):
        raise ValueError(f"crowd must be 'label', 'ignore' or 'skip', got {crowd!r}")
    info = coco.imgs[image_id]
    h, w = int(info["height"]), int(info["width"])
    out = np.full((h, w), 0 if background else ignore_index, dtype=np.int64)
    with warnings.catch_warnings():
        # pycocotools <= 2.0.11 decodes through a NumPy-2-deprecated __array__ path
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return _paint(coco, image_id, out, cat_to_label, crowd, ignore_index)


def _paint(coco: Any, image_id: int, out: np.ndarray, cat_to_label: dict[int, int],
           crowd: str, ignore_index: int) -> np.ndarray:
    """Body of :func:`paint_instances`: paint the annotations of one image into ``out``."""
    anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), key=lambda a: a["id"])
    regular = [a for a in anns if not a.get("iscrowd", 0)]
    crowds = [a for a in anns if a.get("iscrowd", 0)]
    for ann in regular:
        if ann["category_id"] in cat_to_label:
            out[coco.annToMask(ann).astype(bool)] = cat_to_label[ann["category_id"]]
    if crowd != "skip":
        for ann in crowds:
            if ann["category_id"] in cat_to_label:
                value = cat_to_label[ann["category_id"]] if crowd == "label" else ignore_index
                out[coco.annToMask(ann).astype(bool)] = value
    return out
