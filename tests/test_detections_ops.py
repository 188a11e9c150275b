"""Boxes from masks, mask IoU, NMS, RLE/JSON and supervision round trips against brute force."""
import numpy as np
import pytest
import torch

from ovdense.ops.masks import greedy_nms, mask_iou_matrix, mask_to_bbox, masks_to_boxes
from ovdense.structures import UNLABELLED, Detections


def random_masks(n=12, h=37, w=53, seed=0):
    rng = np.random.RandomState(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(n - 1):  # the last one stays empty
        y, x = rng.randint(0, h - 5), rng.randint(0, w - 5)
        masks[i, y:y + rng.randint(2, 15), x:x + rng.randint(2, 20)] = True
        masks[i] |= rng.rand(h, w) > 0.97  # scattered pixels: boxes are not the rectangles
    return masks


def test_masks_to_boxes_equals_per_mask_bbox():
    masks = random_masks()
    boxes = masks_to_boxes(masks)
    for m, b in zip(masks, boxes):
        x, y, bw, bh = mask_to_bbox(m)
        assert tuple(b) == (x, y, x + bw, y + bh)
    assert masks_to_boxes(np.zeros((0, 4, 4), bool)).shape == (0, 4)


def test_mask_iou_matrix_equals_brute_force():
    masks = random_masks()
    iou = mask_iou_matrix(masks, rows_per_step=5)  # several bands of rows
    for i in range(len(masks)):
        for j in range(len(masks)):
            union = (masks[i] | masks[j]).sum()
            want = (masks[i] & masks[j]).sum() / union if union else 0.0
            assert iou[i, j] == pytest.approx(want, abs=1e-12)
    other = random_masks(5, seed=3)
    cross = mask_iou_matrix(masks, other)
    assert cross.shape == (12, 5)
    assert cross[2, 4] == pytest.approx((masks[2] & other[4]).sum() / (masks[2] | other[4]).sum())


def brute_nms(iou, scores, threshold, groups=None):
    keep = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        if all(iou[i, j] <= threshold or (groups is not None and groups[i] != groups[j]) for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5])
def test_greedy_nms_equals_brute_force(threshold):
    masks = random_masks(20, seed=1)
    scores = np.random.RandomState(2).rand(20)
    groups = np.random.RandomState(3).randint(0, 3, 20)
    iou = mask_iou_matrix(masks)
    assert greedy_nms(iou, scores, threshold).tolist() == brute_nms(iou, scores, threshold)
    assert greedy_nms(iou, scores, threshold, groups).tolist() == brute_nms(iou, scores, threshold, groups)


def test_box_nms_equals_torchvision():
    from torchvision.ops import nms

    rng = np.random.RandomState(0)
    xy = rng.rand(30, 2) * 50
    boxes = np.concatenate([xy, xy + rng.rand(30, 2) * 30 + 1], 1).astype(np.float32)
    scores = rng.rand(30).astype(np.float32)
    dets = Detections(boxes, None, scores, np.zeros(30, np.int64), ["a"] * 30)
    kept = dets.with_nms(0.3)
    want = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3).numpy()
    np.testing.assert_array_equal(kept.xyxy, boxes[want])


def test_class_aware_and_agnostic_mask_nms():
    m = np.zeros((3, 10, 10), bool)
    m[0, :5] = True
    m[1, :5] = True
    m[1, 5] = True  # IoU 5/6 with mask 0
    m[2, 6:] = True
    dets = Detections.from_masks(m, confidence=np.array([0.9, 0.8, 0.7]), class_id=np.array([0, 1, 0]),
                                 class_names=["a", "b"])
    assert dets.with_nms(0.5).class_id.tolist() == [0, 1, 0]  # different classes never suppress
    assert dets.with_nms(0.5, class_agnostic=True).confidence.tolist() == pytest.approx([0.9, 0.7])


def test_to_json_rle_round_trip():
    from pycocotools import mask as mask_utils

    masks = random_masks(4)
    dets = Detections.from_masks(masks, confidence=np.array([0.1, 0.2, 0.3, 0.4]), class_id=np.array([0, 1, 1, 0]),
                                 class_names=["cat", "dog"], predicted_iou=np.array([0.5, 0.6, 0.7, 0.8]))
    out = dets.to_json()
    assert out["size"] == [37, 53] and len(out["detections"]) == 4
    for m, item in zip(masks, out["detections"]):
        rle = dict(item["segmentation"], counts=item["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), m)
        assert item["area"] == int(m.sum())
    assert out["detections"][2]["class_name"] == "dog" and out["detections"][3]["predicted_iou"] == pytest.approx(0.8)
    import json

    json.dumps(out)  # JSON-ready


def test_to_supervision_round_trip():
    sv = pytest.importorskip("supervision")
    masks = random_masks(5)
    dets = Detections.from_masks(masks, confidence=np.linspace(0.1, 0.5, 5), class_id=np.array([0, 1, 1, 0, 1]),
                                 class_names=["cat", "dog"], predicted_iou=np.arange(5, dtype=np.float32))
    s = dets.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == 5
    np.testing.assert_array_equal(s.xyxy, dets.xyxy)
    np.testing.assert_array_equal(s.mask, masks)
    assert list(s.data["class_name"]) == ["cat", "dog", "dog", "cat", "dog"]
    np.testing.assert_array_equal(s.data["predicted_iou"], np.arange(5))
    # supervision's own operations work on it: filtering and its box NMS
    assert len(s[s.confidence > 0.25]) == 3
    assert len(s.with_nms(threshold=0.99)) >= 1
    back = Detections.from_supervision(s)
    assert back.class_name == dets.class_name
    np.testing.assert_array_equal(back.mask, masks)
    np.testing.assert_array_equal(back.data["predicted_iou"], dets.data["predicted_iou"])
    agnostic = Detections.from_masks(masks[:2])
    assert Detections.from_supervision(agnostic.to_supervision()).class_id.tolist() == [UNLABELLED] * 2
