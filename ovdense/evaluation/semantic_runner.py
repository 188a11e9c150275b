"""Stream a benchmark through a segmenter and accumulate mmseg-style mIoU.

Resumable (per-rank checkpoints of the int64 confusion matrix and the finished image ids) and
shardable under ``torchrun`` (rank ``r`` of ``W`` takes ``samples[r::W]``; matrices are summed
with ``all_reduce``, which is exact for integers).

Each checkpoint records what the numbers depend on (:func:`eval_fingerprint`: the segmenter's
config without ``runtime``, its classes and synonyms, its dtype); the first is written before
the first image, another on Ctrl-C/SIGTERM. ``resume=True`` refuses a segmenter that differs
(:class:`RunMismatchError`, naming what differs) instead of reporting the recorded numbers
under the new config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ovdense.apps.folder import CONFIG_DEFAULTS, RunMismatchError, describe_differences
from ovdense.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from ovdense.evaluation.meta import collect_versions, config_to_dict, write_json
from ovdense.evaluation.miou import SemanticEvaluator, SemanticMetrics

__all__ = ["RunMismatchError", "SemanticDataset", "check_fingerprint", "config_fingerprint", "eval_fingerprint",
           "evaluate_semantic", "load_state", "recorded_fingerprint", "save_state", "state_path"]


class SemanticDataset(Protocol):
    """What the runner needs from a dataset (see :class:`ovdense.datasets.SemSegDataset`)."""

    samples: Sequence[Any]  # items with image_id, image_path, gt_path
    num_classes: int
    name: str

    def load_gt(self, gt_path: Any) -> np.ndarray:
        """Ground truth label map, int, ``(H, W)``."""
        ...


def state_path(out_dir: str | Path, rank: int) -> Path:
    """Checkpoint file of ``rank`` inside ``out_dir``."""
    return Path(out_dir) / f"state_rank{rank}.npz"


def config_fingerprint(config: Any) -> Any:
    """The part of a segmenter config that changes the numbers: all but ``runtime`` (batch sizes,
    memory bounds), ``classes`` (compared as the class names) and entries at their default."""
    cfg = config_to_dict(config)
    if isinstance(cfg, dict):
        cfg = {k: v for k, v in cfg.items()
               if k not in ("runtime", "classes") and not (k in CONFIG_DEFAULTS and v == CONFIG_DEFAULTS[k])}
    return json.loads(json.dumps(cfg, default=str, sort_keys=True))


def eval_fingerprint(segmenter: Any) -> dict:
    """What an evaluation's numbers depend on: the segmenter's config (:func:`config_fingerprint`),
    its classes with their synonyms, and its dtype."""
    vocab = getattr(segmenter, "vocabulary", None)
    names = getattr(segmenter, "class_names", None) or getattr(vocab, "class_names", None) or []
    synonyms = getattr(vocab, "synonyms", None) or [[] for _ in names]
    classes = [[str(n), [str(x) for x in syn]] for n, syn in zip(names, synonyms)]
    dtype = getattr(segmenter, "dtype", None)
    return {"classes": classes, "config": config_fingerprint(getattr(segmenter, "config", None)),
            "dtype": None if dtype is None else str(dtype)}


def check_fingerprint(recorded: dict | None, current: dict, where: str | Path) -> None:
    """Raise :class:`RunMismatchError` (one line naming what differs) unless ``current`` equals
    the ``recorded`` fingerprint of the run in ``where``; only the keys of ``current`` are compared."""
    if recorded is None:
        raise RunMismatchError(f"cannot resume in {where}: its checkpoint records no config to check against "
                               "(written by an older ovdense); pass --overwrite to start over")
    diffs = describe_differences({k: recorded.get(k) for k in current}, current, defaults={})
    if diffs:
        raise RunMismatchError(f"cannot resume in {where}: this run differs from the recorded one in "
                               f"{'; '.join(diffs)}; pass --overwrite to start over or choose another --out")


def recorded_fingerprint(path: Path) -> dict | None:
    """The fingerprint a checkpoint records (None: none, or no readable checkpoint)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "fingerprint" not in data.files:
                return None
            return json.loads(str(data["fingerprint"]))
    except (OSError, ValueError):
        return None


def save_state(path: Path, matrix: np.ndarray, done: list[str], world_size: int, dataset: str,
               fingerprint: dict | None = None) -> None:
    """Atomically write a checkpoint (confusion matrix + finished image ids + what they depend on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    extra = {} if fingerprint is None else {"fingerprint": np.array(json.dumps(fingerprint, sort_keys=True))}
    np.savez(
        tmp,
        matrix=matrix.astype(np.int64),
        done=np.array(done, dtype=str),
        world_size=np.int64(world_size),
        dataset=np.array(dataset),
        **extra,
    )
    tmp.replace(path)


def load_state(path: Path, num_classes: int, world_size: int, dataset: str) -> tuple[np.ndarray, list[str]]:
    """Read a checkpoint; checks that it belongs to the same dataset, classes and world size."""
    with np.load(path, allow_pickle=False) as data:
        matrix = data["matrix"].astype(np.int64)
        done = [str(x) for x in data["done"].tolist()]
        saved_world = int(data["world_size"])
        saved_dataset = str(data["dataset"])
    if matrix.shape not in ((num_classes, num_classes), (num_classes, num_classes + 1)):
        raise ValueError(f"{path}: checkpoint has {matrix.shape[0]} classes, expected {num_classes}")
    if saved_world != world_size:
        raise ValueError(
            f"{path}: checkpoint was written by a run with {saved_world} processes; "
            f"resume with the same number (now {world_size})"
        )
    if saved_dataset != dataset:
        raise ValueError(f"{path}: checkpoint is for dataset {saved_dataset!r}, not {dataset!r}")
    return matrix, done


def _save_prediction(label_map: np.ndarray, path: Path, num_classes: int) -> None:
    """Write a label-map PNG (palette PNG of class indices, 16-bit above 256 classes)."""
    from ovdense.io.writers import write_label_png

    write_label_png(str(path), label_map, num_classes)


def _class_names(segmenter: Any, result: Any, num_classes: int) -> list[str]:
    """Class names from the first result (or the segmenter), checked against the dataset."""
    names = getattr(result, "class_names", None) or getattr(segmenter, "class_names", None)
    if names is None:
        return [str(i) for i in range(num_classes)]
    names = list(names)
    if len(names) != num_classes:
        raise ValueError(
            f"the segmenter predicts {len(names)} classes but the dataset has {num_classes}; "
            "set the dataset's class-name file with set_classes()"
        )
    return [str(n) for n in names]


def _device_of(segmenter: Any) -> Any:
    return getattr(segmenter, "device", None)


def evaluate_semantic(
    segmenter: Any,
    dataset: SemanticDataset,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    save_predictions: bool = False,
    progress: bool = True,
    resume: bool = False,
    checkpoint_every: int = 50,
    ignore_index: int = 255,
    report: bool = False,
    report_dir: str | Path | None = None,
    report_worst: int = 8,
) -> SemanticMetrics:
    """Evaluate ``segmenter`` on ``dataset`` and return mmseg-style metrics (percent).

    Args:
        segmenter: anything with ``predict(image) -> result`` where ``result.label_map`` is an
            ``(H, W)`` int array of class indices (same size as the ground truth) and
            ``result.class_names`` lists the classes (optional).
        dataset: a :class:`ovdense.datasets.SemSegDataset` (or compatible object).
        limit: evaluate only the first ``limit`` samples.
        out_dir: folder for ``metrics.json``, ``confusion.npy``, checkpoints and predictions.
        save_predictions: write ``out_dir/preds/<image_id>.png`` label maps.
        progress: show a tqdm bar (rank 0 only) and print the per-class table.
        resume: continue from ``out_dir/state_rank{r}.npz`` if present; the segmenter must
            match the recorded one (:class:`RunMismatchError` otherwise).
        checkpoint_every: checkpoint after this many images (needs ``out_dir``).
        ignore_index: ground-truth value that is not evaluated.
        report: also write pictures and a static ``report.html`` (per-class IoU bars, confusion
            matrix, image | ground truth | prediction of the ``report_worst`` images with the
            lowest image mIoU, ``per_image.csv``); needs matplotlib (``pip install 'ovdense[report]'``).
        report_dir: folder of the report (default ``out_dir/report``); giving it implies ``report``.
        report_worst: how many worst images to draw. Only their predicted label maps are held
            in memory (at most ``report_worst`` at a time, per rank); nothing is predicted again.
            With ``resume``, the per-image part covers the images evaluated by this call.

    Under ``torchrun`` (``WORLD_SIZE > 1``) each rank evaluates ``samples[rank::world]`` and the
    returned metrics (on every rank) cover the whole dataset; only rank 0 writes the results.
    """
    if (resume or save_predictions) and out_dir is None:
        raise ValueError("resume and save_predictions need out_dir")
    from ovdense.viz.report import resolve_report_dir

    report_dir = resolve_report_dir(report, report_dir, out_dir)  # fails before any image is predicted
    report = report_dir is not None
    samples = list(dataset.samples)
    if limit is not None:
        samples = samples[: max(int(limit), 0)]
    info: DistInfo = init_distributed(_device_of(segmenter))
    try:
        return _run(segmenter, dataset, samples, info, out_dir, save_predictions, progress,
                    resume, checkpoint_every, ignore_index, report_dir if report else None, report_worst)
    finally:
        shutdown(info)


def _run(
    segmenter: Any,
    dataset: SemanticDataset,
    samples: list[Any],
    info: DistInfo,
    out_dir: str | Path | None,
    save_predictions: bool,
    progress: bool,
    resume: bool,
    checkpoint_every: int,
    ignore_index: int,
    report_dir: Path | None = None,
    report_worst: int = 8,
) -> SemanticMetrics:
    """Body of :func:`evaluate_semantic` once the process group is known."""
    from tqdm import tqdm

    num_classes = int(dataset.num_classes)
    evaluator = SemanticEvaluator(num_classes, ignore_index=ignore_index)
    out = Path(out_dir) if out_dir is not None else None
    ckpt = state_path(out, info.rank) if out is not None else None
    done: list[str] = []
    fingerprint = eval_fingerprint(segmenter)

    def checkpoint(counts: np.ndarray | None = None, n_done: int | None = None) -> None:
        if ckpt is not None:
            save_state(ckpt, evaluator.counts if counts is None else counts,
                       done if n_done is None else done[:n_done], info.world_size, dataset.name, fingerprint)

    if resume and ckpt is not None and ckpt.is_file():
        check_fingerprint(recorded_fingerprint(ckpt), fingerprint, out)  # before anything is predicted
        matrix, done = load_state(ckpt, num_classes, info.world_size, dataset.name)
        evaluator.add_matrix(matrix)
    else:
        checkpoint()  # what the numbers depend on, recorded before the first image
    done_set = set(done)
    mine = [s for s in samples[info.rank :: info.world_size] if str(s.image_id) not in done_set]
    class_names: list[str] | None = None
    tracker = _ReportTracker(report_worst) if report_dir is not None else None
    start = time.perf_counter()
    bar = tqdm(mine, disable=not progress or info.rank != 0, desc=f"eval {dataset.name}")
    consistent = (evaluator.counts.copy(), len(done))  # counts and done ids that belong together
    try:
        for n, sample in enumerate(bar, start=1):
            result = segmenter.predict(str(sample.image_path), return_scores=False)
            if class_names is None:
                class_names = _class_names(segmenter, result, num_classes)
            gt = dataset.load_gt(sample.gt_path)
            label_map = np.asarray(result.label_map)
            if label_map.shape != gt.shape:
                raise ValueError(
                    f"{sample.image_id}: prediction {label_map.shape} and ground truth {gt.shape} differ; "
                    "predictions must be resized to the original image size"
                )
            contribution = evaluator.update(label_map, gt)
            if tracker is not None:
                tracker.add(sample, contribution, label_map, result)
            done.append(str(sample.image_id))
            if save_predictions and out is not None:
                _save_prediction(label_map, out / "preds" / f"{sample.image_id}.png", num_classes)
            if checkpoint_every > 0 and n % checkpoint_every == 0:
                checkpoint()
            if ckpt is not None:
                consistent = (evaluator.counts.copy(), len(done))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM where the command line makes it one: keep the work
        checkpoint(*consistent)  # as of the last finished image (the signal may land between two updates)
        raise
    elapsed = time.perf_counter() - start
    checkpoint()
    total = all_reduce_sum(evaluator.counts, info)  # (C, C + 1): last column UNLABELLED
    if class_names is None:
        seg_names = getattr(segmenter, "class_names", None)
        class_names = (list(map(str, seg_names)) if seg_names and len(seg_names) == num_classes
                       else [str(i) for i in range(num_classes)])
    merged = SemanticEvaluator(num_classes, ignore_index, class_names)
    merged.add_matrix(total)
    metrics = merged.compute()
    gathered = tracker.gather(info) if tracker is not None else None
    if info.rank == 0:
        if out is not None:
            np.save(out / "confusion.npy", merged.matrix)
            write_json(out / "metrics.json", _report(segmenter, dataset, metrics, len(samples),
                                                     info, elapsed, ignore_index))
        if gathered is not None and report_dir is not None:
            _write_report(report_dir, gathered, dataset, metrics, merged.matrix, out, len(samples), resume)
        if progress:
            print(metrics.table())
    barrier(info)
    return metrics


class _ReportTracker:
    """Per-image scores and the worst images' predictions (bounded) for the report."""

    def __init__(self, worst: int) -> None:
        from ovdense.viz.report import WorstImages

        self.worst = WorstImages(worst)
        self.per_image: list[tuple[str, float, float]] = []
        self.has_background = False

    def add(self, sample: Any, contribution: np.ndarray, label_map: np.ndarray, result: Any) -> None:
        from ovdense.viz.report import image_scores

        miou, acc = image_scores(contribution)
        self.per_image.append((str(sample.image_id), miou, acc))
        self.has_background = bool(getattr(result, "has_background", False))
        small = label_map.astype(np.int16) if label_map.size and label_map.max() < 2 ** 15 else label_map
        self.worst.offer(miou, str(sample.image_id), str(sample.image_path), sample.gt_path, small)

    def gather(self, info: DistInfo) -> "_ReportTracker":
        """Every rank's scores and worst images on every rank (the global worst N are among them)."""
        from ovdense.distributed import all_gather_lists

        if not info.distributed:
            return self
        merged = _ReportTracker(self.worst.k)
        parts = all_gather_lists([(self.per_image, self.worst.items(), self.has_background)], info)
        for per_image, worst, bg in parts:
            merged.per_image.extend(per_image)
            merged.has_background |= bg
            for w in worst:
                merged.worst.offer(w.score, w.image_id, w.image_path, w.gt_path, w.prediction)
        return merged


def _write_report(report_dir: Path, tracker: _ReportTracker, dataset: SemanticDataset, metrics: SemanticMetrics,
                  confusion: np.ndarray, out: Path | None, num_images: int, resumed: bool) -> str:
    """Pictures + ``report.html`` of a finished run (rank 0)."""
    from ovdense.io.images import load_image
    from ovdense.viz.report import write_semantic_report, write_worst_pictures

    worst = write_worst_pictures(report_dir, tracker.worst.items(), metrics.class_names, load_image,
                                 dataset.load_gt, has_background=tracker.has_background)
    info = {"dataset": dataset.name, "images": num_images}
    if resumed:
        info["per-image part"] = f"the {len(tracker.per_image)} images evaluated after resuming"
    files = [out / "metrics.json", out / "confusion.npy"] if out is not None else []
    return write_semantic_report(report_dir, metrics, confusion, worst=worst, per_image=tracker.per_image,
                                 title=f"Semantic segmentation: {dataset.name}", info=info, files=files)


def _report(
    segmenter: Any,
    dataset: SemanticDataset,
    metrics: SemanticMetrics,
    num_images: int,
    info: DistInfo,
    elapsed_s: float,
    ignore_index: int,
) -> dict:
    """Content of ``metrics.json``."""
    spec = getattr(dataset, "spec", None)
    return {
        "task": "semantic",
        "dataset": dataset.name,
        "data_root": str(getattr(dataset, "root", "")),
        "num_images": num_images,
        "num_classes": int(dataset.num_classes),
        "reduce_zero_label": bool(getattr(spec, "reduce_zero_label", False)),
        "ignore_index": ignore_index,
        **metrics.to_dict(),
        "world_size": info.world_size,
        "rank0_seconds": round(elapsed_s, 3),
        "config": config_to_dict(getattr(segmenter, "config", None)),
        "versions": collect_versions(),
    }
