"""``ovdense detect``: instance masks and boxes for the classes you name, over a folder.

The detector is the config's ``detector`` section (proposal source, region scorer, NMS,
limits) around its segmenter; the flags below override it. With a SAM checkpoint
(``--sam-checkpoint``) the proposals are SAM's automatic masks, classified by the dense
features pooled inside each mask and ranked by class probability x SAM's predicted IoU;
without SAM, the connected components of the semantic map.
"""
from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
from typing import Sequence

from . import common
from .common import (EXIT_FAILED, EXIT_OK, UserError, add_model_options, check_device, check_image_source,
                     check_output_dir, load_cli_config, resolve_config_name, run_guarded)
from .detection_options import add_detection_args, add_sam_args, check_detector_section, detector_section

DETECT_EXAMPLES = """examples:
  ovdense detect photos/ --classes cup bottle --sam-checkpoint sam_vit_b_01ec64.pth --out runs/cups
  ovdense detect "frames/*.png" --classes-file names.txt --sam-checkpoint sam_vit_h_4b8939.pth --sam-model vit_h
  ovdense detect photos/ --classes car person --proposals connected_components     # no SAM
  ovdense detect scenes/ --config configs/sam/sam_detect_tiny_synthetic.py         # the tiny synthetic models

Outputs: preds/<image>.json (RLE masks, boxes, scores), overlays/<image>.jpg, results.json (COCO
results) with images.json and categories.json, run.json. --resume continues a stopped run.
"""


def add_detect_args(p: argparse.ArgumentParser) -> None:
    from .classes import _add_class_file_args

    p.add_argument("src", help="image folder (recursive), one image, or a quoted glob pattern")
    c = p.add_argument_group("classes (default: the config's)")
    c.add_argument("--classes", nargs="+", metavar="CLASS",
                   help='class names; each value is one class, synonyms separated by ", "')
    _add_class_file_args(c)
    add_sam_args(p)
    p.add_argument("--proposals", default=None,
                   help="proposal source (ovdense.registry.PROPOSALS): sam_automatic (default with SAM) or "
                        "connected_components (default without)")
    add_detection_args(p)
    o = p.add_argument_group("run")
    o.add_argument("--out", default=None, help="output folder (default: runs/detect/exp, exp2, ...)")
    o.add_argument("--resume", action="store_true", help="continue a run in --out (classes and config must match)")
    o.add_argument("--overwrite", action="store_true", help="remove a previous run's outputs in --out first")
    o.add_argument("--no-overlays", action="store_true", help="do not write overlay JPGs")
    o.add_argument("--strict", action="store_true", help="exit 1 if any image failed (default: only if all did)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_options(p)
    p.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    return run_guarded(lambda: _detect(args, argv))


def _detect(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ..apps.detect_folder import detect_folder, write_coco_results
    from ..apps.folder import find_images, prepare_output, run_fingerprint
    from ..detector import Detector
    from .classes import _categories, _classes_from_args, _config_classes, _default_out, _vocabulary

    check_device(args.device)
    classes, background = _classes_from_args(args)
    check_image_source(args.src)
    is_glob = not os.path.exists(args.src) and glob.has_magic(args.src)
    if args.out is None:
        if args.resume:
            raise UserError("--resume needs the --out folder of the run to continue")
        args.out = _default_out(os.path.join("runs", "detect"))
    if os.path.isfile(args.out):
        raise UserError(f"output folder {args.out} exists and is not a folder")
    resolve_config_name(args)
    images = find_images(args.src, exclude=[args.out])
    if not images:
        print(f"error: no images {'match' if is_glob else 'found in'} {args.src}", file=sys.stderr)
        return EXIT_FAILED
    cfg = load_cli_config(args)
    section = detector_section(cfg, args)
    check_detector_section(section)
    if classes is None:
        classes, cfg_background = _config_classes(cfg)
        background = cfg_background if background is None else background
    if classes is None:
        raise UserError("no classes: pass --classes or --classes-file (or a config that names classes)")
    vocab = _vocabulary(classes, background)
    check_output_dir(args.out)
    config = cfg.to_dict()
    config["detector"] = section
    config["classes"] = {"names": [list(s) for s in vocab.synonyms], "background": vocab.has_background}
    fingerprint = run_fingerprint(_categories(vocab), config, str(args.dtype))
    fingerprint["task"] = "detect"
    from ..distributed import barrier, env_world, init_distributed, shutdown

    if env_world()[0] == 0:  # under torchrun rank 0 checks (and --overwrite clears) before any rank writes
        prepare_output(args.out, fingerprint, resume=args.resume, overwrite=args.overwrite)

    seg = common.build_segmenter(cfg, args, classes=classes, background=background)
    seg.config = config
    try:
        detector = Detector(seg, **section)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"detector: {err.args[0] if err.args else err}") from None
    info = {"config": config, "command": shlex.join(["ovdense", *argv]), "cwd": os.getcwd(),
            "device": str(seg.device), "dtype": str(args.dtype)}
    dist = init_distributed(seg.device)
    try:
        summary = detect_folder(detector, args.src, args.out, resume=args.resume,
                                progress=not args.quiet and dist.rank == 0, save_overlays=not args.no_overlays,
                                run_info=info, images=images, check_output=False,
                                shard=(dist.rank, dist.world_size))
        barrier(dist)
        if dist.rank != 0:
            return EXIT_OK
        if dist.distributed:
            from ..apps.folder import merge_rank_records

            merge_rank_records(args.out, dist.world_size)
        paths = write_coco_results(args.out, args.src, images)
    except KeyboardInterrupt as err:
        from .evaluate import Terminated, interrupted_exit_code

        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"{what}: finished images are kept in {args.out}; rerun with --resume to continue", file=sys.stderr)
        return interrupted_exit_code(err)
    except OSError as err:
        raise UserError(f"cannot write to {args.out}: {err.strerror or err}") from None
    finally:
        shutdown(dist)
    return common.finish_folder_run(
        summary, args.out, f"{summary.done} detected, {summary.skipped} already done, {len(summary.failed)} failed "
        f"({summary.seconds:.1f} s) -> {args.out} (COCO results: {paths['results']})", args.strict)
