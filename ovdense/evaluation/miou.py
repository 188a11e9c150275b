"""Streaming semantic-segmentation metrics built on an exact integer confusion matrix.

The conventions follow mmseg's ``IoUMetric`` so numbers compare with published tables
(SCLIP, NACLIP, ProxyCLIP, ...):

* pixels whose ground truth equals ``ignore_index`` (255 by default) are skipped;
* per class ``IoU = TP / (TP + FP + FN)`` and ``Acc = TP / (TP + FN)``;
* a class absent from both the ground truth and the prediction has ``IoU = NaN`` and is left out
  of the mean (``np.nanmean``); a class predicted but never present in the ground truth has
  ``IoU = 0`` (it counts) and ``Acc = NaN``;
* a counted pixel predicted :data:`~ovdense.structures.UNLABELLED` (-1: no class claimed it) is
  a miss of its ground-truth class: it is in that class's ground-truth area and in no predicted
  area (mmseg's ``histc`` drops predictions outside ``[0, C)`` from the predicted areas only);
* ``aAcc`` is the overall pixel accuracy; ``mIoU`` and ``mAcc`` are the NaN-means;
* every value is reported in **percent** (mmseg multiplies by 100). mmseg also rounds to two
  decimals; :meth:`SemanticMetrics.rounded` does the same, :meth:`SemanticEvaluator.compute`
  keeps full precision.

``reduce_zero_label`` is a property of the dataset, not of the metric: the dataset readers in
:mod:`ovdense.datasets` apply it when loading the ground truth, as mmseg's ``LoadAnnotations``
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["SemanticEvaluator", "SemanticMetrics", "confusion_matrix", "metrics_from_confusion"]


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255, *, unlabelled: bool = False
) -> np.ndarray:
    """Return the int64 confusion matrix of one prediction.

    Rows index the ground-truth class, columns the predicted class. Ground-truth pixels equal to
    ``ignore_index`` or outside ``[0, num_classes)`` are skipped (mmseg's histogram ignores them
    as well).

    Args:
        pred: predicted class indices, any integer dtype, same shape as ``gt``.
        gt: ground-truth class indices, any integer dtype.
        num_classes: number of classes ``C``.
        ignore_index: ground-truth value to skip.
        unlabelled: if true the result is ``(C, C + 1)``: its last column counts the pixels of each
            ground-truth class predicted :data:`~ovdense.structures.UNLABELLED` (-1), which the
            metrics count as misses. If false it is ``(C, C)`` and such a prediction is an error.

    Raises:
        ValueError: on shape mismatch, non-integer input, or a prediction outside
            ``[0, num_classes)`` (other than -1 with ``unlabelled=True``).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    gt64 = gt.reshape(-1).astype(np.int64, copy=False)
    pred64 = pred.reshape(-1).astype(np.int64, copy=False)
    keep = (gt64 != ignore_index) & (gt64 >= 0) & (gt64 < num_classes)
    gt64 = gt64[keep]
    pred64 = pred64[keep]
    lowest = -1 if unlabelled else 0
    if pred64.size and pred64.min() < lowest:
        if pred64.min() == -1:
            raise ValueError("prediction has unlabelled pixels (-1): pass unlabelled=True to count them as misses")
        raise ValueError(f"prediction contains class {pred64.min()} outside [0, {num_classes})")
    if pred64.size and pred64.max() >= num_classes:
        bad = pred64[pred64 >= num_classes][0]
        raise ValueError(f"prediction contains class {bad} outside [0, {num_classes})")
    cols = num_classes + 1 if unlabelled else num_classes
    pred64 = np.where(pred64 < 0, num_classes, pred64)  # -1 -> the last column
    flat = np.bincount(gt64 * cols + pred64, minlength=num_classes * cols)
    return flat.reshape(num_classes, cols).astype(np.int64, copy=False)


def _with_unlabelled_column(matrix: np.ndarray) -> np.ndarray:
    """``(C, C)`` or ``(C, C + 1)`` counts -> ``(C, C + 1)`` int64 (a zero column added)."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.ndim != 2 or m.shape[1] not in (m.shape[0], m.shape[0] + 1):
        raise ValueError(f"a confusion matrix must be (C, C) or (C, C + 1), got {m.shape}")
    return m if m.shape[1] == m.shape[0] + 1 else np.pad(m, ((0, 0), (0, 1)))


@dataclass
class SemanticMetrics:
    """Metrics derived from a confusion matrix; every value is in percent (mmseg convention).

    Attributes:
        mIoU: NaN-mean of ``iou``.
        aAcc: overall pixel accuracy.
        mAcc: NaN-mean of ``acc``.
        iou: per-class IoU, NaN for classes absent from both GT and prediction.
        acc: per-class accuracy (recall), NaN for classes absent from the GT.
        class_names: names of the classes, if known.
        num_pixels: number of counted (non-ignored) ground-truth pixels.
        num_unlabelled: how many of those were predicted UNLABELLED (counted as misses).
    """

    mIoU: float
    aAcc: float
    mAcc: float
    iou: np.ndarray
    acc: np.ndarray
    class_names: list[str] = field(default_factory=list)
    num_pixels: int = 0
    num_unlabelled: int = 0

    def rounded(self, ndigits: int = 2) -> "SemanticMetrics":
        """Return a copy rounded like mmseg's printed tables (two decimals by default)."""
        return SemanticMetrics(
            mIoU=float(np.round(self.mIoU, ndigits)),
            aAcc=float(np.round(self.aAcc, ndigits)),
            mAcc=float(np.round(self.mAcc, ndigits)),
            iou=np.round(self.iou, ndigits),
            acc=np.round(self.acc, ndigits),
            class_names=list(self.class_names),
            num_pixels=self.num_pixels,
            num_unlabelled=self.num_unlabelled,
        )

    def to_dict(self) -> dict:
        """JSON-friendly dictionary (NaN becomes ``None``)."""

        def clean(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        names = self.class_names or [str(i) for i in range(len(self.iou))]
        return {
            "mIoU": clean(self.mIoU),
            "aAcc": clean(self.aAcc),
            "mAcc": clean(self.mAcc),
            "num_pixels": int(self.num_pixels),
            "num_unlabelled": int(self.num_unlabelled),
            "unit": "percent",
            "per_class": [
                {"index": i, "name": n, "IoU": clean(self.iou[i]), "Acc": clean(self.acc[i])}
                for i, n in enumerate(names)
            ],
        }

    def table(self) -> str:
        """Per-class table plus the summary line, two decimals, as plain text."""
        names = self.class_names or [str(i) for i in range(len(self.iou))]
        width = max([len("Class")] + [len(n) for n in names])
        lines = [f"{'Class':<{width}}  {'IoU':>7}  {'Acc':>7}", "-" * (width + 18)]
        for n, i, a in zip(names, self.iou, self.acc):
            lines.append(f"{n:<{width}}  {_fmt(i):>7}  {_fmt(a):>7}")
        lines.append("-" * (width + 18))
        lines.append(f"aAcc {_fmt(self.aAcc)}  mIoU {_fmt(self.mIoU)}  mAcc {_fmt(self.mAcc)}")
        return "\n".join(lines)


def _fmt(x: float) -> str:
    """Format a percentage with two decimals, ``nan`` for missing values."""
    return "nan" if np.isnan(x) else f"{x:.2f}"


def _nanmean(x: np.ndarray) -> float:
    """NaN-mean that returns NaN (without a warning) when every entry is NaN."""
    valid = ~np.isnan(x)
    return float(x[valid].mean()) if valid.any() else float("nan")


def metrics_from_confusion(
    matrix: np.ndarray, class_names: Sequence[str] | None = None
) -> SemanticMetrics:
    """Compute :class:`SemanticMetrics` (percent) from a ``(C, C)`` confusion matrix, or a
    ``(C, C + 1)`` one whose last column counts pixels predicted UNLABELLED (misses)."""
    m = _with_unlabelled_column(matrix)
    c = m.shape[0]
    tp = np.diag(m[:, :c]).astype(np.float64)
    gt_area = m.sum(axis=1).astype(np.float64)
    pred_area = m[:, :c].sum(axis=0).astype(np.float64)
    union = gt_area + pred_area - tp
    total = gt_area.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan) * 100.0
        acc = np.where(gt_area > 0, tp / gt_area, np.nan) * 100.0
    aacc = float(tp.sum() / total * 100.0) if total > 0 else float("nan")
    return SemanticMetrics(
        mIoU=_nanmean(iou) if iou.size else float("nan"),
        aAcc=aacc,
        mAcc=_nanmean(acc) if acc.size else float("nan"),
        iou=iou,
        acc=acc,
        class_names=list(class_names) if class_names is not None else [],
        num_pixels=int(total),
        num_unlabelled=int(m[:, c].sum()),
    )


class SemanticEvaluator:
    """Accumulates int64 counts over images; shards merge exactly.

    :attr:`counts` is ``(C, C + 1)``: the confusion matrix :attr:`matrix` (rows ground truth,
    columns prediction) and a last column :attr:`unlabelled` with the ground-truth pixels of each
    class that the prediction left UNLABELLED (-1), counted as misses as mmseg does.

    Example:
        >>> ev = SemanticEvaluator(num_classes=21)
        >>> for pred, gt in pairs:
        ...     ev.update(pred, gt)
        >>> print(ev.compute().mIoU)   # percent
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        """Create an empty evaluator for ``num_classes`` classes."""
        if num_classes <= 0:
            raise ValueError("num_classes must be positive")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(C, C)`` confusion matrix (a view of :attr:`counts`)."""
        return self.counts[:, : self.num_classes]

    @property
    def unlabelled(self) -> np.ndarray:
        """Per ground-truth class, the pixels predicted UNLABELLED (a view of :attr:`counts`)."""
        return self.counts[:, self.num_classes]

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one prediction/ground-truth pair; returns that pair's ``(C, C + 1)`` counts."""
        contribution = confusion_matrix(pred, gt, self.num_classes, self.ignore_index, unlabelled=True)
        self.counts += contribution
        return contribution

    def add_matrix(self, matrix: np.ndarray) -> None:
        """Add precomputed ``(C, C)`` or ``(C, C + 1)`` counts (e.g. restored from a checkpoint)."""
        counts = _with_unlabelled_column(matrix)
        if counts.shape != self.counts.shape:
            raise ValueError(f"matrix shape {np.shape(matrix)} is neither {self.matrix.shape} nor {self.counts.shape}")
        self.counts += counts

    def merge(self, other: "SemanticEvaluator") -> "SemanticEvaluator":
        """Add another evaluator's counts into this one (exact) and return ``self``."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge evaluators with different classes or ignore_index")
        self.counts += other.counts
        return self

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.counts[...] = 0

    def state_dict(self) -> dict:
        """Serializable state: the int64 ``(C, C + 1)`` counts and the settings."""
        return {
            "matrix": self.counts.copy(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state produced by :meth:`state_dict` (replaces the counts); a ``(C, C)``
        matrix from before unlabelled pixels were counted is accepted."""
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError("state was saved for a different number of classes")
        self.reset()
        self.add_matrix(state["matrix"])

    def compute(self) -> SemanticMetrics:
        """Metrics (percent, full precision) from everything seen so far."""
        return metrics_from_confusion(self.counts, self.class_names)
