"""Evaluation charts drawn with matplotlib (the optional ``[report]`` extra, imported lazily).

Every function writes one PNG and returns its path. Figures are made with
``matplotlib.figure.Figure`` directly (no pyplot, no global state, no GUI backend), so they
are safe in worker threads and on headless machines.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["require_matplotlib", "bar_chart", "iou_bar_chart", "confusion_image", "confusion_figsize",
           "pr_curve_image", "mean_pr_curve", "curves_from_precision"]

PathLike = Union[str, os.PathLike]


def require_matplotlib():
    """``matplotlib.figure.Figure``, or an ImportError that says how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the evaluation report's charts need matplotlib: pip install 'ovdense[report]' "
                          "(or pip install matplotlib)") from exc
    return Figure


def _save(fig, path: PathLike) -> str:
    from ovdense.io.writers import atomic_path

    path = os.fspath(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor="white")
    return path


def _short(name: str, n: int = 28) -> str:
    name = str(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def bar_chart(values: Sequence[float], names: Sequence[str], out_path: PathLike, *, mean: Optional[float] = None,
              mean_label: str = "mean", xlabel: str = "", title: str = "", xmax: Optional[float] = None,
              value_format: str = "{:.1f}", columns: Optional[int] = None) -> str:
    """Horizontal bars sorted from best to worst, NaN values left out (and counted in the title),
    with a dashed line at ``mean`` (bars below it in orange).

    The height grows with the bars (0.22 in each); above 40 bars they flow into ``columns``
    side-by-side panels (default: one per 50 bars, at most 3), so 150 classes stay one screen
    tall-ish (2,250 x 1,230 px) instead of 3,400 px.
    """
    Figure = require_matplotlib()
    vals = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(vals)
    order = [int(i) for i in np.argsort(-np.where(keep, vals, -np.inf), kind="stable") if keep[i]]
    n = len(order)
    cols = columns or (1 if n <= 40 else min(3, int(np.ceil(n / 50))))
    per = max(int(np.ceil(n / cols)), 1)
    fig = Figure(figsize=(7.5 * cols, 1.3 + 0.22 * per), dpi=100, layout="constrained")
    top = xmax if xmax is not None else (float(vals[order].max()) * 1.1 if n and vals[order].max() > 0 else 1.0)
    missing = int((~keep).sum())
    for k in range(cols):
        ax = fig.add_subplot(1, cols, k + 1)
        chunk = order[k * per:(k + 1) * per]
        y = np.arange(len(chunk))
        v = vals[chunk] if chunk else np.zeros(0)
        colours = ["#4878a8" if mean is None or np.isnan(mean) or x >= mean else "#d0704c" for x in v]
        ax.barh(y, v, color=colours, height=0.75)
        ax.set_yticks(y, [_short(names[i]) for i in chunk], fontsize=8 if per > 40 else 9)
        ax.set_xlim(0, top)
        ax.set_ylim(per - 0.5, -0.5)
        for yi, x in zip(y, v):
            ax.text(min(x, top) + top * 0.01, yi, value_format.format(x), va="center", fontsize=7, color="#333333")
        if mean is not None and not np.isnan(mean):
            ax.axvline(mean, color="#b03030", linestyle="--", linewidth=1.2)
            ax.text(mean, -0.6, f" {mean_label} {value_format.format(mean)}", color="#b03030", fontsize=9,
                    va="bottom", ha="left")
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        if k == 0:
            full_title = title + (f"  ({missing} without pixels, not shown)" if missing else "")
            ax.set_title(full_title, fontsize=10, loc="left", pad=14 if mean is not None else 6)
    return _save(fig, out_path)


def iou_bar_chart(iou: Sequence[float], class_names: Sequence[str], out_path: PathLike,
                  miou: Optional[float] = None, title: str = "Per-class IoU") -> str:
    """Per-class IoU (percent) sorted, with the mIoU line (the NaN-mean of ``iou`` if not given);
    bars below the mean are orange."""
    vals = np.asarray(iou, dtype=np.float64)
    if miou is None:
        miou = float(np.nanmean(vals)) if (~np.isnan(vals)).any() else None
    return bar_chart(vals, class_names, out_path, mean=miou, mean_label="mIoU", xlabel="IoU (%)",
                     title=title, xmax=100.0)


def confusion_figsize(num_classes: int) -> Tuple[float, float, float]:
    """``(side inches, tick font size, cell inches)`` of the confusion image for ``num_classes``.

    Cells are 0.42 in up to 25 classes and shrink as ``1/sqrt(C)`` after that (150 classes:
    0.17 in, a 2,700-pixel image at 100 dpi), so the image grows with the classes, but slower.
    """
    c = max(int(num_classes), 1)
    cell = 0.42 if c <= 25 else max(0.42 * (25 / c) ** 0.5, 0.12)
    font = float(np.clip(cell * 72 * 0.55, 4.5, 9))
    return 2.8 + cell * c, font, cell


def confusion_image(matrix: np.ndarray, class_names: Sequence[str], out_path: PathLike, *,
                    title: str = "Confusion matrix (rows: ground truth, normalised; columns: prediction)",
                    annotate: Optional[bool] = None) -> str:
    """Row-normalised confusion matrix (percent of each ground-truth class) as a heat map.

    Rows are ground truth, columns predictions (as ``confusion.npy`` and mmseg's tool). Rows
    without pixels stay blank. Cells get their value written in when there are at most 30
    classes (``annotate``). Class names label both axes.
    """
    Figure = require_matplotlib()
    m = np.asarray(matrix, dtype=np.float64)
    c = m.shape[0]
    if m.shape != (c, c) or len(class_names) != c:
        raise ValueError(f"need a square matrix and one name per class, got {m.shape} and {len(class_names)}")
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(rows > 0, m / rows * 100.0, np.nan)
    side, fsize, _ = confusion_figsize(c)
    fig = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    from matplotlib.colors import PowerNorm

    # square-root colour scale: a 2 % confusion is visible next to a 90 % diagonal
    im = ax.imshow(np.ma.masked_invalid(norm), cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=100),
                   interpolation="nearest")
    labels = [_short(n, 22) for n in class_names]
    ax.set_xticks(np.arange(c), labels, rotation=90, fontsize=fsize)
    ax.set_yticks(np.arange(c), labels, fontsize=fsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title(title, fontsize=10, loc="left")
    if annotate is None:
        annotate = c <= 30
    if annotate:
        for i in range(c):
            for j in range(c):
                v = norm[i, j]
                if np.isnan(v) or v < 0.5:
                    continue
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=max(fsize - 1.5, 5),
                        color="white" if v > 35 else "#222222")
    cb = fig.colorbar(im, ax=ax, shrink=0.6, pad=0.01)
    cb.set_ticks([0, 1, 5, 10, 25, 50, 75, 100])
    cb.set_label("% of the GT class (square-root scale)", fontsize=8)
    return _save(fig, out_path)


def mean_pr_curve(precision: np.ndarray) -> Tuple[np.ndarray, float]:
    """Mean precision over categories at each recall point, and AP, from pycocotools'
    ``precision[R, K]`` (``-1`` = a category without ground truth, left out)."""
    p = np.asarray(precision, dtype=np.float64)
    valid = (p > -1).all(axis=0)
    if not valid.any():
        return np.full(p.shape[0], np.nan), float("nan")
    curve = p[:, valid].mean(axis=1)
    return curve, float(curve.mean())


def pr_curve_image(curves: Mapping[str, Mapping[str, np.ndarray]], recall: np.ndarray, out_path: PathLike, *,
                   per_category: Optional[Mapping[str, Tuple[Sequence[str], np.ndarray]]] = None,
                   title: str = "Precision-recall (mean over categories, area all)") -> str:
    """One panel per IoU type with the mean precision-recall curves (one per IoU threshold).

    Args:
        curves: ``{iou_type: {label: precision[R, K]}}`` where ``label`` names the IoU threshold
            (e.g. ``"IoU 0.50"``) and ``precision`` is pycocotools' array at that threshold,
            area ``all`` and the largest ``maxDets``.
        recall: the ``R`` recall points (``COCOeval.params.recThrs``).
        per_category: optional ``{iou_type: (names, precision[R, K])}`` drawn as thin grey
            lines behind the mean (at most 30 categories are drawn).
    """
    Figure = require_matplotlib()
    types = list(curves)
    n = max(len(types), 1)
    fig = Figure(figsize=(5.2 * n, 4.6), dpi=100, layout="constrained")
    colours = ["#1f5fa8", "#d0602c", "#3a9a4a", "#8a3aa8"]
    for k, t in enumerate(types or [""]):
        ax = fig.add_subplot(1, n, k + 1)
        if per_category and t in per_category:
            _, pc = per_category[t]
            pc = np.asarray(pc)
            for j in range(min(pc.shape[1], 30)):
                if (pc[:, j] > -1).all():
                    ax.plot(recall, pc[:, j], color="#bbbbbb", linewidth=0.7)
        for i, (label, prec) in enumerate((curves.get(t) or {}).items()):
            curve, ap = mean_pr_curve(prec)
            if np.isnan(ap):
                continue
            ax.plot(recall, curve, color=colours[i % len(colours)], linewidth=2.0,
                    label=f"{label}: AP {ap:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        ax.set_title(t or "no IoU type", fontsize=11)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes, color="#888888")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_path)


def curves_from_precision(precision: np.ndarray, iou_thrs: Sequence[float],
                          wanted: Sequence[float] = (0.5, 0.75)) -> Dict[str, np.ndarray]:
    """``{"IoU 0.50": precision[R, K], ...}`` from pycocotools' full ``precision[T, R, K, A, M]``
    (area ``all``, largest ``maxDets``)."""
    p = np.asarray(precision)
    thrs = np.asarray(iou_thrs, dtype=np.float64)
    out = {}
    for w in wanted:
        hit = np.flatnonzero(np.isclose(thrs, w))
        if hit.size:
            out[f"IoU {w:.2f}"] = p[hit[0], :, :, 0, -1]
    return out
