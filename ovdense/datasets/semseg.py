"""Readers for the standard semantic-segmentation benchmark layouts (mmseg conventions).

Each reader lists ``(image_path, gt_path)`` pairs and loads the ground truth as an int64
label map with the published label mapping. The layouts are the ones mmseg's converters and
the SCLIP/NACLIP configs expect:

========== ======================================================================== ======= =====
name       layout under the data root                                                classes rzl
========== ======================================================================== ======= =====
voc21      VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}, ImageSets/Segmentation    21      no
voc20      same as voc21; background (0) becomes 255                                   20      yes
pc60       VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext},                    60      no
           ImageSets/SegmentationContext/val.txt (mmseg ``pascal_context.py``)
pc59       same as pc60; background (0) becomes 255                                    59      yes
coco_stuff images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png                171     no
           (mmseg ``coco_stuff164k.py``)
coco_object images/val2017/*.jpg, annotations/val2017/*_instanceTrainIds.png           81      no
           (background 0; made by ``tools/convert_coco_object.py``)
cityscapes leftImg8bit/val/<city>/*_leftImg8bit.png,                                   19      no
           gtFine/val/<city>/*_gtFine_labelTrainIds.png (mmseg ``cityscapes.py``)
ade20k     ADEChallengeData2016/{images,annotations}/validation                       150     yes
========== ======================================================================== ======= =====

``--data-root`` may point either at the folder holding the layout's top folder (``data/``
containing ``VOCdevkit``) or at the dataset root itself (``data/VOCdevkit/VOC2012``).
``reduce_zero_label`` (rzl) maps 0 to 255 and every other label ``l`` to ``l - 1`` (255 stays
255), exactly as mmseg's ``LoadAnnotations`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "Sample",
    "SemSegDataset",
    "SemSegSamples",
    "build_dataset",
    "load_label_map",
    "reduce_zero_label",
]


class DatasetError(FileNotFoundError):
    """A benchmark folder or file is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one benchmark layout.

    Attributes:
        name: registry key.
        num_classes: number of evaluated classes (after ``reduce_zero_label``).
        reduce_zero_label: map 0 -> 255 and ``l`` -> ``l - 1`` when loading the ground truth.
        class_file: conventional class-name file (SCLIP/NACLIP naming, e.g. ``cls_voc21.txt``).
        root_subdir: folder that holds the layout when ``data_root`` is its parent.
        img_dir: image folder, relative to the dataset root.
        ann_dir: annotation folder, relative to the dataset root.
        img_suffix: image file suffix.
        seg_suffix: ground-truth file suffix that replaces ``img_suffix``.
        split_file: list of image ids relative to the dataset root, or ``None`` to scan
            ``img_dir`` (recursively, one level of sub-folders for Cityscapes).
        recursive: scan sub-folders of ``img_dir``.
        converter: how to produce the annotations when they are not in the original release.
        background: class 0 is a background class (its name-file line is the background line).
    """

    name: str
    num_classes: int
    reduce_zero_label: bool
    class_file: str
    root_subdir: str
    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_suffix: str
    split_file: str | None = None
    recursive: bool = False
    converter: str = ""
    background: bool = False


_VOC = dict(
    root_subdir="VOCdevkit/VOC2012",
    img_dir="JPEGImages",
    ann_dir="SegmentationClass",
    img_suffix=".jpg",
    seg_suffix=".png",
    split_file="ImageSets/Segmentation/val.txt",
)
_CONTEXT = dict(
    root_subdir="VOCdevkit/VOC2010",
    img_dir="JPEGImages",
    ann_dir="SegmentationClassContext",
    img_suffix=".jpg",
    seg_suffix=".png",
    split_file="ImageSets/SegmentationContext/val.txt",
    converter="mmseg tools/dataset_converters/pascal_context.py (needs the Detail API)",
)
_COCO = dict(root_subdir="coco_stuff164k", img_dir="images/val2017", ann_dir="annotations/val2017",
             img_suffix=".jpg")

DATASETS: dict[str, DatasetSpec] = {
    "voc21": DatasetSpec("voc21", 21, False, "cls_voc21.txt", background=True, **_VOC),
    "voc20": DatasetSpec("voc20", 20, True, "cls_voc20.txt", **_VOC),
    "pc60": DatasetSpec("pc60", 60, False, "cls_context60.txt", background=True, **_CONTEXT),
    "pc59": DatasetSpec("pc59", 59, True, "cls_context59.txt", **_CONTEXT),
    "coco_stuff": DatasetSpec(
        "coco_stuff", 171, False, "cls_coco_stuff.txt", seg_suffix="_labelTrainIds.png",
        converter="mmseg tools/dataset_converters/coco_stuff164k.py", **_COCO),
    "coco_object": DatasetSpec(
        "coco_object", 81, False, "cls_coco_object.txt", seg_suffix="_instanceTrainIds.png",
        converter="tools/convert_coco_object.py (ovdense) or SCLIP/NACLIP cvt_coco_object.py",
        background=True, **_COCO),
    "cityscapes": DatasetSpec(
        "cityscapes", 19, False, "cls_city_scapes.txt", root_subdir="cityscapes",
        img_dir="leftImg8bit/val", ann_dir="gtFine/val", img_suffix="_leftImg8bit.png",
        seg_suffix="_gtFine_labelTrainIds.png", recursive=True,
        converter="mmseg tools/dataset_converters/cityscapes.py"),
    "ade20k": DatasetSpec(
        "ade20k", 150, True, "cls_ade20k.txt", root_subdir="ADEChallengeData2016",
        img_dir="images/validation", ann_dir="annotations/validation", img_suffix=".jpg",
        seg_suffix=".png"),
}

#: Alternative spellings accepted by :func:`build_dataset` (mmseg / SCLIP config names).
ALIASES: dict[str, str] = {
    "context60": "pc60", "context59": "pc59", "pascal_context": "pc60",
    "pascal_context59": "pc59", "coco_stuff164k": "coco_stuff", "city_scapes": "cityscapes",
    "ade": "ade20k", "pascalvoc20dataset": "voc20", "pascalvocdataset": "voc21",
    "pascalcontext60dataset": "pc60", "pascalcontext59dataset": "pc59",
    "pascalcontextdataset": "pc60", "pascalcontextdataset59": "pc59",
    "cocostuffdataset": "coco_stuff", "cocoobjectdataset": "coco_object",
    "cityscapesdataset": "cityscapes", "ade20kdataset": "ade20k",
}


def resolve_name(name: str) -> str:
    """Canonical registry key for ``name`` (case-insensitive, aliases accepted)."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return key


def reduce_zero_label(gt: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 -> 255, 255 stays 255, every other ``l`` -> ``l - 1``."""
    gt = np.asarray(gt).astype(np.int64)
    out = gt - 1
    out[(gt == 0) | (gt == 255)] = 255
    return out


def load_label_map(path: str | Path) -> np.ndarray:
    """Read a label PNG as an int64 ``(H, W)`` array of raw indices.

    Palette PNGs (VOC) give their palette indices, not colours, as mmseg's pillow backend does.
    """
    with Image.open(path) as img:
        arr = np.array(img)
    if arr.ndim == 3:
        raise DatasetError(f"label map {path} has {arr.shape[2]} channels; expected one")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class Sample:
    """One evaluation pair; ``image_id`` is unique within the dataset."""

    image_id: str
    image_path: Path
    gt_path: Path


class SemSegSamples:
    """Accessors shared by semantic-segmentation datasets: a spec, a root and an ordered sample list.

    Subclasses set ``spec`` (:class:`DatasetSpec`), ``root`` and ``samples`` (list of
    :class:`Sample`) in their constructor; this base gives ``name``, ``num_classes``,
    ``len()``, iteration over ``(image_path, gt_path)`` pairs and :meth:`load_gt`, which is
    what :func:`ovdense.evaluation.evaluate_semantic` reads from a dataset.
    """

    spec: DatasetSpec
    root: Path
    samples: list[Sample]

    @property
    def name(self) -> str:
        """Name of the dataset (the registry key for a shipped benchmark)."""
        return self.spec.name

    @property
    def num_classes(self) -> int:
        """Number of evaluated classes."""
        return self.spec.num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[tuple[Path, Path]]:
        for s in self.samples:
            yield s.image_path, s.gt_path

    def load_gt(self, gt_path: str | Path) -> np.ndarray:
        """Ground truth as int64 ``(H, W)``, with ``reduce_zero_label`` applied if the spec says so."""
        gt = load_label_map(gt_path)
        return reduce_zero_label(gt) if self.spec.reduce_zero_label else gt


class SemSegDataset(SemSegSamples):
    """An ordered list of :class:`Sample` for one benchmark, with mmseg's label mapping.

    Iterating yields ``(image_path, gt_path)`` pairs; :meth:`load_gt` applies the mapping.
    """

    def __init__(self, name: str, data_root: str | Path, limit: int | None = None) -> None:
        """Find the layout under ``data_root`` and list its samples (first ``limit`` only).

        Raises:
            DatasetError: a folder, the split file or a ground-truth file is missing.
        """
        self.spec = DATASETS[resolve_name(name)]
        self.root = self._find_root(Path(data_root))
        samples = self._list_samples()
        if limit is not None:
            samples = samples[: max(int(limit), 0)]
        self.samples: list[Sample] = samples

    # -- layout ---------------------------------------------------------------------------
    def _find_root(self, data_root: Path) -> Path:
        """Accept either the dataset root or its parent; error names both candidates."""
        candidates = [data_root / self.spec.root_subdir, data_root]
        for cand in candidates:
            if (cand / self.spec.img_dir).is_dir():
                return cand
        tried = " or ".join(str(c / self.spec.img_dir) for c in candidates)
        raise DatasetError(
            f"dataset {self.spec.name!r}: image folder not found; expected {tried}"
        )

    def _require_dir(self, rel: str, what: str) -> Path:
        path = self.root / rel
        if not path.is_dir():
            hint = f" (produce it with {self.spec.converter})" if self.spec.converter else ""
            raise DatasetError(f"dataset {self.spec.name!r}: {what} folder not found: {path}{hint}")
        return path

    def _list_ids(self, img_dir: Path) -> list[str]:
        """Image ids from the split file, or from scanning the image folder (sorted)."""
        spec = self.spec
        if spec.split_file is not None:
            split = self.root / spec.split_file
            if not split.is_file():
                raise DatasetError(f"dataset {spec.name!r}: split file not found: {split}")
            return [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
        pattern = f"*/*{spec.img_suffix}" if spec.recursive else f"*{spec.img_suffix}"
        ids = [p.relative_to(img_dir).as_posix()[: -len(spec.img_suffix)]
               for p in img_dir.glob(pattern) if p.is_file()]
        return sorted(ids)

    def _list_samples(self) -> list[Sample]:
        spec = self.spec
        img_dir = self._require_dir(spec.img_dir, "image")
        ann_dir = self._require_dir(spec.ann_dir, "annotation")
        samples = []
        for image_id in self._list_ids(img_dir):
            img = img_dir / f"{image_id}{spec.img_suffix}"
            gt = ann_dir / f"{image_id}{spec.seg_suffix}"
            if not img.is_file():
                raise DatasetError(f"dataset {spec.name!r}: image not found: {img}")
            if not gt.is_file():
                hint = f" (produce it with {spec.converter})" if spec.converter else ""
                raise DatasetError(f"dataset {spec.name!r}: ground truth not found: {gt}{hint}")
            samples.append(Sample(image_id, img, gt))
        if not samples:
            raise DatasetError(f"dataset {spec.name!r}: no images found in {img_dir}")
        return samples


def build_dataset(name: str, data_root: str | Path, limit: int | None = None) -> SemSegDataset:
    """Build the reader for ``name`` (see :data:`DATASETS`) rooted at ``data_root``."""
    return SemSegDataset(name, data_root, limit=limit)
