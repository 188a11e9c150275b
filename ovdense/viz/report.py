"""Static evaluation reports: PNG pictures plus one ``report.html`` that links them.

The HTML needs no JavaScript and no network: inline CSS, relative links to files in the
report folder (and to the run's ``metrics.json`` next to it when it exists).

Layout of a semantic report folder::

    report.html            metrics table, charts, worst images, per-class table
    per_class_iou.png      sorted per-class IoU bars with the mIoU line
    confusion.png          row-normalised confusion matrix
    worst/NN_<id>.png      image | ground truth | prediction of the worst images by image mIoU
    per_image.csv          image id, image mIoU, pixel accuracy (every image of the run)

A COCO report adds ``pr_curves.png`` and ``per_category_ap.png`` (and the semantic pictures
when the run computed mIoU).
"""
from __future__ import annotations

import csv
import heapq
import html
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .colors import class_colors
from .draw import draw_overlay, legend_entries, render_legend, save_image, side_by_side

__all__ = ["WorstImages", "WorstImage", "image_scores", "render_triptych", "write_semantic_report",
           "write_coco_report", "html_links"]

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------- worst N
def resolve_report_dir(report: bool, report_dir: Optional[Union[str, Path]],
                       out_dir: Optional[Union[str, Path]]) -> Optional[Path]:
    """Where an evaluation writes its report (None: no report), checked before any image is
    predicted: ``report_dir`` implies a report; the default is ``out_dir/report``; charts need
    matplotlib, so its absence fails here."""
    if report_dir is None and not report:
        return None
    if report_dir is None and out_dir is None:
        raise ValueError("report needs out_dir or report_dir")
    from .charts import require_matplotlib

    require_matplotlib()
    return Path(report_dir) if report_dir is not None else Path(out_dir) / "report"


def image_scores(matrix: np.ndarray) -> Tuple[float, float]:
    """``(mIoU, pixel accuracy)`` in percent of one image's confusion matrix.

    The image mIoU averages the classes present in its ground truth or its prediction (NaN
    when the image has no counted pixel), as the dataset mIoU does over the whole set. A
    ``(C, C + 1)`` matrix's last column (pixels predicted UNLABELLED) counts as misses.
    """
    m = np.asarray(matrix, dtype=np.float64)
    c = m.shape[0]
    tp = np.diag(m[:, :c])
    union = m[:, :c].sum(0) + m.sum(1) - tp
    total = m.sum()
    present = union > 0
    miou = float((tp[present] / union[present]).mean() * 100) if present.any() else float("nan")
    acc = float(tp.sum() / total * 100) if total > 0 else float("nan")
    return miou, acc


@dataclass
class WorstImage:
    """One kept image: its score, id, source paths and (optionally) its predicted label map."""

    score: float
    image_id: str
    image_path: Optional[str] = None
    gt_path: Any = None
    prediction: Optional[np.ndarray] = field(default=None, repr=False)
    picture: Optional[str] = None  # file written for it, relative to the report folder


class WorstImages:
    """The ``k`` lowest-scoring images seen so far, in bounded memory.

    ``offer`` keeps an image only while it is among the ``k`` worst, so at most ``k``
    predictions are held at any time; an image with a NaN score is never kept. Ties keep the
    image seen first.
    """

    def __init__(self, k: int = 8) -> None:
        self.k = max(int(k), 0)
        self._heap: List[Tuple[float, int, WorstImage]] = []  # max-heap on score via negation
        self._count = itertools.count()

    def offer(self, score: float, image_id: str, image_path: Optional[str] = None, gt_path: Any = None,
              prediction: Optional[np.ndarray] = None) -> bool:
        """Consider one image; returns whether it is kept (for now)."""
        if self.k == 0 or score is None or math.isnan(score):
            return False
        n = next(self._count)
        if len(self._heap) >= self.k and score >= -self._heap[0][0]:
            return False
        keep = None if prediction is None else np.array(prediction, copy=True)
        item = (-float(score), -n, WorstImage(float(score), str(image_id), image_path, gt_path, keep))
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)
        return True

    def __len__(self) -> int:
        return len(self._heap)

    def items(self) -> List[WorstImage]:
        """The kept images, worst first (ties: first seen first)."""
        return [w for _, _, w in sorted(self._heap, key=lambda t: (-t[0], -t[1]))]


def _shrink(image: np.ndarray, maps: Sequence[np.ndarray], max_side: int, min_side: int = 256):
    """Image (area-averaged) and label maps (nearest) scaled so the longer side is <= ``max_side``;
    small images are enlarged by a whole factor (pixel replication) to reach ``min_side``."""
    h, w = image.shape[:2]
    if max(h, w) < min_side:
        k = int(np.ceil(min_side / max(h, w)))
        grow = lambda a: np.repeat(np.repeat(np.asarray(a), k, axis=0), k, axis=1)  # noqa: E731
        return grow(image), [grow(m) for m in maps]
    f = max_side / max(h, w)
    if f >= 1:
        return image, list(maps)
    import cv2

    nh, nw = max(int(round(h * f)), 1), max(int(round(w * f)), 1)
    rows = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
    small = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=cv2.INTER_AREA)
    return small, [np.asarray(m)[rows][:, cols] for m in maps]


def render_triptych(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, class_names: Sequence[str], *,
                    has_background: bool = False, title: str = "", max_side: int = 640) -> np.ndarray:
    """``image | ground truth | prediction`` with contours and one legend of the classes in
    either map. Ground-truth pixels outside the classes (ignore, 255) are hatched. Panels are
    shrunk so their longer side is at most ``max_side`` pixels (a report page stays light), and
    images under 256 pixels are enlarged by a whole factor."""
    image, (gt, pred) = _shrink(np.asarray(image), [gt, pred], max_side)
    c = len(class_names)
    cols = class_colors(c, has_background)
    gt_panel = draw_overlay(image, gt, class_names, has_background=has_background, legend=False,
                            unlabelled="hatch", colors=cols)
    pred_panel = draw_overlay(image, pred, class_names, has_background=has_background, legend=False,
                              colors=cols)
    both = np.concatenate([np.asarray(gt).ravel(), np.asarray(pred).ravel()])[None]
    entries = legend_entries(both, class_names, has_background)
    h, w = gt_panel.shape[:2]
    size = int(np.clip(round(max(h, w) / 22), 12, 28))
    legend = render_legend(entries, cols, h, size, notes=["share of GT + prediction"] if entries else ())
    titles = ["image", "ground truth", "prediction", ""]
    out = side_by_side([image, gt_panel, pred_panel, legend], titles=titles)
    if title:
        from .draw import _title_bar

        out = _title_bar(out, title, size)
    return out


# --------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;
color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;
padding-bottom:4px}.sub{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.big td{font-size:16px;padding:6px 14px}img{max-width:100%;border:1px solid #eee}
figure{margin:10px 0}figcaption{font-size:12px;color:#555}.low{color:#b03030}
.grid img{image-rendering:pixelated}details{margin:8px 0}summary{cursor:pointer;color:#235}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, (float, np.floating)) else _esc(x)


def _page(title: str, subtitle: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_esc(title)}</h1><div class=\"sub\">{subtitle}</div>\n" + "\n".join(body) + "\n</body></html>\n")


def _rel(target: PathLike, folder: Path) -> str:
    return Path(os.path.relpath(os.fspath(target), folder)).as_posix()


def _files_section(folder: Path, files: Iterable[Optional[PathLike]]) -> str:
    links = []
    for f in files:
        if f is not None and Path(f).is_file():
            rel = _rel(f, folder)
            links.append(f"<a href=\"{_esc(rel)}\">{_esc(Path(f).name)}</a>")
    return ("<h2>Files</h2><p>" + " · ".join(links) + "</p>") if links else ""


def _write_html(path: Path, text: str) -> str:
    from ovdense.io.writers import atomic_path

    with atomic_path(str(path)) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return str(path)


def html_links(html_text: str) -> List[str]:
    """Every ``src``/``href`` value in ``html_text`` (for checking a report's references)."""
    return re.findall(r'(?:src|href)="([^"]*)"', html_text)


def _stamp() -> str:
    import ovdense

    v = getattr(ovdense, "__version__", "?")
    return f"ovdense {v} · {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"


def _semantic_sections(folder: Path, metrics: Any, confusion: Optional[np.ndarray], class_names: Sequence[str],
                       top_confusions: int = 12) -> List[str]:
    """Charts and tables of semantic metrics (``metrics``: a SemanticMetrics or alike)."""
    from .charts import confusion_image, iou_bar_chart

    body = [
        "<table class=\"big\"><tr><th>mIoU</th><th>mAcc</th><th>aAcc</th><th>classes</th><th>pixels</th></tr>"
        f"<tr><td>{_num(metrics.mIoU)}</td><td>{_num(metrics.mAcc)}</td><td>{_num(metrics.aAcc)}</td>"
        f"<td>{len(class_names)}</td><td>{int(getattr(metrics, 'num_pixels', 0)):,}</td></tr></table>"
        "<div class=\"sub\">percent, mmseg conventions (classes absent from both ground truth and prediction "
        "are left out of the means)</div>"]
    iou = np.asarray(metrics.iou, dtype=np.float64)
    bars = iou_bar_chart(iou, class_names, folder / "per_class_iou.png", miou=metrics.mIoU)
    bars_src = _esc(_rel(bars, folder))
    body.append(f"<h2>Per-class IoU</h2><figure><a href=\"{bars_src}\"><img src=\"{bars_src}\" "
                "alt=\"per-class IoU\"></a></figure>")
    if confusion is not None:
        conf = confusion_image(confusion, class_names, folder / "confusion.png")
        conf_src = _esc(_rel(conf, folder))
        body.append(f"<h2>Confusion matrix</h2><figure><a href=\"{conf_src}\"><img src=\"{conf_src}\" "
                    "alt=\"confusion matrix\"></a><figcaption>rows: ground truth (each row sums to 100 %), "
                    "columns: prediction</figcaption></figure>")
        body.append(_top_confusions(np.asarray(confusion), class_names, top_confusions))
    acc = np.asarray(metrics.acc, dtype=np.float64)
    rows = "".join(
        f"<tr><td class=\"l\">{_esc(n)}</td><td{' class=low' if not np.isnan(i) and i < metrics.mIoU else ''}>"
        f"{_num(float(i))}</td><td>{_num(float(a))}</td></tr>"
        for n, i, a in zip(class_names, iou, acc))
    body.append("<details><summary>Per-class table</summary><table><tr><th class=\"l\">class</th>"
                f"<th>IoU</th><th>Acc</th></tr>{rows}</table></details>")
    return body


def _top_confusions(matrix: np.ndarray, class_names: Sequence[str], k: int) -> str:
    m = matrix.astype(np.float64)
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(rows > 0, m / rows * 100, 0.0)
    np.fill_diagonal(frac, 0.0)
    flat = np.argsort(-frac, axis=None, kind="stable")[:k]
    pairs = [(int(i // m.shape[1]), int(i % m.shape[1])) for i in flat]
    pairs = [(g, p) for g, p in pairs if frac[g, p] > 0]
    if not pairs:
        return ""
    body = "".join(f"<tr><td class=\"l\">{_esc(class_names[g])}</td><td class=\"l\">{_esc(class_names[p])}</td>"
                   f"<td>{frac[g, p]:.1f}</td><td>{int(m[g, p]):,}</td></tr>" for g, p in pairs)
    return ("<p>Most confused (share of the ground-truth class's pixels predicted as another class):</p>"
            "<table><tr><th class=\"l\">ground truth</th><th class=\"l\">predicted as</th><th>%</th>"
            f"<th>pixels</th></tr>{body}</table>")


def _worst_section(folder: Path, worst: Sequence[WorstImage]) -> str:
    figs = [f"<figure><img src=\"{_esc(w.picture)}\" alt=\"{_esc(w.image_id)}\"><figcaption>"
            f"{_esc(w.image_id)}: image mIoU {w.score:.1f}</figcaption></figure>"
            for w in worst if w.picture and (folder / w.picture).is_file()]
    if not figs:
        return ""
    return (f"<h2>Worst {len(figs)} images by image mIoU</h2><div class=\"sub\">image | ground truth "
            "(hatched: ignored pixels) | prediction</div><div class=\"grid\">" + "".join(figs) + "</div>")


def write_worst_pictures(folder: PathLike, worst: Sequence[WorstImage], class_names: Sequence[str],
                         load_image, load_gt, has_background: bool = False) -> List[WorstImage]:
    """Render ``worst/NN_<id>.png`` triptychs; ``load_image(path) -> RGB``, ``load_gt(gt_path) -> labels``.

    Sets ``picture`` on each item (relative to ``folder``) and returns the items drawn.
    """
    folder = Path(folder)
    done = []
    for rank, w in enumerate(worst, start=1):
        if w.prediction is None or w.image_path is None:
            continue
        try:
            image = load_image(w.image_path)
            gt = np.asarray(load_gt(w.gt_path))
        except (OSError, ValueError):
            continue  # moved or unreadable since it was evaluated: the page lists the others
        pred = np.asarray(w.prediction)
        if image.shape[:2] != pred.shape or gt.shape != pred.shape:
            continue  # the image on disk no longer matches what was evaluated
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", w.image_id)[-80:]
        rel = f"worst/{rank:02d}_{safe}.png"
        pic = render_triptych(image, gt, pred, class_names, has_background=has_background,
                              title=f"{w.image_id}   image mIoU {w.score:.1f}")
        save_image(folder / rel, pic)
        w.picture = rel
        done.append(w)
    return done


def write_semantic_report(report_dir: PathLike, metrics: Any, confusion: Optional[np.ndarray] = None, *,
                          worst: Sequence[WorstImage] = (), per_image: Sequence[Tuple[str, float, float]] = (),
                          title: str = "Semantic segmentation report", info: Optional[Mapping[str, Any]] = None,
                          files: Sequence[PathLike] = ()) -> str:
    """Write the semantic report's charts, ``per_image.csv`` and ``report.html``; returns its path.

    Args:
        report_dir: folder to write into (made if needed).
        metrics: :class:`~ovdense.evaluation.miou.SemanticMetrics` (``mIoU``, ``mAcc``, ``aAcc``,
            ``iou``, ``acc``, ``class_names``; percent).
        confusion: ``(C, C)`` int confusion matrix (rows ground truth), or ``None``.
        worst: worst images whose pictures are already drawn (:func:`write_worst_pictures`).
        per_image: ``(image_id, mIoU, pixel accuracy)`` of every image, written to ``per_image.csv``.
        title: page heading.
        info: extra key/value lines shown under the heading (dataset, images, config...).
        files: other files of the run to link (links only to files that exist).
    """
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(metrics.class_names) or [str(i) for i in range(len(metrics.iou))]
    body = _semantic_sections(folder, metrics, confusion, names)
    worst_html = _worst_section(folder, worst)
    if worst_html:
        body.insert(2, worst_html)
    extra = []
    if per_image:
        csv_path = folder / "per_image.csv"
        from ovdense.io.writers import atomic_path

        with atomic_path(str(csv_path)) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                wr = csv.writer(fh)
                wr.writerow(["image_id", "mIoU", "aAcc"])
                for image_id, miou, acc in per_image:
                    wr.writerow([image_id, "" if math.isnan(miou) else f"{miou:.3f}",
                                 "" if math.isnan(acc) else f"{acc:.3f}"])
        extra.append(csv_path)
    body.append(_files_section(folder, list(files) + extra))
    sub = " · ".join(f"{_esc(k)}: {_esc(v)}" for k, v in (info or {}).items())
    sub = (sub + "<br>" if sub else "") + _esc(_stamp())
    return _write_html(folder / "report.html", _page(title, sub, body))


def write_coco_report(report_dir: PathLike, result: Any, *, pr: Optional[Mapping[str, Any]] = None,
                      confusion: Optional[np.ndarray] = None, title: str = "COCO evaluation report",
                      info: Optional[Mapping[str, Any]] = None, files: Sequence[PathLike] = ()) -> str:
    """Write the COCO report (AP table, PR curves, per-category AP, semantic part); returns its path.

    Args:
        report_dir: folder to write into.
        result: :class:`~ovdense.evaluation.coco.CocoEvalResult` (``metrics`` per IoU type with
            ``AP``, ``AP50``..., ``per_category``; ``semantic``; ``num_images``...).
        pr: ``{iou_type: (precision[T, R, K, A, M], iou_thrs, rec_thrs)}`` from ``COCOeval.eval``
            and ``COCOeval.params``; curves at IoU 0.5 and 0.75 are drawn.
        confusion: the semantic part's confusion matrix (when the run computed mIoU).
        title, info, files: as :func:`write_semantic_report`.
    """
    from .charts import bar_chart, curves_from_precision, pr_curve_image

    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = "".join(f"<tr><td class=\"l\">{_esc(t)}</td>" + "".join(f"<td>{_num(getattr(m, k), 3)}</td>" for k in keys)
                   + "</tr>" for t, m in result.metrics.items())
    body = [f"<table class=\"big\"><tr><th class=\"l\">IoU type</th>{head}</tr>{rows}</table>"
            "<div class=\"sub\">fractions as pycocotools reports them (−1: nothing to average)</div>"]
    if pr:
        curves, per_cat, recall = {}, {}, None
        for t, (precision, iou_thrs, rec_thrs) in pr.items():
            curves[t] = curves_from_precision(precision, iou_thrs)
            recall = np.asarray(rec_thrs)
            if "IoU 0.50" in curves[t]:
                per_cat[t] = ([], curves[t]["IoU 0.50"])
        if recall is not None:
            img = pr_curve_image(curves, recall, folder / "pr_curves.png", per_category=per_cat)
            body.append(f"<h2>Precision-recall curves</h2><figure><img src=\"{_esc(_rel(img, folder))}\" "
                        "alt=\"precision-recall curves\"><figcaption>mean over categories with ground truth "
                        "(thick), each category at IoU 0.50 (grey)</figcaption></figure>")
    for t, m in result.metrics.items():
        if not m.per_category:
            continue
        names = list(m.per_category)
        vals = [np.nan if v is None else float(v) for v in m.per_category.values()]
        img = bar_chart(vals, names, folder / f"per_category_ap_{t}.png", mean=m.AP, mean_label="AP",
                        xlabel="AP (IoU 0.50:0.95)", title=f"Per-category AP ({t})", xmax=1.0,
                        value_format="{:.3f}")
        body.append(f"<h2>Per-category AP ({_esc(t)})</h2><figure><img src=\"{_esc(_rel(img, folder))}\" "
                    f"alt=\"per-category AP {_esc(t)}\"></figure>")
    if getattr(result, "semantic", None) is not None:
        sem = result.semantic
        names = list(sem.class_names) or [str(i) for i in range(len(sem.iou))]
        body.append("<h2>Semantic segmentation (GT instances painted into label maps)</h2>")
        body.extend(_semantic_sections(folder, sem, confusion, names))
    body.append(_files_section(folder, files))
    base = {"images": getattr(result, "num_images", "?"), "predictions": getattr(result, "num_predictions", "?")}
    sub = " · ".join(f"{_esc(k)}: {_esc(v)}" for k, v in {**base, **(info or {})}.items())
    sub += "<br>" + _esc(_stamp())
    return _write_html(folder / "report.html", _page(title, sub, body))
