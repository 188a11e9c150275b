"""Dataset readers for standard semantic-segmentation benchmark layouts and COCO painting."""

from ovdense.datasets.coco_instances import category_index, paint_instances
from ovdense.datasets.semseg import (
    ALIASES,
    DATASETS,
    DatasetError,
    DatasetSpec,
    Sample,
    SemSegDataset,
    build_dataset,
    load_label_map,
    reduce_zero_label,
    resolve_name,
)

__all__ = [
    "ALIASES",
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "Sample",
    "SemSegDataset",
    "build_dataset",
    "category_index",
    "load_label_map",
    "paint_instances",
    "reduce_zero_label",
    "resolve_name",
]
