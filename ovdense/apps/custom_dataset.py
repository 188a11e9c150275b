"""Your own semantic-segmentation data: an image folder and a label folder (mmseg's ``CustomDataset``).

``FolderDataset`` has what :func:`ovdense.evaluation.evaluate_semantic` reads from a benchmark
(``name``, ``spec``, ``root``, ``samples``, ``num_classes``, ``load_gt``), so
``ovdense eval-semantic --img-dir images/ --ann-dir labels/ --classes-file names.txt`` scores a
segmenter on it exactly as on the shipped benchmarks.

Label files hold class indices (palette PNGs give their palette indices, as mmseg reads them);
255 is ignored. With ``reduce_zero_label`` (mmseg's flag, as for ADE20K) 0 is ignored and
``l`` is class ``l - 1``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..datasets import DatasetError, DatasetSpec, Sample
from ..datasets.semseg import SemSegSamples


class FolderDataset(SemSegSamples):
    """Images below ``img_dir`` (recursively, ``*img_suffix``) and their labels in ``ann_dir``
    (same relative path, ``img_suffix`` replaced by ``seg_suffix``).

    ``name``, ``num_classes``, ``len()``, iteration and ``load_gt`` come from
    :class:`ovdense.datasets.semseg.SemSegSamples`, as for the shipped benchmarks.
    """

    def __init__(self, img_dir: str, ann_dir: str, num_classes: int, *, reduce_zero_label: bool = False,
                 img_suffix: str = ".jpg", seg_suffix: str = ".png", class_file: str = "",
                 background: bool = False, limit: Optional[int] = None, name: str = "custom") -> None:
        for folder, what in ((img_dir, "image"), (ann_dir, "label")):
            if not os.path.isdir(folder):
                raise DatasetError(f"custom dataset: {what} folder not found: {folder}")
        if num_classes < 1:
            raise DatasetError("custom dataset: the class-name file names no class")
        self.spec = DatasetSpec(name=name, num_classes=int(num_classes), reduce_zero_label=bool(reduce_zero_label),
                                class_file=os.path.basename(class_file), root_subdir="", img_dir=str(img_dir),
                                ann_dir=str(ann_dir), img_suffix=img_suffix, seg_suffix=seg_suffix,
                                recursive=True, background=bool(background))
        self.root = Path(img_dir).parent
        self.samples: List[Sample] = self._list_samples(Path(img_dir), Path(ann_dir))
        if limit is not None:
            self.samples = self.samples[:limit]

    def _list_samples(self, img_dir: Path, ann_dir: Path) -> List[Sample]:
        spec = self.spec
        samples, missing = [], []
        for folder, dirs, files in os.walk(img_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if f.startswith(".") or not f.lower().endswith(spec.img_suffix.lower()):
                    continue
                img = Path(folder) / f
                image_id = str(img.relative_to(img_dir))[: -len(spec.img_suffix)]
                gt = ann_dir / f"{image_id}{spec.seg_suffix}"
                if gt.is_file():
                    samples.append(Sample(image_id, img, gt))
                else:
                    missing.append(gt)
        if missing:
            raise DatasetError(f"custom dataset: {len(missing)} image(s) have no label file, e.g. {missing[0]} "
                               f"(labels are <ann-dir>/<same path><seg-suffix {spec.seg_suffix!r}>)")
        if not samples:
            raise DatasetError(f"custom dataset: no '*{spec.img_suffix}' images found in {img_dir} "
                               f"(set --img-suffix)")
        return sorted(samples, key=lambda s: s.image_id)


def to_dataset_index_space(pred_dir: str, out_dir: str, reduce_zero_label: bool) -> int:
    """Copy prediction PNGs into the label files' own index space (mmseg's ``format_only`` output).

    With ``reduce_zero_label`` class ``c`` is written as ``c + 1`` and unlabelled pixels as 0 (the
    ignored value of such datasets, e.g. ADE20K's submission format); otherwise indices are kept
    and unlabelled pixels stay 255. Files are 8-bit grey PNGs (16-bit above 255 classes).
    Returns the number of files written.
    """
    from PIL import Image

    from ..io.writers import atomic_path

    count = 0
    for folder, _, files in os.walk(pred_dir):
        for f in sorted(files):
            if not f.endswith(".png") or f.startswith("."):
                continue
            src = os.path.join(folder, f)
            with Image.open(src) as im:
                raw = np.array(im)
            labels = raw.astype(np.int64)
            unlabelled = labels == (65535 if raw.dtype == np.uint16 else 255)
            if reduce_zero_label:
                out = labels + 1
                out[unlabelled] = 0
            else:
                out = labels
            dst = os.path.join(out_dir, os.path.relpath(src, pred_dir))
            big = out.max(initial=0) > 255 or raw.dtype == np.uint16
            with atomic_path(dst) as tmp:
                if big:
                    import cv2

                    if not cv2.imwrite(tmp, out.astype(np.uint16)):
                        raise OSError(f"could not write {dst}")
                else:
                    Image.fromarray(out.astype(np.uint8), mode="L").save(tmp, format="PNG")
            count += 1
    return count
