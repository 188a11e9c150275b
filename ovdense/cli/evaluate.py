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
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_coco_args", "add_semantic_args", "main_coco", "main_semantic", "register_cli"]


SEMANTIC_EXAMPLES = """\
examples:
  ovdense eval-semantic --config sclip_voc21 --data-root data/VOCdevkit/VOC2012
  ovdense eval-semantic --method naclip --dataset ade20k --data-root data/ade/ADEChallengeData2016 --batch-size 32
  ovdense eval-semantic --config naclip_voc21 --data-root data/VOC2012 --pretrained /weights/ViT-B-16.pt --limit 50
  ovdense eval-semantic --method sclip --img-dir photos/ --ann-dir labels/ --classes-file names.txt   # your own data

Writes OUT/metrics.json (mIoU, aAcc, mAcc, per class), confusion.npy, and preds/<id>.png with
--save-predictions. Under torchrun each process takes a share of the images.
"""

COCO_EXAMPLES = """\
examples:
  ovdense eval-coco --config naclip_coco_object --gt annotations/instances_val2017.json --images val2017
  ovdense eval-coco --method sclip --gt ann.json --images imgs/ --classes-file names.txt --no-background --limit 500

Writes OUT/coco_results.json (COCO result format), metrics_coco.json (bbox/segm AP and the
semantic mIoU).
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
    p.add_argument("--out", default=None, help="output folder (default runs/eval-semantic/<dataset>)")
    p.add_argument("--save-predictions", action="store_true", help="write preds/<id>.png (evaluated class indices)")
    p.add_argument("--prediction-format", choices=("eval", "dataset"), default="eval",
                   help="with --save-predictions, 'dataset' also writes preds_dataset/<id>.png in the label files' "
                        "own index space (mmseg's format_only: +1 and unlabelled 0 for reduce-zero-label datasets "
                        "such as ADE20K, VOC20, PC59)")
    own = p.add_argument_group("your own data (instead of --data-root: mmseg's CustomDataset)")
    own.add_argument("--img-dir", default=None, help="image folder (searched recursively)")
    own.add_argument("--ann-dir", default=None, help="label folder: same relative paths, class index per pixel, 255 ignored")
    own.add_argument("--img-suffix", default=".jpg", help="image file suffix")
    own.add_argument("--seg-suffix", default=".png", help="label file suffix replacing --img-suffix")
    own.add_argument("--reduce-zero-label", action="store_true",
                     help="labels start at 1 and 0 is ignored (mmseg's reduce_zero_label)")
    own.add_argument("--background-first", action="store_true",
                     help="the first line of --classes-file is a background class (class 0)")
    p.add_argument("--resume", action="store_true", help="continue from out/state_rank*.npz")
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
    p.add_argument("--no-background", action="store_true", help="no background class 0")
    p.add_argument("--strategy", default="connected_components", help="instance strategy")
    p.add_argument("--min-area", type=int, default=0, help="smallest instance, in pixels")
    p.add_argument("--iou-type", default="bbox,segm", help="comma list of bbox, segm")
    p.add_argument("--no-semantic", action="store_true", help="skip the semantic mIoU")
    p.add_argument("--crowd", default="label", choices=("label", "ignore", "skip"),
                   help="crowd regions in the semantic GT")
    p.add_argument("--out", default=None, help="output folder (default runs/eval-coco)")
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
    out = args.out or str(Path("runs") / "eval-semantic" / name)
    check_output_dir(out)
    report = _report_kwargs(args, worst=True)
    classes_file = args.classes_file
    if classes_file is None:
        found = _find_class_file(dataset.spec.class_file, _config_path(args))
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
    if args.save_predictions and args.prediction_format == "dataset" and env_world()[0] == 0:
        from ovdense.apps.custom_dataset import to_dataset_index_space

        to_dataset_index_space(str(Path(out) / "preds"), str(Path(out) / "preds_dataset"),
                               bool(getattr(dataset.spec, "reduce_zero_label", False)))
    if args.quiet and env_world()[0] == 0:
        print(f"{name}: mIoU {metrics.mIoU:.2f}  aAcc {metrics.aAcc:.2f}  mAcc {metrics.mAcc:.2f}")
    return 0


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
    from ovdense.cli.common import UserError, check_classes_file, check_device, check_dir, check_file, check_output_dir
    from ovdense.evaluation.coco import evaluate_coco

    check_device(args.device)
    check_file(args.gt, "COCO annotation file")
    check_dir(args.images, "COCO image folder")
    check_classes_file(args.classes_file)
    iou_types = [t.strip() for t in args.iou_type.split(",") if t.strip()]
    bad = [t for t in iou_types if t not in ("bbox", "segm")]
    if bad or not iou_types:
        raise UserError(f"--iou-type: use bbox, segm or bbox,segm (got {args.iou_type!r})")
    out = args.out or str(Path("runs") / "eval-coco")
    check_output_dir(out)
    report = _report_kwargs(args, worst=False)
    segmenter = _build_segmenter(args)
    result = evaluate_coco(
        segmenter, args.gt, args.images, classes_file=args.classes_file,
        background=not args.no_background, strategy=args.strategy,
        strategy_options={"min_area": args.min_area} if args.min_area else None,
        iou_types=iou_types, semantic=not args.no_semantic, crowd=args.crowd, limit=args.limit,
        out_dir=out, progress=not args.quiet, **report)
    if args.quiet:
        for t, m in result.metrics.items():
            print(f"{t}: AP {m.AP:.3f}  AP50 {m.AP50:.3f}  AP75 {m.AP75:.3f}")
    return 0


def main_semantic(argv: Sequence[str] | None = None) -> int:
    """Standalone ``eval-semantic`` (used by ``tools/eval_semseg.py``)."""
    from ovdense.cli.common import Parser

    parser = add_semantic_args(Parser(description="ovdense semantic evaluation", epilog=SEMANTIC_EXAMPLES))
    args = parser.parse_args(argv)
    return args.func(args)


def main_coco(argv: Sequence[str] | None = None) -> int:
    """Standalone ``eval-coco`` (used by ``tools/eval_coco.py``)."""
    from ovdense.cli.common import Parser

    parser = add_coco_args(Parser(description="ovdense COCO evaluation", epilog=COCO_EXAMPLES))
    args = parser.parse_args(argv)
    return args.func(args)
