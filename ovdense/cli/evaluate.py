"""Command-line front ends: ``ovdense eval-semantic`` and ``ovdense eval-coco``.

``register_cli(subparsers)`` adds both subcommands to the main ``ovdense`` parser; each sets
``func`` (call ``args.func(args)``, returns an exit code). ``main_semantic`` / ``main_coco``
are the same commands as standalone programs (``tools/eval_semseg.py``, ``tools/eval_coco.py``).

Examples::

    ovdense eval-semantic --config sclip_voc21 --data-root data/VOCdevkit/VOC2012
    ovdense eval-semantic --method naclip --dataset ade20k --data-root data/ade/ADEChallengeData2016
    torchrun --nproc_per_node 4 tools/eval_semseg.py --config C --data-root data --resume
    ovdense eval-coco --config C --gt instances_val2017.json --images val2017 --limit 500

Every input (data root and its layout, annotation file, image folder, class file, output folder,
device, config) is checked before the model is loaded; a user error is one ``error: ...`` line
and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["Terminated", "add_coco_args", "add_semantic_args", "interrupted_exit_code", "main_coco", "main_semantic",
           "register_cli", "sigterm_as_interrupt"]


SEMANTIC_EXAMPLES = """\
examples:
  ovdense eval-semantic --config sclip_voc21 --data-root data/VOCdevkit/VOC2012
  ovdense eval-semantic --method naclip --dataset ade20k --data-root data/ade/ADEChallengeData2016 --batch-size 32
  ovdense eval-semantic --config naclip_voc21 --data-root data/VOC2012 --pretrained /weights/ViT-B-16.pt --limit 50
  ovdense eval-semantic --method sclip --img-dir photos/ --ann-dir labels/ --classes-file names.txt   # your own data

Writes OUT/metrics.json (mIoU, aAcc, mAcc, per class), confusion.npy, and preds/<id>.png with
--save-predictions, and prints where. Under torchrun each process takes a share of the images.
The checkpoints (state_rank*.npz, the first written before the first image, another on Ctrl-C or
SIGTERM) record the config, classes and dtype: --resume refuses a run that differs, and an --out
holding a run is refused unless --resume or --overwrite.
"""

COCO_EXAMPLES = """\
examples:
  ovdense eval-coco --config naclip_coco_object --gt annotations/instances_val2017.json --images val2017
  ovdense eval-coco --method sclip --gt ann.json --images imgs/ --classes-file names.txt --no-background --limit 500
  ovdense eval-coco --config C --gt ann.json --images imgs/ --out runs/coco --overwrite --verbose

Writes OUT/coco_results.json (COCO result format), metrics_coco.json (bbox/segm AP, the semantic
mIoU, whether a background class was added, the skipped unreadable images) and prints where.
An OUT that holds a previous run's metrics_coco.json is refused unless --overwrite.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by both commands (the model options are the same as ``ovdense segment``'s)."""
    from ovdense.cli.common import add_model_options

    add_model_options(p, batch_help="windows (crops) per forward pass (runtime.batch_size); same as --batch-size")
    p.add_argument("--batch-size", dest="windows_per_batch", type=_positive, default=None, metavar="N",
                   help="windows (crops) per forward pass; images are evaluated one at a time "
                        "(default: the config's runtime.batch_size, 16)")
    p.add_argument("--limit", type=_positive, default=None, help="evaluate the first N images only")
    p.add_argument("--classes-file", default=None, help="class-name file (one class per line)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no printed tables")


def _positive(text: str) -> int:
    from ovdense.cli.common import positive_batch

    return positive_batch(text)


def add_semantic_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``eval-semantic``."""
    _add_common(p)
    p.add_argument("--data-root", default=None, help="folder holding the benchmark layout (or --img-dir/--ann-dir)")
    p.add_argument("--dataset", default=None,
                   help="voc21, voc20, pc60, pc59, coco_stuff, coco_object, cityscapes, ade20k "
                        "(default: the config's dataset_type); with --method it also picks the config")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/eval-semantic/<dataset>, or <dataset>-2, -3, ... when that holds "
                        "a run; with --resume or --overwrite: runs/eval-semantic/<dataset>)")
    p.add_argument("--save-predictions", action="store_true", help="write preds/<id>.png (evaluated class indices)")
    p.add_argument("--prediction-format", choices=("eval", "dataset"), default="eval",
                   help="with --save-predictions, 'dataset' also writes preds_dataset/<id>.png in the label files' "
                        "own index space (mmseg's format_only: +1 and unlabelled 0 for reduce-zero-label datasets "
                        "such as ADE20K, VOC20, PC59)")
    own = p.add_argument_group("your own data (instead of --data-root: mmseg's CustomDataset)")
    own.add_argument("--img-dir", default=None, help="image folder (searched recursively)")
    own.add_argument("--ann-dir", default=None,
                     help="label folder: same relative paths, class index per pixel, 255 ignored")
    own.add_argument("--img-suffix", default=".jpg", help="image file suffix")
    own.add_argument("--seg-suffix", default=".png", help="label file suffix replacing --img-suffix")
    own.add_argument("--reduce-zero-label", action="store_true",
                     help="labels start at 1 and 0 is ignored (mmseg's reduce_zero_label)")
    own.add_argument("--background-first", action="store_true",
                     help="the first line of --classes-file is a background class (class 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its state_rank*.npz checkpoints); refused if the config, "
                        "classes or dtype differ from the recorded ones")
    p.add_argument("--overwrite", action="store_true",
                   help="remove a previous run's results in --out first (otherwise an --out holding one is refused "
                        "unless --resume)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="images between checkpoints")
    p.add_argument("--report", action="store_true",
                   help="also write OUT/report/report.html: per-class IoU bars, confusion matrix, the worst images "
                        "(needs matplotlib: pip install 'ovdense[report]')")
    p.add_argument("--report-worst", type=_positive, default=8, metavar="N",
                   help="image | ground truth | prediction of the N images with the lowest mIoU in the report")
    p.set_defaults(func=run_semantic)
    return p


def add_coco_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``eval-coco``."""
    _add_common(p)
    p.add_argument("--gt", "--ann-file", dest="gt", required=True, help="COCO instances JSON")
    p.add_argument("--images", required=True, help="image folder of that JSON")
    p.add_argument("--background", action=argparse.BooleanOptionalAction, default=True,
                   help="add a background class 0 that maps to no category (its pixels make no instance); its "
                        "synonyms are 'background', or the first line of --classes-file when that line starts with "
                        "'background' or the file has one line more than the categories. The summary and "
                        "metrics_coco.json say whether it was added")
    p.add_argument("--strategy", "--proposals", dest="proposals", default=None,
                   help="proposal source of the Detector (ovdense.registry.PROPOSALS): connected_components (turns "
                        "the label map into instances; the default without SAM) or sam_automatic (the default with "
                        "--sam-checkpoint or a config with features.sam)")
    p.add_argument("--scorer", default=None,
                   help="region scorer of the Detector (ovdense.registry.SCORERS, e.g. mask_pooling); needed for "
                        "class-agnostic proposal sources (default mask_pooling for them)")
    from ovdense.cli.detection_options import add_detection_args, add_sam_args

    add_sam_args(p)
    add_detection_args(p)
    p.add_argument("--min-area", type=int, default=0, help="smallest instance, in pixels")
    p.add_argument("--iou-type", default="bbox,segm", help="comma list of bbox, segm")
    p.add_argument("--no-semantic", action="store_true", help="skip the semantic mIoU")
    p.add_argument("--crowd", default="label", choices=("label", "ignore", "skip"),
                   help="crowd regions in the semantic GT")
    p.add_argument("--out", default=None, help="output folder (default runs/eval-coco)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of a previous run in --out (otherwise an --out holding "
                        "metrics_coco.json is refused)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image (exit 2) instead of skipping it with a warning "
                        "(skipped images are left out of the metrics and listed in metrics_coco.json)")
    p.add_argument("--verbose", action="store_true",
                   help="also print pycocotools' own output and the per-category AP and per-class IoU tables")
    p.add_argument("--report", action="store_true",
                   help="also write OUT/report/report.html: AP table, precision-recall curves, per-category AP "
                        "(needs matplotlib: pip install 'ovdense[report]')")
    p.set_defaults(func=run_coco)
    return p


def register_cli(subparsers: Any) -> None:
    """Add ``eval-semantic`` and ``eval-coco`` to an ``argparse`` subparsers object."""
    from ovdense.cli.common import HelpFormatter

    add_semantic_args(subparsers.add_parser(
        "eval-semantic", help="mIoU on a semantic-segmentation benchmark (mmseg conventions)",
        description="mIoU on a semantic-segmentation benchmark, with mmseg's conventions.",
        epilog=SEMANTIC_EXAMPLES, formatter_class=HelpFormatter))
    add_coco_args(subparsers.add_parser(
        "eval-coco", help="COCO bbox/segm AP (pycocotools) and semantic mIoU",
        description="COCO bbox/segm AP (pycocotools) from instances built from the semantic output, and the "
                    "semantic mIoU of the painted ground truth.",
        epilog=COCO_EXAMPLES, formatter_class=HelpFormatter))


def _build_segmenter(args: argparse.Namespace) -> Any:
    """The segmenter of ``--config``/``--method`` with the command-line overrides (checked first;
    one GPU per rank under torchrun)."""
    from ovdense.cli.common import build_segmenter, load_cli_config

    cfg = getattr(args, "resolved_config", None)
    if cfg is None:
        cfg = load_cli_config(args, dataset=getattr(args, "dataset", None))
    return build_segmenter(cfg, args)


def _peek_config(args: argparse.Namespace) -> Any:
    """The config as written (no overrides, no checks), for its dataset_type; None if unreadable."""
    from ovdense.cli.common import UserError, resolve_config_name
    from ovdense.config import load_config

    path = resolve_config_name(args, getattr(args, "dataset", None))  # UserError: unknown name
    try:
        return load_config(path)
    except Exception as err:  # reported by _build_segmenter with the full checks
        if isinstance(err, (KeyboardInterrupt, UserError)):
            raise
        return None


def _config_path(args: argparse.Namespace) -> str:
    from ovdense.cli.common import resolve_config_name

    return resolve_config_name(args, getattr(args, "dataset", None))


def _current_classes(segmenter: Any) -> list[str] | None:
    """Class names the segmenter is set up with, if it exposes them."""
    for holder in (segmenter, getattr(segmenter, "vocabulary", None)):
        names = getattr(holder, "class_names", None) if holder is not None else None
        if names:
            return list(names)
    return None


def _find_class_file(name: str, config_path: str) -> Path | None:
    """Look for a class-name file next to the config, in ./configs and in the repo's configs."""
    import ovdense

    roots = [Path(config_path).parent, Path.cwd() / "configs"]
    pkg = getattr(ovdense, "__file__", None) or next(iter(getattr(ovdense, "__path__", [])), None)
    if pkg:
        base = Path(pkg).parent if str(pkg).endswith(".py") else Path(pkg)
        roots += [base.parent / "configs", base / "configs"]
    for root in roots:
        for cand in (root / name, root / "names" / name, root.parent / "names" / name):
            if cand.is_file():
                return cand
    return None


def _set_name_file(segmenter: Any, path: str, background: bool) -> None:
    """``set_classes(path)``; the first line is the background when the dataset has one."""
    import inspect

    try:
        params = inspect.signature(segmenter.set_classes).parameters
    except (TypeError, ValueError):
        params = {}
    if background and "background" in params:
        segmenter.set_classes(path, background="first")
    else:
        segmenter.set_classes(path)


def _dataset_name(args: argparse.Namespace, cfg: Any) -> str:
    """``--dataset`` or the config's ``dataset_type`` (or ``dataset.type``)."""
    name = args.dataset or cfg.get("dataset_type")
    if not name and isinstance(cfg.get("dataset"), dict):
        name = cfg.get("dataset").get("type")
    if not name:
        from ovdense.cli.common import UserError

        raise UserError("no dataset: pass --dataset NAME or set dataset_type in the config")
    return str(name)


def _report_kwargs(args: argparse.Namespace, worst: bool) -> dict:
    """``report=True`` (and the worst-N count) when asked for; matplotlib is checked before the model."""
    if not getattr(args, "report", False):
        return {}
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from ovdense.cli.common import UserError

        raise UserError("--report draws charts with matplotlib, which is not installed: pip install 'ovdense[report]'")
    kwargs = {"report": True}
    if worst:
        kwargs["report_worst"] = args.report_worst
    return kwargs


def run_semantic(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Handler of ``eval-semantic``."""
    from ovdense.cli.common import run_guarded

    return run_guarded(lambda: _run_semantic(args))


def _run_semantic(args: argparse.Namespace) -> int:
    from ovdense.cli.common import UserError, check_classes_file, check_device, check_dir, check_output_dir
    from ovdense.datasets import build_dataset, resolve_name
    from ovdense.distributed import env_world
    from ovdense.evaluation.semantic_runner import evaluate_semantic

    # every input first: no model is loaded before these pass
    check_device(args.device)
    check_classes_file(args.classes_file)
    if args.img_dir or args.ann_dir:
        dataset = _custom_dataset(args)
        name = dataset.name
    else:
        if args.data_root is None:
            raise UserError("pass --data-root (a benchmark layout) or --img-dir and --ann-dir (your own data)")
        check_dir(args.data_root, "data root")
        cfg = _peek_config(args)
        name = resolve_name(_dataset_name(args, cfg or {}))
        dataset = build_dataset(name, args.data_root, limit=args.limit)  # DatasetError: missing parts
    if len(dataset) == 0:
        raise UserError(f"dataset {name!r} under {args.data_root} has no images")
    out = args.out or _default_semantic_out(name, args.resume or args.overwrite)
    check_output_dir(out)
    _check_semantic_out(args, out)  # a previous run: refused, removed (--overwrite) or checked (--resume)
    report = _report_kwargs(args, worst=True)
    classes_file = args.classes_file
    if classes_file is None:
        found = _find_class_file(dataset.spec.class_file, _config_path(args))
    from ovdense.text.embedding import text_progress

    with text_progress(not args.quiet):
        segmenter = _build_segmenter(args)
        current = _current_classes(segmenter)
        if classes_file is None and (current is None or len(current) != dataset.num_classes):
            if found is None:
                raise UserError(f"class-name file {dataset.spec.class_file} not found next to the "
                                "config or in the shipped configs; pass --classes-file")
            classes_file = str(found)
        if classes_file is not None:
            _set_name_file(segmenter, classes_file, dataset.spec.background)
    metrics = evaluate_semantic(segmenter, dataset, out_dir=out,
                                save_predictions=args.save_predictions, progress=not args.quiet,
                                resume=args.resume, checkpoint_every=args.checkpoint_every, **report)
    if env_world()[0] != 0:
        return 0
    if args.save_predictions and args.prediction_format == "dataset":
        from ovdense.apps.custom_dataset import to_dataset_index_space

        to_dataset_index_space(str(Path(out) / "preds"), str(Path(out) / "preds_dataset"),
                               bool(getattr(dataset.spec, "reduce_zero_label", False)))
    if args.quiet:
        print(f"{name}: mIoU {metrics.mIoU:.2f}  aAcc {metrics.aAcc:.2f}  mAcc {metrics.mAcc:.2f}")
    print(f"metrics: {Path(out) / 'metrics.json'}")
    print(f"confusion matrix: {Path(out) / 'confusion.npy'}")
    if args.save_predictions:
        dataset_space = f" (dataset index space: {Path(out) / 'preds_dataset'})"
        print(f"predictions: {Path(out) / 'preds'}" + (dataset_space if args.prediction_format == "dataset" else ""))
    if report:
        print(f"report: {Path(out) / 'report' / 'report.html'}")
    return 0


#: What an eval-semantic run writes in its --out (``--overwrite`` removes exactly these).
_SEMANTIC_FILES = ("metrics.json", "confusion.npy")
_SEMANTIC_FOLDERS = ("preds", "preds_dataset", "report")


def _semantic_run_files(out: str) -> list:
    """The files in ``out`` that show a previous eval-semantic run (results or checkpoints)."""
    folder = Path(out)
    if not folder.is_dir():
        return []
    return sorted([f for f in _SEMANTIC_FILES if (folder / f).is_file()]
                  + [p.name for p in folder.glob("state_rank*.npz")])


def _default_semantic_out(name: str, existing_ok: bool) -> str:
    """``runs/eval-semantic/<name>``; when that holds a run (and neither --resume nor --overwrite
    was given, which mean that folder), ``<name>-2``, ``<name>-3``, ... : the first without one."""
    base = Path("runs") / "eval-semantic" / name
    if existing_ok:
        return str(base)
    n = 1
    while _semantic_run_files(str(base if n == 1 else base.with_name(f"{name}-{n}"))):
        n += 1
    return str(base if n == 1 else base.with_name(f"{name}-{n}"))


def _check_semantic_out(args: argparse.Namespace, out: str) -> None:
    """Before the model: a previous run in ``out`` needs --resume (whose config must match the
    recorded one) or --overwrite (rank 0 removes its results); refused otherwise."""
    import shutil

    from ovdense.cli.common import UserError
    from ovdense.distributed import env_world

    present = _semantic_run_files(out)
    if not present:
        return
    if args.overwrite:
        if env_world()[0] == 0:  # under torchrun rank 0 clears before any rank writes (after the rendezvous)
            for name in present:
                (Path(out) / name).unlink(missing_ok=True)
            for name in _SEMANTIC_FOLDERS:
                shutil.rmtree(Path(out) / name, ignore_errors=True)
        return
    if not args.resume:
        raise UserError(f"output folder {out} already holds an evaluation ({', '.join(present)}): pass --resume to "
                        "continue it or --overwrite to start over (or choose another --out)")
    _check_resume_config(args, out)


def _check_resume_config(args: argparse.Namespace, out: str) -> None:
    """--resume: the config and dtype must be the recorded ones (checked again, with the classes,
    by the runner once the model is built)."""
    from ovdense.cli.common import UserError, load_cli_config
    from ovdense.distributed import env_world
    from ovdense.evaluation.semantic_runner import (RunMismatchError, check_fingerprint, config_fingerprint,
                                                    recorded_fingerprint, state_path)
    from ovdense.runtime import resolve_device, resolve_dtype

    ckpt = state_path(out, env_world()[0])
    if not ckpt.is_file():
        return
    cfg = load_cli_config(args, dataset=getattr(args, "dataset", None))
    try:
        dtype = str(resolve_dtype(args.dtype, resolve_device(args.device)))
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        check_fingerprint(recorded_fingerprint(ckpt), {"config": config_fingerprint(cfg), "dtype": dtype}, out)
    except RunMismatchError as err:
        raise UserError(str(err)) from None


def _custom_dataset(args: argparse.Namespace):
    """``--img-dir``/``--ann-dir`` with ``--classes-file``: a FolderDataset, checked before the model."""
    from ovdense.apps.custom_dataset import FolderDataset
    from ovdense.cli.common import UserError, check_dir
    from ovdense.text.vocabulary import read_name_file

    if not (args.img_dir and args.ann_dir):
        raise UserError("your own data needs both --img-dir and --ann-dir")
    if args.data_root:
        raise UserError("give --data-root (a benchmark) or --img-dir/--ann-dir (your own data), not both")
    if not args.classes_file:
        raise UserError("your own data needs --classes-file (one class per line, in label order)")
    check_dir(args.img_dir, "image folder")
    check_dir(args.ann_dir, "label folder")
    num_classes = len(read_name_file(args.classes_file))
    return FolderDataset(args.img_dir, args.ann_dir, num_classes, reduce_zero_label=args.reduce_zero_label,
                         img_suffix=args.img_suffix, seg_suffix=args.seg_suffix, class_file=args.classes_file,
                         background=args.background_first, limit=args.limit)


def run_coco(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Handler of ``eval-coco``."""
    from ovdense.cli.common import run_guarded

    return run_guarded(lambda: _run_coco(args))


def _run_coco(args: argparse.Namespace) -> int:
    from ovdense.cli.common import (EXIT_FAILED, UserError, check_classes_file, check_device, check_dir,
                                    check_file, check_output_dir, print_error)
    from ovdense.distributed import env_world
    from ovdense.evaluation.coco import (CocoEvalOptions, NoReadableImages, build_coco_vocabulary,
                                         evaluate_coco, load_coco_gt)

    # every input first: no model is loaded before these pass
    check_device(args.device)
    check_file(args.gt, "COCO annotation file")
    check_dir(args.images, "COCO image folder")
    check_classes_file(args.classes_file)
    iou_types = [t.strip() for t in args.iou_type.split(",") if t.strip()]
    bad = [t for t in iou_types if t not in ("bbox", "segm")]
    if bad or not iou_types:
        raise UserError(f"--iou-type: use bbox, segm or bbox,segm (got {args.iou_type!r})")
    if args.quiet and args.verbose:
        raise UserError("give --quiet or --verbose, not both")
    out = Path(args.out or Path("runs") / "eval-coco")
    metrics_file = out / "metrics_coco.json"
    if metrics_file.exists() and not args.overwrite:
        raise UserError(f"{out} already holds a previous run's results ({metrics_file.name}): pass --overwrite "
                        "to replace them, or choose another --out")
    check_output_dir(str(out))
    report = _report_kwargs(args, worst=False)
    build_coco_vocabulary(load_coco_gt(args.gt), args.classes_file, args.background)  # bad JSON, class lines
    from ovdense.cli.common import load_cli_config
    from ovdense.cli.detection_options import check_detector_section, detector_section

    cfg = load_cli_config(args, dataset=getattr(args, "dataset", None))
    if args.scorer is not None:
        args.scorer_type = args.scorer
    section = detector_section(cfg, args)
    proposals = dict(section.pop("proposals"))
    if args.min_area:
        proposals["min_area"] = args.min_area
    scorer = section.pop("scorer", None)
    check_detector_section(dict(proposals=proposals, scorer=scorer))
    options = CocoEvalOptions(
        classes_file=args.classes_file, background=args.background, strategy=proposals.pop("type"), scorer=scorer,
        strategy_options=proposals or None, detector_options=section or None,
        iou_types=tuple(iou_types), semantic=not args.no_semantic, crowd=args.crowd, limit=args.limit,
        out_dir=str(out), progress=not args.quiet, verbose=args.verbose, strict=args.strict, **report)
    from ovdense.text.embedding import text_progress

    try:
        with text_progress(not args.quiet), _WarningsToStderr("ovdense.evaluation.coco"):
            args.resolved_config = cfg  # with the SAM provider of --sam-checkpoint, when given
            segmenter = _build_segmenter(args)
            result = evaluate_coco(segmenter, args.gt, args.images, options)
    except NoReadableImages as err:
        print_error(err)
        return EXIT_FAILED
    if env_world()[0] != 0:
        return 0
    if args.quiet:
        for t, m in result.metrics.items():
            print(f"{t}: AP {m.AP:.3f}  AP50 {m.AP50:.3f}  AP75 {m.AP75:.3f}")
    print(f"metrics: {metrics_file}")
    print(f"results: {out / 'coco_results.json'}")
    if report:
        print(f"report:  {out / 'report' / 'report.html'}")
    return 0


class _WarningsToStderr:
    """Context manager: records of ``logger_name`` become one ``warning: ...`` line each on stderr,
    written through tqdm so that a progress bar stays intact (and not passed on to the root logger)."""

    def __init__(self, logger_name: str) -> None:
        import logging

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                import sys

                from tqdm import tqdm

                tqdm.write(f"warning: {record.getMessage()}", file=sys.stderr)

        self.logger = logging.getLogger(logger_name)
        self.handler = Handler(logging.WARNING)
        self.propagate = self.logger.propagate

    def __enter__(self) -> None:
        self.logger.addHandler(self.handler)
        self.logger.propagate = False

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self.propagate


# ---------------------------------------------------------------------------------- SIGTERM (every command)
class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, Slurm, ``docker stop``) while a command runs: handled as Ctrl-C is
    (finished work kept and recorded as interrupted), exit code 143."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated` in the main thread; a
    second one ends the process at once (the default action). Outside the main thread (where
    signal handlers cannot be set) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_exit_code(err: BaseException) -> int:
    """130 after Ctrl-C, 143 (128 + SIGTERM) after SIGTERM."""
    return 128 + signal.SIGTERM if isinstance(err, Terminated) else 130


def main_semantic(argv: Sequence[str] | None = None) -> int:
    """Standalone ``eval-semantic`` (used by ``tools/eval_semseg.py``)."""
    from ovdense.cli.common import Parser

    parser = add_semantic_args(Parser(description="ovdense semantic evaluation", epilog=SEMANTIC_EXAMPLES))
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt():  # SIGTERM (timeout, Slurm) as Ctrl-C: the checkpoint is saved
            return args.func(args)
    except KeyboardInterrupt as err:
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"{what}: the images evaluated so far are checkpointed; rerun with --resume to continue",
              file=sys.stderr)
        return interrupted_exit_code(err)


def main_coco(argv: Sequence[str] | None = None) -> int:
    """Standalone ``eval-coco`` (used by ``tools/eval_coco.py``)."""
    from ovdense.cli.common import Parser

    parser = add_coco_args(Parser(description="ovdense COCO evaluation", epilog=COCO_EXAMPLES))
    args = parser.parse_args(argv)
    return args.func(args)
