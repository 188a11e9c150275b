"""ovdense.geometry: back-projection of instance masks on synthetic depth with known geometry."""
import numpy as np
import pytest

from ovdense.geometry import CameraIntrinsics, Instances3D, backproject
from ovdense.structures import Detections

H, W = 24, 32
K = CameraIntrinsics(fx=50.0, fy=40.0, cx=15.5, cy=11.0)


def box_mask(v0, v1, u0, u1):
    """Rows v0..v1-1, columns u0..u1-1."""
    m = np.zeros((H, W), bool)
    m[v0:v1, u0:u1] = True
    return m


def dets(*masks):
    return Detections.from_masks(np.stack(masks))


def pixel_coords(points, k=K):
    """Recover (v, u) integer pixel coordinates from camera points."""
    p = points.astype(np.float64)
    u = np.rint(p[:, 0] * k.fx / p[:, 2] + k.cx).astype(int)
    v = np.rint(p[:, 1] * k.fy / p[:, 2] + k.cy).astype(int)
    return set(zip(v.tolist(), u.tolist()))


def test_fronto_parallel_plane_exact():
    depth = np.full((H, W), 2.0)
    out = backproject(dets(np.ones((H, W), bool)), depth, K, depth_scale=1.0)
    assert isinstance(out, Instances3D) and len(out) == 1
    pts = out.points[0]
    assert pts.dtype == np.float32 and pts.shape == (H * W, 3)
    assert out.num_points.tolist() == [H * W]
    assert np.all(pts[:, 2] == 2.0)
    v, u = np.mgrid[0:H, 0:W]
    expected_x = ((u.ravel() - K.cx) * 2.0 / K.fx).astype(np.float32)
    expected_y = ((v.ravel() - K.cy) * 2.0 / K.fy).astype(np.float32)
    np.testing.assert_array_equal(pts[:, 0], expected_x)
    np.testing.assert_array_equal(pts[:, 1], expected_y)
    # pixel (cx, cy) would be the optical axis: x right, y down
    assert pts[:, 0].min() < 0 < pts[:, 0].max() and pts[:, 1].min() < 0 < pts[:, 1].max()


def _boxes_scene():
    depth = np.full((H, W), 5.0)  # background plane
    a = (2, 6, 3, 8)      # rows 2..5, cols 3..7 at 1.5 m
    b = (10, 20, 12, 30)  # rows 10..19, cols 12..29 at 3 m
    depth[a[0]:a[1], a[2]:a[3]] = 1.5
    depth[b[0]:b[1], b[2]:b[3]] = 3.0
    return depth, [(a, 1.5), (b, 3.0)]


def test_two_boxes_centroid_and_bbox():
    depth, boxes = _boxes_scene()
    out = backproject(dets(*[box_mask(*r) for r, _ in boxes]), depth, K, depth_scale=1.0)
    for i, ((v0, v1, u0, u1), z) in enumerate(boxes):
        assert out.num_points[i] == (v1 - v0) * (u1 - u0)
        mean_u, mean_v = (u0 + u1 - 1) / 2, (v0 + v1 - 1) / 2
        np.testing.assert_allclose(out.centroid[i], [(mean_u - K.cx) * z / K.fx, (mean_v - K.cy) * z / K.fy, z],
                                   rtol=0, atol=1e-5)
        expected_box = [(u0 - K.cx) * z / K.fx, (v0 - K.cy) * z / K.fy, z,
                        (u1 - 1 - K.cx) * z / K.fx, (v1 - 1 - K.cy) * z / K.fy, z]
        np.testing.assert_allclose(out.bbox3d[i], expected_box, rtol=0, atol=1e-5)


def test_uint16_millimetres_equal_float_metres():
    depth, boxes = _boxes_scene()
    d = dets(*[box_mask(*r) for r, _ in boxes], np.ones((H, W), bool))
    metres = backproject(d, depth, K, depth_scale=1.0)
    mm = backproject(d, np.rint(depth * 1000).astype(np.uint16), K)  # depth_scale 1000 by default
    for a, b in zip(metres.points, mm.points):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(metres.centroid, mm.centroid)
    np.testing.assert_array_equal(metres.bbox3d, mm.bbox3d)


def test_zero_and_nan_depth_ignored():
    depth = np.full((H, W), 2.0)
    depth[0, :] = 0.0
    depth[1, :5] = np.nan
    depth[2, 0] = -1.0
    out = backproject(dets(np.ones((H, W), bool)), depth, K, depth_scale=1.0)
    assert out.num_points[0] == H * W - W - 5 - 1
    assert np.all(out.points[0][:, 2] == 2.0)
    mm = np.full((H, W), 2000, np.uint16)
    mm[:, :3] = 0
    out = backproject(dets(np.ones((H, W), bool)), mm, K)
    assert out.num_points[0] == H * (W - 3)
    assert min(u for _, u in pixel_coords(out.points[0])) == 3


def test_stride_two_keeps_even_pixels_exactly():
    depth = np.linspace(1.0, 3.0, H * W).reshape(H, W)
    mask = box_mask(3, 17, 5, 26)
    out = backproject(dets(mask), depth, K, depth_scale=1.0, stride=2)
    expected = {(v, u) for v in range(3, 17) for u in range(5, 26) if v % 2 == 0 and u % 2 == 0}
    assert out.num_points[0] == len(expected)
    assert pixel_coords(out.points[0]) == expected
    # and the depths are those pixels' depths
    full = backproject(dets(mask), depth, K, depth_scale=1.0)
    fv, fu = np.nonzero(mask)
    keep = (fv % 2 == 0) & (fu % 2 == 0)
    np.testing.assert_array_equal(np.sort(out.points[0][:, 2]), np.sort(full.points[0][keep, 2]))


def test_min_max_depth_filter():
    depth, boxes = _boxes_scene()
    everything = np.ones((H, W), bool)
    out = backproject(dets(everything), depth, K, depth_scale=1.0, min_depth=1.0, max_depth=4.0)
    n_a, n_b = 4 * 5, 10 * 18
    assert out.num_points[0] == n_a + n_b
    assert set(np.unique(out.points[0][:, 2]).tolist()) == {1.5, 3.0}
    out = backproject(dets(everything), depth, K, depth_scale=1.0, min_depth=2.0)
    assert out.num_points[0] == H * W - n_a
    out = backproject(dets(everything), depth, K, depth_scale=1.0, max_depth=3.0)  # inclusive
    assert out.num_points[0] == n_a + n_b


def test_instance_without_valid_depth():
    depth = np.full((H, W), 2.0)
    depth[:4, :4] = 0.0
    out = backproject(dets(box_mask(0, 4, 0, 4), box_mask(5, 6, 5, 6), np.zeros((H, W), bool)), depth, K,
                      depth_scale=1.0)
    assert out.num_points.tolist() == [0, 1, 0]
    assert out.points[0].shape == (0, 3) and out.points[0].dtype == np.float32
    assert np.isnan(out.centroid[0]).all() and np.isnan(out.bbox3d[0]).all()
    assert np.isnan(out.centroid[2]).all()
    assert np.isfinite(out.centroid[1]).all()


def test_empty_detections():
    out = backproject(Detections.empty(H, W), np.ones((H, W)), K, depth_scale=1.0)
    assert len(out) == 0 and out.centroid.shape == (0, 3) and out.bbox3d.shape == (0, 6)


def test_intrinsics_from_matrix():
    k = CameraIntrinsics.from_matrix([[50, 0, 15.5], [0, 40, 11], [0, 0, 1]])
    assert k == K
    with pytest.raises(ValueError, match="3x3"):
        CameraIntrinsics.from_matrix(np.eye(4))
    with pytest.raises(ValueError, match="positive"):
        CameraIntrinsics(0.0, 40.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        CameraIntrinsics.from_matrix([[50, 0, 1], [0, -1, 1], [0, 0, 1]])


def test_errors():
    d = dets(np.ones((H, W), bool))
    depth = np.ones((H, W))
    with pytest.raises(ValueError, match="masks are"):
        backproject(d, np.ones((H + 1, W)), K)
    with pytest.raises(ValueError, match="2D"):
        backproject(d, np.ones((H, W, 1)), K)
    with pytest.raises(ValueError, match="masks"):
        backproject(Detections(xyxy=np.zeros((1, 4), np.float32), mask=None, confidence=np.ones(1),
                               class_id=np.zeros(1, np.int64), class_name=["a"]), depth, K)
    for stride in (0, -1, 1.5):
        with pytest.raises(ValueError, match="stride"):
            backproject(d, depth, K, stride=stride)
    with pytest.raises(ValueError, match="depth_scale"):
        backproject(d, depth, K, depth_scale=0)
    with pytest.raises(ValueError, match="min_depth"):
        backproject(d, depth, K, min_depth=3.0, max_depth=1.0)


def test_exported_at_top_level():
    import ovdense

    assert ovdense.CameraIntrinsics is CameraIntrinsics and ovdense.backproject is backproject
    assert {"CameraIntrinsics", "backproject"} <= set(ovdense.__all__)
