"""Benchmark readers on tiny fake layouts; clear errors on missing paths."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from fakes import make_layout  # noqa: E402

from ovdense.datasets import DATASETS, DatasetError, build_dataset, load_label_map  # noqa: E402


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_reader_on_fake_layout(tmp_path, name):
    spec = DATASETS[name]
    make_layout(name, tmp_path, n_images=3)
    ds = build_dataset(name, tmp_path)
    assert len(ds) == 3 and ds.num_classes == spec.num_classes
    for img, gt_path in ds:
        assert img.is_file() and gt_path.is_file()
        assert img.name.endswith(spec.img_suffix) and gt_path.name.endswith(spec.seg_suffix)
        raw = load_label_map(gt_path)
        gt = ds.load_gt(gt_path)
        assert gt.dtype == np.int64 and gt.shape == raw.shape
        if spec.reduce_zero_label:
            np.testing.assert_array_equal(gt[raw == 0], 255)
            np.testing.assert_array_equal(gt[raw == 255], 255)
            keep = (raw != 0) & (raw != 255)
            np.testing.assert_array_equal(gt[keep], raw[keep] - 1)
        else:
            np.testing.assert_array_equal(gt, raw)
        valid = gt[gt != 255]
        assert valid.min() >= 0 and valid.max() < spec.num_classes
    # the dataset root itself is accepted too, and limit works
    direct = build_dataset(name, tmp_path / spec.root_subdir, limit=2)
    assert len(direct) == 2 and direct.samples[0] == ds.samples[0]


def test_voc_palette_indices(tmp_path):
    make_layout("voc21", tmp_path, n_images=1)
    ds = build_dataset("voc21", tmp_path)
    with Image.open(ds.samples[0].gt_path) as im:
        assert im.mode == "P"
    assert ds.load_gt(ds.samples[0].gt_path).ndim == 2


def test_cityscapes_ids_keep_city(tmp_path):
    make_layout("cityscapes", tmp_path, n_images=4)
    ds = build_dataset("cityscapes", tmp_path)
    assert ds.samples[0].image_id.startswith("city0/")


def test_missing_folder_is_clear(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_dataset("ade20k", tmp_path)
    msg = str(err.value)
    assert "ade20k" in msg and str(tmp_path / "ADEChallengeData2016" / "images/validation") in msg
    make_layout("coco_stuff", tmp_path, n_images=1)
    ann = tmp_path / "coco_stuff164k" / "annotations" / "val2017"
    for f in ann.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="_labelTrainIds.png"):
        build_dataset("coco_stuff", tmp_path)
    ann.rmdir()
    with pytest.raises(DatasetError, match="annotation folder not found"):
        build_dataset("coco_stuff", tmp_path)
    assert issubclass(DatasetError, FileNotFoundError)


def test_missing_split_file(tmp_path):
    make_layout("pc59", tmp_path, n_images=1)
    (tmp_path / "VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt").unlink()
    with pytest.raises(DatasetError, match="split file not found"):
        build_dataset("pc59", tmp_path)


def test_names_and_aliases(tmp_path):
    make_layout("pc60", tmp_path, n_images=1)
    assert build_dataset("PascalContext60Dataset", tmp_path).name == "pc60"
    with pytest.raises(KeyError, match="unknown dataset"):
        build_dataset("nope", tmp_path)
