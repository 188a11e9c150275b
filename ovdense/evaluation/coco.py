"""COCO instance evaluation of an open-vocabulary segmenter (pycocotools, never re-implemented).

Pipeline: GT categories -> vocabulary -> ``segmenter.predict`` per GT image -> instances
(:mod:`ovdense.instances`) -> COCO results (GT image ids, GT category ids, XYWH boxes, RLE
masks with ``str`` counts) -> ``COCOeval`` for ``bbox`` and ``segm``. The same predictions are
also scored as semantic segmentation against the GT instances painted into a label map.

Units: COCO numbers are fractions in ``[0, 1]`` as pycocotools prints them (``-1`` where
pycocotools has nothing to average); the semantic part is in percent (mmseg convention).

The bbox and segm evaluations each get their own results list: ``COCO.loadRes`` takes the
``area`` from the box when a result has one, which would put masks in the wrong area range.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata as md
import io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ovdense.evaluation.miou import SemanticEvaluator, SemanticMetrics
from ovdense.ops.masks import encode_mask  # re-exported: evaluation.coco.encode_mask stays importable
from ovdense.proposals import build_instances
from ovdense.structures import Detections
from ovdense.text.vocabulary import is_background_name

__all__ = [
    "CocoEvalResult",
    "CocoMetrics",
    "CocoVocabulary",
    "build_coco_vocabulary",
    "detections_to_coco",
    "encode_mask",
    "evaluate_coco",
    "run_cocoeval",
]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CocoVocabulary:
    """Class list sent to the segmenter and its link to the GT categories.

    Attributes:
        prompts: one entry per class, synonyms joined by ``", "``; the background first if any.
        cat_ids: COCO category id of each non-background class, in class order.
        cat_names: GT name of each of those categories.
        background: class 0 is a background class that maps to no category.
    """

    prompts: list[str]
    cat_ids: list[int]
    cat_names: list[str]
    background: bool

    @property
    def offset(self) -> int:
        """Index of the first real category among the classes."""
        return 1 if self.background else 0

    def category_of(self, class_index: int) -> int | None:
        """COCO category id of a class index (``None`` for the background)."""
        k = int(class_index) - self.offset
        return self.cat_ids[k] if 0 <= k < len(self.cat_ids) else None

    def cat_to_label(self) -> dict[int, int]:
        """COCO category id -> class index (for painting the GT)."""
        return {cid: i + self.offset for i, cid in enumerate(self.cat_ids)}


def build_coco_vocabulary(
    coco: Any, classes_file: str | Path | None = None, background: bool = True
) -> CocoVocabulary:
    """Vocabulary from the GT categories (sorted by id), optionally renamed by a name file.

    Without ``classes_file`` the class names are the GT category names. With it, each line
    (synonyms separated by ``, `` or ``; ``) describes one GT category: a line whose synonym
    matches a GT name case-insensitively goes to that category; if the lines do not all match
    one-to-one, they are mapped to the GT categories in id order and their number must equal
    the number of categories. The first line is the background when it starts with
    ``background``, or, with ``background=True``, when there is one line more than categories
    (SCLIP's ``cls_coco_object.txt`` style, whose background line lists stuff words).
    """
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    cat_names = [str(c["name"]) for c in cats]
    if classes_file is None:
        prompts = list(cat_names)
        return CocoVocabulary((["background"] if background else []) + prompts, cat_ids, cat_names,
                              background)
    from ovdense.text.vocabulary import read_name_file

    groups = read_name_file(classes_file)
    bg_line: list[str] | None = None
    if groups and (is_background_name(groups[0][0])
                   or (background and len(groups) == len(cat_names) + 1)):
        bg_line, groups = groups[0], groups[1:]
    by_name = {n.lower(): i for i, n in enumerate(cat_names)}
    matched = [next((by_name[s.lower()] for s in g if s.lower() in by_name), None) for g in groups]
    if None not in matched and sorted(matched) == list(range(len(cat_names))):
        order = [0] * len(cat_names)
        for line_idx, cat_idx in enumerate(matched):
            order[cat_idx] = line_idx
        groups = [groups[i] for i in order]
    elif len(groups) != len(cat_names):
        raise ValueError(
            f"{classes_file}: {len(groups)} class lines (without background) for "
            f"{len(cat_names)} GT categories, and the names do not match the GT one-to-one"
        )
    prompts = [", ".join(g) for g in groups]
    if background:
        prompts = [", ".join(bg_line) if bg_line else "background"] + prompts
    return CocoVocabulary(prompts, cat_ids, cat_names, background)


def detections_to_coco(dets: Detections, image_id: int, vocab: CocoVocabulary) -> list[dict]:
    """COCO results for one image: XYWH ``bbox``, RLE ``segmentation``, ``score``, GT ids.

    Instances of classes without a category (the background) are dropped.
    """
    out = []
    for i in range(len(dets)):
        cat = vocab.category_of(int(dets.class_id[i]))
        if cat is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        out.append({
            "image_id": int(image_id),
            "category_id": int(cat),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(dets.confidence[i]),
            "segmentation": encode_mask(dets.mask[i]),
        })
    return out


@dataclass
class CocoMetrics:
    """COCOeval summary for one IoU type (fractions, as pycocotools reports them)."""

    iou_type: str
    AP: float = 0.0
    AP50: float = 0.0
    AP75: float = 0.0
    APs: float = 0.0
    APm: float = 0.0
    APl: float = 0.0
    per_category: dict[str, float] = field(default_factory=dict)
    stats: list[float] = field(default_factory=list)
    #: pycocotools' ``(precision[T, R, K, A, M], iouThrs, recThrs)`` for the report's PR curves
    #: (not part of :meth:`CocoEvalResult.to_dict`); ``None`` when nothing was evaluated.
    pr: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, float]:
        """The six headline numbers."""
        return {k: getattr(self, k) for k in STAT_NAMES}


def run_cocoeval(
    coco_gt: Any,
    results: Sequence[dict],
    iou_type: str,
    img_ids: Sequence[int] | None = None,
    max_dets: int = 100,
    verbose: bool = True,
) -> CocoMetrics:
    """Run ``COCOeval`` on ``results`` (copied; the boxes or masks that ``iou_type`` needs).

    Empty ``results`` give zeros and a warning (``loadRes([])`` is never called).
    Per-category AP averages pycocotools' precision array over IoU thresholds and recall
    points (area ``all``, ``max_dets``), as mmdet's ``classwise`` table does.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    cats = sorted(coco_gt.loadCats(coco_gt.getCatIds()), key=lambda c: c["id"])
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    dets = [{k: copy.deepcopy(v) for k, v in r.items() if k != drop} for r in results]
    if not dets:
        warnings.warn(f"no predictions for COCO {iou_type} evaluation; reporting zeros",
                      RuntimeWarning, stacklevel=2)
        return CocoMetrics(iou_type, per_category={c["name"]: 0.0 for c in cats},
                           stats=[0.0] * 12)
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_cat = {}
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_cat[coco_gt.cats[cid]["name"]] = float(p.mean()) if p.size else float("nan")
    stats = [float(s) for s in ev.stats]
    pr = (precision, np.asarray(ev.params.iouThrs), np.asarray(ev.params.recThrs))
    return CocoMetrics(iou_type, *stats[:6], per_category=per_cat, stats=stats, pr=pr)


@dataclass
class CocoEvalResult:
    """Everything :func:`evaluate_coco` measured."""

    metrics: dict[str, CocoMetrics]
    semantic: SemanticMetrics | None
    num_images: int
    num_predictions: int
    pycocotools_version: str
    #: the semantic part's ``(C, C)`` confusion matrix (rows ground truth), when computed
    semantic_confusion: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready view."""
        return {
            "num_images": self.num_images,
            "num_predictions": self.num_predictions,
            "pycocotools": self.pycocotools_version,
            "units": {"coco": "fraction", "semantic": "percent"},
            **{t: _nan_to_none({k: v for k, v in asdict(m).items() if k != "pr"})
               for t, m in self.metrics.items()},
            "semantic": self.semantic.to_dict() if self.semantic is not None else None,
        }


def _nan_to_none(value: Any) -> Any:
    """Replace NaN floats (nested) with ``None`` so the JSON stays strict."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _set_classes(segmenter: Any, vocab: CocoVocabulary) -> None:
    """Send the vocabulary, using a ``background=`` keyword when ``set_classes`` has one."""
    import inspect

    try:
        params = inspect.signature(segmenter.set_classes).parameters
    except (TypeError, ValueError):
        params = {}
    if vocab.background and "background" in params:
        segmenter.set_classes(vocab.prompts[1:], background=vocab.prompts[0])
    else:
        segmenter.set_classes(vocab.prompts)


def _image_path(image_dir: Path, file_name: str) -> Path:
    """Locate a GT image in ``image_dir`` (its ``file_name``, else its base name)."""
    for cand in (image_dir / file_name, image_dir / Path(file_name).name):
        if cand.is_file():
            return cand
    from ovdense.datasets import DatasetError

    raise DatasetError(f"COCO image not found: {image_dir / file_name}")


def evaluate_coco(
    segmenter: Any,
    ann_file: str | Path,
    image_dir: str | Path,
    *,
    classes_file: str | Path | None = None,
    background: bool = True,
    strategy: str = "connected_components",
    strategy_options: dict | None = None,
    iou_types: Sequence[str] = ("bbox", "segm"),
    semantic: bool = True,
    crowd: str = "label",
    limit: int | None = None,
    max_dets: int = 100,
    out_dir: str | Path | None = None,
    progress: bool = True,
    report: bool = False,
    report_dir: str | Path | None = None,
) -> CocoEvalResult:
    """Evaluate ``segmenter`` on a COCO instances file and its image folder.

    Args:
        segmenter: object with ``set_classes(list[str])`` and
            ``predict(path, return_scores=True)`` returning ``label_map``/``class_names``/``scores``.
        ann_file: COCO instances JSON (ground truth).
        image_dir: folder holding the images named by ``file_name``.
        classes_file: optional name file (see :func:`build_coco_vocabulary`).
        background: add a background class 0 (mapped to no category).
        strategy: proposal source name in :data:`ovdense.registry.PROPOSALS`.
        strategy_options: keyword options for the strategy (e.g. ``{"min_area": 16}``).
        iou_types: any of ``"bbox"``, ``"segm"``.
        semantic: also compute mIoU against the GT instances painted into label maps.
        crowd: crowd-region policy for that painting (``label``, ``ignore``, ``skip``).
        limit: evaluate the first ``limit`` GT images (by id) only.
        max_dets: COCOeval's largest ``maxDets``.
        out_dir: write ``coco_results.json`` (XYWH boxes + RLE) and ``metrics_coco.json`` here.
        progress: tqdm bar and pycocotools' printed summaries.
        report: also write a static ``report.html`` with pictures (AP table, precision-recall
            curves at IoU 0.5 and 0.75 per IoU type, per-category AP bars, and the semantic
            part's per-class IoU and confusion matrix); needs matplotlib
            (``pip install 'ovdense[report]'``).
        report_dir: folder of the report (default ``out_dir/report``); giving it implies ``report``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` predicts images ``r::W``; the results
    are gathered in the single-process order and the confusion matrices summed, so every
    rank returns exactly the single-process metrics; only rank 0 prints and writes.
    """
    from ovdense.distributed import init_distributed, shutdown

    from ovdense.viz.report import resolve_report_dir

    report_dir = resolve_report_dir(report, report_dir, out_dir)  # fails before any image is predicted
    report = report_dir is not None
    dist_info = init_distributed(getattr(segmenter, "device", None))
    try:
        result = _evaluate_coco(segmenter, ann_file, image_dir, classes_file, background, strategy,
                                strategy_options, iou_types, semantic, crowd, limit, max_dets, out_dir,
                                progress, dist_info)
        if report and dist_info.rank == 0:
            _write_coco_report(Path(report_dir), result, ann_file, out_dir)
        return result
    finally:
        shutdown(dist_info)


def _write_coco_report(report_dir: Path, result: CocoEvalResult, ann_file: str | Path,
                       out_dir: str | Path | None) -> str:
    """``report.html`` and its pictures for a finished COCO evaluation (rank 0)."""
    from ovdense.viz.report import write_coco_report

    pr = {t: m.pr for t, m in result.metrics.items() if m.pr is not None}
    files = [Path(out_dir) / n for n in ("metrics_coco.json", "coco_results.json")] if out_dir else []
    confusion = result.semantic_confusion if result.semantic is not None else None
    return write_coco_report(report_dir, result, pr=pr, confusion=confusion,
                             title=f"COCO evaluation: {Path(ann_file).name}", files=files)


def _evaluate_coco(segmenter, ann_file, image_dir, classes_file, background, strategy, strategy_options,
                   iou_types, semantic, crowd, limit, max_dets, out_dir, progress, dist_info) -> CocoEvalResult:
    from pycocotools.coco import COCO
    from tqdm import tqdm

    from ovdense.datasets import DatasetError, paint_instances
    from ovdense.distributed import all_gather_lists, all_reduce_sum
    from ovdense.evaluation.meta import collect_versions, config_to_dict, write_json

    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.is_file():
        raise DatasetError(f"COCO annotation file not found: {ann_file}")
    if not image_dir.is_dir():
        raise DatasetError(f"COCO image folder not found: {image_dir}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    vocab = build_coco_vocabulary(coco, classes_file, background)
    _set_classes(segmenter, vocab)
    img_ids = sorted(coco.getImgIds())
    if limit is not None:
        img_ids = img_ids[: max(int(limit), 0)]
    evaluator = SemanticEvaluator(len(vocab.prompts), class_names=vocab.prompts) if semantic else None
    cat_to_label = vocab.cat_to_label()
    options = dict(strategy_options or {})
    results: list[dict] = []
    for img_id in tqdm(img_ids[dist_info.rank::dist_info.world_size], disable=not progress or dist_info.rank != 0,
                       desc="eval coco"):
        info = coco.imgs[img_id]
        res = segmenter.predict(str(_image_path(image_dir, info["file_name"])), return_scores=True)
        label_map = np.asarray(res.label_map)
        if label_map.shape != (info["height"], info["width"]):
            raise ValueError(f"image {img_id}: prediction {label_map.shape} != GT size "
                             f"{(info['height'], info['width'])}")
        if len(res.class_names) != len(vocab.prompts):
            raise ValueError(f"the segmenter returned {len(res.class_names)} classes, "
                             f"expected {len(vocab.prompts)}")
        results.extend(detections_to_coco(build_instances(res, strategy, **options), img_id, vocab))
        if evaluator is not None:
            gt = paint_instances(coco, img_id, cat_to_label, background=vocab.background,
                                 crowd=crowd)  # type: ignore[arg-type]
            evaluator.update(label_map, gt)
    if dist_info.distributed:
        # back into the single-process order: by image (stable within an image)
        position = {img_id: i for i, img_id in enumerate(img_ids)}
        results = sorted(all_gather_lists(results, dist_info), key=lambda r: position[r["image_id"]])
        if evaluator is not None:
            evaluator.counts[...] = all_reduce_sum(evaluator.counts, dist_info)
    lead = dist_info.rank == 0
    metrics = {t: run_cocoeval(coco, results, t, img_ids, max_dets, verbose=progress and lead)
               for t in iou_types}
    sem = evaluator.compute() if evaluator is not None else None
    out = CocoEvalResult(metrics, sem, len(img_ids), len(results), md.version("pycocotools"),
                         semantic_confusion=evaluator.matrix.copy() if evaluator is not None else None)
    if progress and lead:
        _print_summary(out)
    if out_dir is not None and lead:
        write_json(Path(out_dir) / "coco_results.json", results)
        report = {"task": "coco", "ann_file": str(ann_file), "image_dir": str(image_dir),
                  "strategy": strategy, "strategy_options": options, "classes": vocab.prompts,
                  **out.to_dict(), "config": config_to_dict(getattr(segmenter, "config", None)),
                  "versions": collect_versions()}
        write_json(Path(out_dir) / "metrics_coco.json", report)
    return out


def _print_summary(result: CocoEvalResult) -> None:
    """Headline table: AP numbers per IoU type, per-category AP, semantic mIoU."""
    print(f"pycocotools {result.pycocotools_version}; {result.num_images} images, "
          f"{result.num_predictions} predictions")
    for t, m in result.metrics.items():
        print(f"{t:5s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.summary().items()))
    for t, m in result.metrics.items():
        width = max([8] + [len(n) for n in m.per_category])
        print(f"per-category {t} AP")
        for name, ap in m.per_category.items():
            print(f"  {name:<{width}} {'nan' if np.isnan(ap) else f'{ap:.3f}'}")
    if result.semantic is not None:
        print(result.semantic.table())
