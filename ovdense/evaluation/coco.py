"""COCO instance evaluation of an open-vocabulary segmenter (pycocotools, never re-implemented).

Pipeline: GT categories -> vocabulary -> ``segmenter.predict`` per GT image -> instances
(:mod:`ovdense.instances`) -> COCO results (GT image ids, GT category ids, XYWH boxes, RLE
masks with ``str`` counts) -> ``COCOeval`` for ``bbox`` and ``segm``. The same predictions are
also scored as semantic segmentation against the GT instances painted into a label map.

Units: COCO numbers are fractions in ``[0, 1]`` as pycocotools prints them (``-1`` where
pycocotools has nothing to average); the semantic part is in percent (mmseg convention).

The bbox and segm evaluations each get their own results list: ``COCO.loadRes`` takes the
``area`` from the box when a result has one, which would put masks in the wrong area range.

How a run goes is one frozen :class:`CocoEvalOptions`. The annotation file is checked by
:func:`load_coco_gt` (one-line ``DatasetError`` naming the file). pycocotools' stdout is
captured unless ``verbose``. Images the segmenter cannot read are skipped with a warning on the
``ovdense.evaluation.coco`` logger and left out of every metric (``strict``: stop instead).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.metadata as md
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ovdense.evaluation.miou import SemanticEvaluator, SemanticMetrics
from ovdense.ops.masks import encode_mask  # re-exported: evaluation.coco.encode_mask stays importable
from ovdense.proposals import build_instances
from ovdense.structures import Detections
from ovdense.text.vocabulary import is_background_name

__all__ = [
    "CocoEvalOptions",
    "CocoEvalResult",
    "CocoMetrics",
    "CocoVocabulary",
    "NoReadableImages",
    "build_coco_vocabulary",
    "detections_to_coco",
    "encode_mask",
    "evaluate_coco",
    "load_coco_gt",
    "run_cocoeval",
]

logger = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CocoVocabulary:
    """Class list sent to the segmenter and its link to the GT categories.

    Attributes:
        prompts: one entry per class, synonyms joined by ``", "``; the background first if any.
        cat_ids: COCO category id of each non-background class, in class order.
        cat_names: GT name of each of those categories.
        background: class 0 is a background class that maps to no category.
        background_source: where that class comes from: ``"default"`` (the word
            ``background``, added by :func:`build_coco_vocabulary`), ``"classes_file"`` (the
            first line of the name file), ``None`` without a background class.
    """

    prompts: list[str]
    cat_ids: list[int]
    cat_names: list[str]
    background: bool
    background_source: str | None = None

    @property
    def background_synonyms(self) -> list[str]:
        """The background class's synonyms (``[]`` without a background class)."""
        return self.prompts[0].split(", ") if self.background else []

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
                              background, "default" if background else None)
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
    source = ("classes_file" if bg_line else "default") if background else None
    return CocoVocabulary(prompts, cat_ids, cat_names, background, source)


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


@dataclass(frozen=True)
class CocoEvalOptions:
    """How :func:`evaluate_coco` runs: everything but the segmenter and the data it reads.

    Frozen: derive variants with ``dataclasses.replace(options, limit=50)``. Invalid values
    (an unknown IoU type or crowd policy, a negative limit) raise ``ValueError`` at creation.
    """

    classes_file: str | Path | None = None
    """Name file renaming the GT categories (see :func:`build_coco_vocabulary`); ``None``: the
    GT category names."""

    background: bool = True
    """Add a background class 0 that maps to no category (its pixels make no instance). Its
    synonyms are the word ``background``, or the first line of ``classes_file`` when that line
    is a background line. The result and ``metrics_coco.json`` record whether it was added."""

    strategy: str = "connected_components"
    """Proposal source of the :class:`~ovdense.Detector` (a name in
    :data:`ovdense.registry.PROPOSALS`); the default turns the label map into instances."""

    strategy_options: Mapping[str, Any] | None = None
    """Keyword options of that strategy, e.g. ``{"min_area": 16}``."""

    scorer: str | Mapping[str, Any] | None = None
    """Region scorer of the Detector (a name in :data:`ovdense.registry.SCORERS`, e.g.
    ``"mask_pooling"``); needed for class-agnostic proposal sources, None keeps the source's
    classes."""

    detector_options: Mapping[str, Any] | None = None
    """Other :class:`~ovdense.Detector` arguments (``nms_threshold``, ``class_agnostic_nms``,
    ``max_detections``, ``min_confidence``): a config's ``detector`` section."""

    iou_types: tuple[str, ...] = ("bbox", "segm")
    """COCOeval IoU types to score: any of ``"bbox"``, ``"segm"``."""

    semantic: bool = True
    """Also score the label maps as semantic segmentation against the GT instances painted
    into label maps (mIoU, percent)."""

    crowd: str = "label"
    """Crowd regions in that painted GT: ``"label"`` (their category), ``"ignore"``, ``"skip"``."""

    limit: int | None = None
    """Evaluate the first ``limit`` GT images (by id) only; ``None``: all of them."""

    max_dets: int = 100
    """COCOeval's largest ``maxDets`` (detections per image kept)."""

    out_dir: str | Path | None = None
    """Write ``coco_results.json`` (XYWH boxes + RLE) and ``metrics_coco.json`` here;
    ``None``: write nothing."""

    progress: bool = True
    """Show a progress bar and print a short summary (AP table, background class, skipped
    images)."""

    verbose: bool = False
    """Also print pycocotools' own output (its 12-line summaries per IoU type) and the
    per-category AP and per-class IoU tables; otherwise pycocotools' stdout is captured."""

    strict: bool = False
    """Stop at the first unreadable image (``DatasetError`` naming it) instead of skipping it
    with a one-line warning (skipped images are left out of every metric and listed in the
    result and ``metrics_coco.json``)."""

    report: bool = False
    """Also write a static ``report.html`` with pictures (AP table, precision-recall curves at
    IoU 0.5 and 0.75 per IoU type, per-category AP bars, the semantic part's per-class IoU and
    confusion matrix); needs matplotlib (``pip install 'ovdense[report]'``)."""

    report_dir: str | Path | None = None
    """Folder of the report (default ``out_dir/report``); giving it implies ``report``."""

    def __post_init__(self) -> None:
        iou_types = (self.iou_types,) if isinstance(self.iou_types, str) else tuple(self.iou_types)
        object.__setattr__(self, "iou_types", iou_types)
        bad = [t for t in iou_types if t not in ("bbox", "segm")]
        if bad or not iou_types:
            raise ValueError(f"iou_types: use 'bbox' and/or 'segm', got {self.iou_types!r}")
        if self.crowd not in ("label", "ignore", "skip"):
            raise ValueError(f"crowd must be 'label', 'ignore' or 'skip', got {self.crowd!r}")
        if self.limit is not None and int(self.limit) < 0:
            raise ValueError(f"limit must be >= 0 or None, got {self.limit!r}")
        if int(self.max_dets) < 1:
            raise ValueError(f"max_dets must be >= 1, got {self.max_dets!r}")


class NoReadableImages(Exception):
    """Every GT image selected for the evaluation was unreadable: nothing was evaluated."""


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
    #: file names of the unreadable GT images left out of every metric, in image-id order
    skipped_images: list[str] = field(default_factory=list)
    #: synonyms of the background class 0 (``[]``: no background class was added)
    background_synonyms: list[str] = field(default_factory=list)
    #: where the background class came from (``"default"``, ``"classes_file"``, ``None``)
    background_source: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready view."""
        return {
            "num_images": self.num_images,
            "num_predictions": self.num_predictions,
            "num_skipped_images": len(self.skipped_images),
            "skipped_images": list(self.skipped_images),
            "background": {"added": bool(self.background_synonyms),
                           "synonyms": list(self.background_synonyms),
                           "source": self.background_source if self.background_synonyms else None},
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


#: keys each entry of a COCO instances file needs for this evaluation
_REQUIRED = {"images": ("id", "file_name", "height", "width"),
             "annotations": ("id", "image_id", "category_id"),
             "categories": ("id", "name")}


def load_coco_gt(ann_file: str | Path) -> Any:
    """Read and check a COCO instances file; a silent ``pycocotools.coco.COCO`` of it.

    Raises:
        DatasetError: one line naming the file and what is wrong with it: not found, not
            valid JSON, no ``"images"``/``"annotations"``/``"categories"`` list, no category
            or no image, an entry without a key the evaluation reads, an annotation whose
            ``category_id`` is not among the categories.
    """
    from pycocotools.coco import COCO

    from ovdense.datasets import DatasetError

    path = Path(ann_file)
    if not path.exists():
        raise DatasetError(f"COCO annotation file not found: {path}")
    if not path.is_file():
        raise DatasetError(f"COCO annotation file is not a file: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetError(f"COCO annotation file {path} is not valid JSON "
                           f"(line {err.lineno} column {err.colno}: {err.msg})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"COCO annotation file {path} is not valid JSON (not UTF-8 text)") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a COCO annotation file: its top level is a JSON "
                           f"{type(data).__name__}, not an object with \"images\", \"annotations\" "
                           "and \"categories\" lists")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = "" if key not in data else f" (it is a JSON {type(data[key]).__name__})"
            raise DatasetError(f"COCO annotation file {path} has no \"{key}\" list{found}")
    for key in ("categories", "images"):
        if not data[key]:
            raise DatasetError(f"COCO annotation file {path}: its \"{key}\" list is empty, nothing to evaluate")
    for key, needed in _REQUIRED.items():
        for i, entry in enumerate(data[key]):
            missing = [k for k in needed if not isinstance(entry, dict) or k not in entry]
            if missing:
                raise DatasetError(f"COCO annotation file {path}: {key}[{i}] has no \"{missing[0]}\"")
    cat_ids = {c["id"] for c in data["categories"]}
    unknown = next((a for a in data["annotations"] if a["category_id"] not in cat_ids), None)
    if unknown is not None:
        raise DatasetError(f"COCO annotation file {path}: annotation {unknown['id']} has category_id "
                           f"{unknown['category_id']}, which is not in \"categories\"")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


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


def _unreadable_image_errors() -> tuple:
    """What ``segmenter.predict`` raises for a file that is not a readable image: ovdense's
    ``ImageLoadError`` (OpenCV could not decode it) and ``OSError`` (PIL: unidentified or
    truncated files)."""
    from ovdense.io.images import ImageLoadError

    return (ImageLoadError, OSError)


def _options_from(options: CocoEvalOptions | None, legacy: dict) -> CocoEvalOptions:
    """``options`` with the keyword arguments of the former signature applied on top."""
    base = options if options is not None else CocoEvalOptions()
    if not isinstance(base, CocoEvalOptions):
        raise TypeError(f"options must be a CocoEvalOptions, got {type(base).__name__}")
    if not legacy:
        return base
    names = {f.name for f in dataclasses.fields(CocoEvalOptions)}
    unknown = sorted(set(legacy) - names)
    if unknown:
        raise TypeError(f"evaluate_coco() got unexpected keyword argument(s) {', '.join(unknown)} "
                        f"(options: {', '.join(sorted(names))})")
    return dataclasses.replace(base, **legacy)


def evaluate_coco(
    segmenter: Any,
    ann_file: str | Path,
    image_dir: str | Path,
    options: CocoEvalOptions | None = None,
    **legacy_kwargs: Any,
) -> CocoEvalResult:
    """Evaluate ``segmenter`` on a COCO instances file and its image folder.

    Args:
        segmenter: object with ``set_classes(list[str])`` and
            ``predict(path, return_scores=True)`` returning ``label_map``/``class_names``/``scores``.
        ann_file: COCO instances JSON (ground truth), checked by :func:`load_coco_gt`.
        image_dir: folder holding the images named by ``file_name``.
        options: how to run (:class:`CocoEvalOptions`; default: its defaults).
        **legacy_kwargs: the former keyword arguments (``classes_file=...``, ``limit=...``,
            any :class:`CocoEvalOptions` field), applied on top of ``options``.

    An image that ``segmenter.predict`` cannot read is skipped with a one-line warning and left
    out of every metric (``CocoEvalResult.skipped_images``), or stops the run with
    ``options.strict``; :class:`NoReadableImages` when no image could be read.

    Under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` predicts images ``r::W``; the results
    are gathered in the single-process order and the confusion matrices summed, so every
    rank returns exactly the single-process metrics; only rank 0 prints and writes.
    """
    from ovdense.distributed import init_distributed, shutdown

    from ovdense.viz.report import resolve_report_dir

    options = _options_from(options, legacy_kwargs)
    # fails before any image is predicted
    report_dir = resolve_report_dir(options.report, options.report_dir, options.out_dir)
    dist_info = init_distributed(getattr(segmenter, "device", None))
    try:
        result = _evaluate_coco(segmenter, ann_file, image_dir, options, dist_info)
        if report_dir is not None and dist_info.rank == 0:
            _write_coco_report(Path(report_dir), result, ann_file, options.out_dir)
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


def _image_detector(segmenter: Any, options: CocoEvalOptions):
    """``path -> (Detections, SegmentationResult)`` for one image: a :class:`~ovdense.Detector`
    (the options' proposal source and scorer) for an OVSegmenter; for any other object with
    ``predict`` (test doubles), its result turned into instances by the proposal source."""
    proposals = dict(type=options.strategy, **dict(options.strategy_options or {}))
    if hasattr(segmenter, "encode_image"):
        from ovdense.detector import Detector

        detector = Detector(segmenter, proposals=proposals, scorer=options.scorer,
                            **dict(options.detector_options or {}))
        return lambda path: detector.detect(path, return_result=True)
    if options.scorer is not None:
        raise ValueError("a region scorer needs an OVSegmenter (it reads the image's dense features)")

    def from_result(path: str):
        result = segmenter.predict(path, return_scores=True)
        return build_instances(result, options.strategy, **dict(options.strategy_options or {})), result

    return from_result


def _evaluate_coco(segmenter: Any, ann_file: str | Path, image_dir: str | Path, options: CocoEvalOptions,
                   dist_info: Any) -> CocoEvalResult:
    from tqdm import tqdm

    from ovdense.datasets import DatasetError, paint_instances
    from ovdense.distributed import all_gather_lists, all_reduce_sum
    from ovdense.evaluation.meta import collect_versions, config_to_dict, write_json

    ann_file, image_dir = Path(ann_file), Path(image_dir)
    coco = load_coco_gt(ann_file)
    if not image_dir.is_dir():
        raise DatasetError(f"COCO image folder not found: {image_dir}")
    vocab = build_coco_vocabulary(coco, options.classes_file, options.background)
    _set_classes(segmenter, vocab)
    img_ids = sorted(coco.getImgIds())
    if options.limit is not None:
        img_ids = img_ids[: max(int(options.limit), 0)]
    evaluator = SemanticEvaluator(len(vocab.prompts), class_names=vocab.prompts) if options.semantic else None
    cat_to_label = vocab.cat_to_label()
    lead = dist_info.rank == 0
    unreadable = _unreadable_image_errors()
    results: list[dict] = []
    skipped: list[tuple[int, str]] = []
    detect = _image_detector(segmenter, options)
    for img_id in tqdm(img_ids[dist_info.rank::dist_info.world_size], disable=not options.progress or not lead,
                       desc="eval coco"):
        info = coco.imgs[img_id]
        path = _image_path(image_dir, info["file_name"])
        try:
            dets, res = detect(str(path))
        except unreadable as err:
            reason = str(err)
            reason = reason[len(str(path)) + 2:] if reason.startswith(f"{path}: ") else reason
            if options.strict:
                raise DatasetError(f"unreadable image {path} (image id {img_id}): {reason}") from None
            logger.warning("skipped unreadable image %s (image id %s): %s", path, img_id, reason)
            skipped.append((img_id, str(info["file_name"])))
            continue
        label_map = np.asarray(res.label_map)
        if label_map.shape != (info["height"], info["width"]):
            raise ValueError(f"image {path} (id {img_id}): prediction {label_map.shape} != GT size "
                             f"{(info['height'], info['width'])}")
        if len(res.class_names) != len(vocab.prompts):
            raise ValueError(f"the segmenter returned {len(res.class_names)} classes, "
                             f"expected {len(vocab.prompts)}")
        results.extend(detections_to_coco(dets, img_id, vocab))
        if evaluator is not None:
            gt = paint_instances(coco, img_id, cat_to_label, background=vocab.background,
                                 crowd=options.crowd)  # type: ignore[arg-type]
            evaluator.update(label_map, gt)
    position = {img_id: i for i, img_id in enumerate(img_ids)}
    if dist_info.distributed:
        # back into the single-process order: by image (stable within an image)
        results = sorted(all_gather_lists(results, dist_info), key=lambda r: position[r["image_id"]])
        skipped = all_gather_lists(skipped, dist_info)
        if evaluator is not None:
            evaluator.counts[...] = all_reduce_sum(evaluator.counts, dist_info)
    skipped = sorted(skipped, key=lambda s: position[s[0]])
    if len(skipped) == len(img_ids) and img_ids:
        raise NoReadableImages(f"none of the {len(img_ids)} images in {image_dir} could be read "
                               f"(first: {skipped[0][1]}); nothing was evaluated")
    skipped_ids = {s[0] for s in skipped}
    evaluated = [i for i in img_ids if i not in skipped_ids]  # unreadable images' GT is no miss
    metrics = {t: run_cocoeval(coco, results, t, evaluated, options.max_dets, verbose=options.verbose and lead)
               for t in options.iou_types}
    sem = evaluator.compute() if evaluator is not None else None
    out = CocoEvalResult(metrics, sem, len(evaluated), len(results), md.version("pycocotools"),
                         semantic_confusion=evaluator.matrix.copy() if evaluator is not None else None,
                         skipped_images=[s[1] for s in skipped],
                         background_synonyms=vocab.background_synonyms,
                         background_source=vocab.background_source)
    if options.progress and lead:
        _print_summary(out, verbose=options.verbose, classes_file=options.classes_file)
    if options.out_dir is not None and lead:
        out_dir = Path(options.out_dir)
        write_json(out_dir / "coco_results.json", results)
        report = {"task": "coco", "ann_file": str(ann_file), "image_dir": str(image_dir),
                  "strategy": options.strategy, "strategy_options": dict(options.strategy_options or {}),
                  "scorer": options.scorer, "detector_options": dict(options.detector_options or {}),
                  "classes": vocab.prompts, **out.to_dict(),
                  "config": config_to_dict(getattr(segmenter, "config", None)), "versions": collect_versions()}
        write_json(out_dir / "metrics_coco.json", report)
    return out


def background_line(result: CocoEvalResult, classes_file: str | Path | None = None) -> str:
    """One line saying whether a background class 0 was added, and its synonyms."""
    if not result.background_synonyms:
        return "background class: none (every class is a GT category)"
    origin = ""
    if result.background_source == "classes_file":
        origin = f"; from the first line of {classes_file}" if classes_file else "; from the class-name file"
    return (f"background class: added as class 0 (synonyms: {', '.join(result.background_synonyms)}"
            f"{origin}); its pixels make no instance")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _print_summary(result: CocoEvalResult, verbose: bool = False,
                   classes_file: str | Path | None = None) -> None:
    """Short summary: image counts, background class, AP table, semantic mIoU; with ``verbose``
    also the per-category AP and per-class IoU tables."""
    skipped = len(result.skipped_images)
    total = result.num_images + skipped
    print(f"COCO evaluation: {_count(result.num_images, 'image')}, {_count(result.num_predictions, 'prediction')} "
          f"(pycocotools {result.pycocotools_version})")
    if skipped:
        print(f"{skipped} of {total} images skipped (unreadable): "
              + ", ".join(result.skipped_images[:5]) + (", ..." if skipped > 5 else ""))
    print(background_line(result, classes_file))
    print("      " + "".join(f"{k:>7}" for k in STAT_NAMES))
    for t, m in result.metrics.items():
        print(f"{t:<6}" + "".join(f"{v:7.3f}" for v in m.summary().values()))
    if result.semantic is not None:
        s = result.semantic
        print(f"semantic: mIoU {s.mIoU:.2f}  aAcc {s.aAcc:.2f}  mAcc {s.mAcc:.2f} (percent)")
    if not verbose:
        return
    for t, m in result.metrics.items():
        width = max([8] + [len(n) for n in m.per_category])
        print(f"per-category {t} AP")
        for name, ap in m.per_category.items():
            print(f"  {name:<{width}} {'nan' if np.isnan(ap) else f'{ap:.3f}'}")
    if result.semantic is not None:
        print(result.semantic.table())
