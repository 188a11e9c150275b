"""3D from depth: back-project instance masks through a pinhole camera.

Camera frame (as ROS optical frames and OpenCV): x right, y down, z forward, metres.
Pixel ``(u, v)`` (column, row) has its centre at the integer coordinates ``u, v``, so a pixel
with depth ``z`` goes to ``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, List

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .structures import Detections


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (no distortion: pass a rectified / registered depth image)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ValueError(f"CameraIntrinsics.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"CameraIntrinsics: fx and fy must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_matrix(cls, K) -> "CameraIntrinsics":
        """From a 3x3 camera matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (any array-like,
        e.g. ROS ``CameraInfo.k`` reshaped to 3x3). Skew is not supported and must be 0."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"camera matrix must be 3x3, got shape {K.shape}")
        if K[0, 1] != 0:
            raise ValueError(f"camera matrix has skew K[0, 1] = {K[0, 1]}, which is not supported")
        return cls(fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]))


@dataclass
class Instances3D:
    """Per-instance 3D points of :func:`backproject`, in the camera frame (metres).

    Attributes:
        points: ``N`` float32 arrays ``(Ni, 3)`` of ``x, y, z``, row-major pixel order.
        centroid: ``(N, 3)`` float64 mean of each instance's points (NaN with no valid point).
        bbox3d: ``(N, 6)`` float64 axis-aligned ``x_min, y_min, z_min, x_max, y_max, z_max``
            (NaN with no valid point).
        num_points: ``(N,)`` int64 number of valid points.
    """

    points: List[np.ndarray]
    centroid: np.ndarray
    bbox3d: np.ndarray
    num_points: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def backproject(detections: "Detections", depth: np.ndarray, intrinsics: CameraIntrinsics,
                depth_scale: float = 1000.0, min_depth: float = 0.0, max_depth: float = math.inf,
                stride: int = 1) -> Instances3D:
    """3D points of every instance mask from a depth image registered to the masks.

    Args:
        detections: instances with masks ``(N, H, W)``.
        depth: ``(H, W)`` depth image; metres = ``depth / depth_scale`` (uint16 millimetres
            with ``depth_scale=1000``, float metres with ``depth_scale=1``).
        intrinsics: the depth image's pinhole intrinsics.
        min_depth, max_depth: metres; depths outside ``[min_depth, max_depth]`` are ignored,
            as are zero, negative and NaN / infinite depths.
        stride: keep only pixels with ``v % stride == 0`` and ``u % stride == 0``.

    Raises:
        ValueError: detections without masks, depth not 2D or of another size than the
            masks, bad intrinsics, ``stride < 1``, ``depth_scale <= 0``, ``min_depth > max_depth``.
    """
    if detections.mask is None:
        raise ValueError("backproject needs detections with masks (these are box-only)")
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2D (H, W) array, got shape {depth.shape}")
    masks = np.asarray(detections.mask, dtype=bool)
    if depth.shape != masks.shape[1:]:
        raise ValueError(f"depth is {depth.shape[0]}x{depth.shape[1]} but the masks are "
                         f"{masks.shape[1]}x{masks.shape[2]}: register / resize depth to the image first")
    if not isinstance(intrinsics, CameraIntrinsics):
        raise ValueError(f"intrinsics must be a CameraIntrinsics, got {type(intrinsics).__name__}")
    if not intrinsics.fx > 0 or not intrinsics.fy > 0:  # guards an object built around __post_init__
        raise ValueError(f"fx and fy must be positive, got fx={intrinsics.fx}, fy={intrinsics.fy}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if not depth_scale > 0 or not math.isfinite(depth_scale):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale!r}")
    if min_depth > max_depth:
        raise ValueError(f"min_depth ({min_depth}) is above max_depth ({max_depth})")

    stride = int(stride)
    z_all = depth[::stride, ::stride].astype(np.float64) / float(depth_scale)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z_all) & (z_all > 0) & (z_all >= min_depth) & (z_all <= max_depth)
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy

    n = len(masks)
    points: List[np.ndarray] = []
    centroid = np.full((n, 3), np.nan, dtype=np.float64)
    bbox3d = np.full((n, 6), np.nan, dtype=np.float64)
    num_points = np.zeros(n, dtype=np.int64)
    for i in range(n):
        rows, cols = np.nonzero(masks[i, ::stride, ::stride] & valid)
        z = z_all[rows, cols]
        u = cols.astype(np.float64) * stride
        v = rows.astype(np.float64) * stride
        xyz = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1)
        points.append(xyz.astype(np.float32))
        num_points[i] = len(xyz)
        if len(xyz):
            centroid[i] = xyz.mean(axis=0)
            bbox3d[i, :3] = xyz.min(axis=0)
            bbox3d[i, 3:] = xyz.max(axis=0)
    return Instances3D(points=points, centroid=centroid, bbox3d=bbox3d, num_points=num_points)
