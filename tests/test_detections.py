"""``Detections`` indexing and concatenation (supervision-style), checked field by field."""
import numpy as np
import pytest

from ovdense.structures import Detections


def _dets(n=5, h=6, w=7, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 5, (n, 2)).astype(np.float32)
    return Detections(xyxy=np.concatenate([xy, xy + 1], 1), mask=rng.random((n, h, w)) > 0.5,
                      confidence=rng.random(n).astype(np.float32), class_id=np.arange(n, dtype=np.int64) % 3,
                      class_name=[f"c{i}" for i in range(n)])


def _same(a, b):
    assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.confidence, b.confidence) and np.array_equal(a.class_id, b.class_id)
    assert a.class_name == b.class_name


@pytest.mark.parametrize("index, rows", [(2, [2]), (-1, [4]), (slice(1, 4), [1, 2, 3]),
                                         (slice(None, None, -2), [4, 2, 0]),
                                         ([3, 0, 3], [3, 0, 3]), (np.array([], dtype=int), []),
                                         (np.array([True, False, True, False, False]), [0, 2])])
def test_index_selects_the_same_rows_of_every_field(index, rows):
    d = _dets()
    sub = d[index]
    assert isinstance(sub, Detections) and len(sub) == len(rows)
    assert np.array_equal(sub.xyxy, d.xyxy[rows]) and np.array_equal(sub.mask, d.mask[rows])
    assert np.array_equal(sub.confidence, d.confidence[rows]) and np.array_equal(sub.class_id, d.class_id[rows])
    assert sub.class_name == [d.class_name[r] for r in rows]
    assert sub.mask.shape[1:] == d.mask.shape[1:]


def test_filter_by_confidence_and_cat_restores_the_whole():
    d = _dets(8)
    keep = d.confidence > 0.5
    assert 0 < keep.sum() < 8
    high = d[keep]
    assert (high.confidence > 0.5).all() and len(high) == keep.sum()
    _same(Detections.cat([d[:3], d[3:3], d[3:]]), d)
    _same(Detections.cat([Detections.empty(6, 7), d]), d)


def test_bad_index_and_cat_errors():
    d = _dets()
    with pytest.raises(IndexError):
        d[5]
    with pytest.raises(IndexError):
        d[np.array([True, False])]
    with pytest.raises(IndexError):
        d[np.array([0.5])]
    with pytest.raises(ValueError, match="different sizes"):
        Detections.cat([d, _dets(h=9)])
    with pytest.raises(ValueError):
        Detections.cat([])
