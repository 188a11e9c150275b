"""The ``ovdense`` command line: ``ovdense segment ...`` (and the evaluation subcommands)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="mmengine config (configs/<head>/<head>_<dataset>.py)")
    p.add_argument("--clip-model", help="override the config's open_clip model name (or model-config .json)")
    p.add_argument("--pretrained", help="override the weights: an open_clip tag or a local checkpoint path")
    p.add_argument("--head", help="override the head (ovdense.list_heads())")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:0, ...")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16, bf16 or auto")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config entries, e.g. decode.logit_scale=50 head.gaussian_std=3 windows.crop=0")


def build_segmenter_from_args(args, classes=None, background=None):
    """Config + CLI overrides -> OVSegmenter (classes set)."""
    from mmengine.config import DictAction

    from ..config import load_config, segmenter_from_config

    from ..distributed import env_world

    _, world, local = env_world()
    if world > 1 and args.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            args.device = f"cuda:{local}"  # one GPU per process under torchrun
    cfg = load_config(args.config)
    if args.cfg_options:
        parsed = argparse.Namespace()
        DictAction(option_strings=[], dest="o")(None, parsed, args.cfg_options)
        cfg.merge_from_dict(parsed.o)
    backbone = dict(cfg.get("backbone") or {})
    if getattr(args, "clip_model", None):
        backbone["clip_model"] = args.clip_model
    if getattr(args, "pretrained", None):
        backbone["pretrained"] = args.pretrained
    cfg.backbone = backbone
    if getattr(args, "head", None):
        cfg.head = dict(type=args.head)
    return segmenter_from_config(cfg, classes=classes, background=background, device=args.device, dtype=args.dtype)


def _classes_from_args(args):
    if args.classes and args.classes_file:
        raise SystemExit("give --classes or --classes-file, not both")
    if args.classes_file:
        if not os.path.isfile(args.classes_file):
            raise SystemExit(f"error: class-name file not found: {args.classes_file}")
        return args.classes_file
    return args.classes or None


def cmd_segment(args) -> int:
    from ..distributed import barrier, init_distributed, shutdown
    from ..apps.folder import merge_rank_records, segment_folder

    classes = _classes_from_args(args)
    background = args.background
    if background is None and args.background_first:
        background = "first"
    try:
        seg = build_segmenter_from_args(args, classes=classes, background=background)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if seg.vocabulary is None:
        print("error: no classes: pass --classes or --classes-file (or use a config with classes)", file=sys.stderr)
        return 2
    dist = init_distributed(seg.device)
    info = {"config": seg.config, "command": " ".join(sys.argv), "device": str(seg.device), "dtype": str(seg.dtype)}
    try:
        summary = segment_folder(seg, args.src, args.out, resume=args.resume, batch_size=args.batch_size,
                                 progress=not args.quiet and dist.rank == 0, save_overlays=not args.no_overlays,
                                 run_info=info, shard=(dist.rank, dist.world_size))
        barrier(dist)
        if dist.distributed and dist.rank == 0:
            merge_rank_records(args.out, dist.world_size)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished images are kept; rerun with --resume to continue", file=sys.stderr)
        return 130
    finally:
        shutdown(dist)
    print(f"{summary.done} segmented, {summary.skipped} already done, {len(summary.failed)} failed "
          f"({summary.seconds:.1f} s) -> {args.out}")
    for failure in summary.failed:
        print(f"  skipped: {failure['error']}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovdense", description="Open-vocabulary dense prediction with CLIP.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment every image below a folder")
    p.add_argument("src", help="image folder (searched recursively) or one image")
    p.add_argument("--classes", nargs="+", metavar="CLASS",
                   help='class names; each value is one class, synonyms separated by ", " (e.g. cat "dog, puppy")')
    p.add_argument("--classes-file", help='name file: one class per line, synonyms separated by ", " or "; "')
    p.add_argument("--background", help='background synonyms to add as class 0, e.g. "sky, wall, floor"')
    p.add_argument("--background-first", action="store_true",
                   help="the first line of --classes-file is the background class")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="skip images whose preds/<name>.json exists")
    p.add_argument("--batch-size", type=int, default=4, help="images whose windows share forward passes")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay JPGs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    p.set_defaults(func=cmd_segment)

    b = sub.add_parser("benchmark", help="time each head against a plain baseline (see --help)", add_help=False)
    b.set_defaults(func=None)  # dispatched in main() so that all its options pass through

    try:
        from .evaluate import register_cli
    except ImportError:
        register_cli = None
    if register_cli is not None:
        register_cli(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:
        from ..bench.benchmark import main as benchmark_main

        return benchmark_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
