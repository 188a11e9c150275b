"""SemanticEvaluator against an independent brute-force IoU, shard merging, reduce_zero_label."""

import numpy as np
import pytest

from ovdense.datasets import reduce_zero_label
from ovdense.evaluation import SemanticEvaluator, metrics_from_confusion


def brute_force(preds, gts, num_classes, ignore=255):
    """Per-class IoU/Acc (percent) with boolean masks, summed over images (mmseg style)."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    area_gt = np.zeros(num_classes)
    for pred, gt in zip(preds, gts):
        valid = gt != ignore
        for c in range(num_classes):
            p = (pred == c) & valid
            g = (gt == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
            area_gt[c] += g.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union * 100
        acc = inter / area_gt * 100
    return iou, acc, inter.sum() / area_gt.sum() * 100


def random_pairs(rng, n, num_classes, shape=(23, 31), absent=()):
    pairs = []
    for _ in range(n):
        gt = rng.integers(0, num_classes, shape)
        pred = np.where(rng.random(shape) < 0.6, gt, rng.integers(0, num_classes, shape))
        for c in absent:
            gt[gt == c] = (c + 1) % num_classes
            pred[pred == c] = (c + 1) % num_classes
        gt[rng.random(shape) < 0.1] = 255
        pairs.append((pred, gt))
    return pairs


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_matches_brute_force(dtype):
    rng = np.random.default_rng(0)
    pairs = random_pairs(rng, 5, 7, absent=(3,))
    ev = SemanticEvaluator(7)
    for pred, gt in pairs:
        ev.update(pred.astype(dtype), gt.astype(np.uint8 if dtype == np.uint8 else np.int64))
    m = ev.compute()
    iou, acc, aacc = brute_force(*zip(*pairs), num_classes=7)
    np.testing.assert_allclose(m.iou, iou, equal_nan=True)
    np.testing.assert_allclose(m.acc, acc, equal_nan=True)
    assert np.isnan(m.iou[3]) and np.isnan(m.acc[3])
    assert m.mIoU == pytest.approx(np.nanmean(iou))
    assert m.mAcc == pytest.approx(np.nanmean(acc))
    assert m.aAcc == pytest.approx(aacc)
    assert m.num_pixels == sum(int((g != 255).sum()) for _, g in pairs)


def test_false_positive_class_counts_as_zero():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    ev = SemanticEvaluator(3)
    ev.update(pred, gt)
    m = ev.compute()
    assert m.iou[2] == 0.0 and np.isnan(m.acc[2])
    assert m.mIoU == pytest.approx((50.0 + 100.0 + 0.0) / 3)


def test_merge_of_shards_equals_single_pass():
    rng = np.random.default_rng(1)
    pairs = random_pairs(rng, 9, 5)
    single = SemanticEvaluator(5)
    shards = [SemanticEvaluator(5) for _ in range(3)]
    for i, (pred, gt) in enumerate(pairs):
        single.update(pred, gt)
        shards[i % 3].update(pred, gt)
    merged = SemanticEvaluator(5)
    for s in shards:
        merged.merge(s)
    assert merged.matrix.dtype == np.int64
    np.testing.assert_array_equal(merged.matrix, single.matrix)
    restored = SemanticEvaluator(5)
    restored.load_state_dict(single.state_dict())
    assert restored.compute().mIoU == single.compute().mIoU


def test_errors_and_empty():
    ev = SemanticEvaluator(3)
    with pytest.raises(ValueError):
        ev.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError):
        ev.update(np.full((2, 2), 3), np.zeros((2, 2), int))
    with pytest.raises(ValueError):
        ev.update(np.zeros((2, 2)), np.zeros((2, 2), int))
    ev.update(np.full((2, 2), 7), np.full((2, 2), 255))  # ignored pixels: no check
    assert np.isnan(ev.compute().mIoU)
    assert np.isnan(metrics_from_confusion(np.zeros((2, 2), np.int64)).aAcc)


def test_reduce_zero_label_like_mmseg():
    raw = np.array([[0, 1, 2], [150, 254, 255]], dtype=np.uint8)
    expected = np.array([[255, 0, 1], [149, 253, 255]])
    np.testing.assert_array_equal(reduce_zero_label(raw), expected)
    # mmseg's uint8 recipe
    ref = raw.copy()
    ref[ref == 0] = 255
    ref = ref - 1
    ref[ref == 254] = 255
    np.testing.assert_array_equal(reduce_zero_label(raw), ref.astype(np.int64))


def test_table_and_dict():
    ev = SemanticEvaluator(2, class_names=["bg", "cat"])
    ev.update(np.array([[0, 1]]), np.array([[0, 0]]))
    m = ev.compute()
    d = m.to_dict()
    assert d["per_class"][1]["name"] == "cat" and d["per_class"][1]["Acc"] is None
    assert "mIoU" in m.table() and m.rounded().mIoU == round(m.mIoU, 2)


def test_unlabelled_predictions_count_as_misses_like_mmseg():
    """-1 predictions (no class claimed the pixel) are in the GT class's area and in no
    predicted area, as mmseg's histc-based intersect_and_union counts them."""
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng, 4, 6)
    for pred, gt in pairs:
        pred[rng.random(pred.shape) < 0.15] = -1
    ev = SemanticEvaluator(6)
    for pred, gt in pairs:
        ev.update(pred, gt)
    m = ev.compute()
    iou, acc, aacc = brute_force(*zip(*pairs), num_classes=6)  # -1 never equals a class: a miss
    np.testing.assert_allclose(m.iou, iou)
    np.testing.assert_allclose(m.acc, acc)
    assert m.aAcc == pytest.approx(aacc)
    n_unl = sum(int(((p == -1) & (g != 255)).sum()) for p, g in pairs)
    assert m.num_unlabelled == n_unl > 0 and ev.unlabelled.sum() == n_unl
    assert m.to_dict()["num_unlabelled"] == n_unl
    # the (C, C) confusion matrix keeps only labelled predictions
    assert ev.matrix.sum() + n_unl == m.num_pixels
    # the old refusal stays for callers of confusion_matrix without unlabelled=True
    from ovdense.evaluation import confusion_matrix
    with pytest.raises(ValueError, match="unlabelled"):
        confusion_matrix(pairs[0][0], pairs[0][1], 6)
    with pytest.raises(ValueError, match="outside"):
        ev.update(np.full((2, 2), -2), np.zeros((2, 2), int))


def test_unlabelled_counts_merge_and_restore_from_old_state():
    rng = np.random.default_rng(4)
    pairs = random_pairs(rng, 6, 4)
    for pred, _ in pairs:
        pred[rng.random(pred.shape) < 0.2] = -1
    single, shards = SemanticEvaluator(4), [SemanticEvaluator(4), SemanticEvaluator(4)]
    for i, (pred, gt) in enumerate(pairs):
        single.update(pred, gt)
        shards[i % 2].update(pred, gt)
    merged = shards[0].merge(shards[1])
    np.testing.assert_array_equal(merged.counts, single.counts)
    restored = SemanticEvaluator(4)
    restored.load_state_dict(single.state_dict())
    np.testing.assert_array_equal(restored.counts, single.counts)
    # a checkpoint written before the unlabelled column: (C, C), no unlabelled pixels
    old = SemanticEvaluator(4)
    old.load_state_dict({"matrix": single.matrix.copy(), "num_classes": 4, "ignore_index": 255})
    assert old.unlabelled.sum() == 0 and np.array_equal(old.matrix, single.matrix)
    with pytest.raises(ValueError):
        old.add_matrix(np.zeros((4, 6), np.int64))


def test_runner_resume_refuses_another_segmenter_config(tmp_path):
    """evaluate_semantic(resume=True) with another config or other classes raises instead of
    reporting the recorded run's numbers under the new config."""
    import json
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from fakes import dataset_segmenter, make_layout

    from ovdense.datasets import build_dataset
    from ovdense.evaluation.semantic_runner import RunMismatchError, evaluate_semantic

    make_layout("voc21", tmp_path / "data", n_images=3, seed=2)
    voc = build_dataset("voc21", tmp_path / "data")
    out = tmp_path / "out"
    first = evaluate_semantic(dataset_segmenter(voc, noise=0.1), voc, out_dir=out, progress=False)
    written = (out / "metrics.json").read_bytes()
    with pytest.raises(RunMismatchError, match="noise"):
        evaluate_semantic(dataset_segmenter(voc, noise=0.3), voc, out_dir=out, progress=False, resume=True)
    renamed = dataset_segmenter(voc, noise=0.1)
    renamed.class_names = [f"other{i}" for i in range(21)]
    with pytest.raises(RunMismatchError, match="classes"):
        evaluate_semantic(renamed, voc, out_dir=out, progress=False, resume=True)
    assert (out / "metrics.json").read_bytes() == written
    same = dataset_segmenter(voc, noise=0.1)
    again = evaluate_semantic(same, voc, out_dir=out, progress=False, resume=True)
    assert again.mIoU == first.mIoU and same.calls == []  # nothing predicted again
    assert json.loads((out / "metrics.json").read_text())["mIoU"] == first.mIoU
