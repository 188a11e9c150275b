"""The ``ovdense`` command line: ``demo``, ``segment``, ``encode-classes``, ``configs``, ``eval-semantic``,
``eval-coco`` and ``benchmark``.

Exit codes: 0 done; 1 nothing produced (no image found, every image failed, or ``--strict`` and
one failed); 2 a user error, reported as one ``error: ...`` line on stderr; 130 interrupted
(Ctrl-C); 143 terminated (SIGTERM, handled as Ctrl-C is: finished work is kept and recorded).
Every input (source, output folder, class file, config, device, model name, head) is checked
before any model is loaded.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import shlex
import sys
from typing import Any, List, Optional, Sequence

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UserError,
    add_model_options,
    build_segmenter,
    check_device,
    check_file,
    check_image_source,
    check_output_dir,
    finish_folder_run,
    load_cli_config,
    positive_batch,
    print_error,
    probability,
    resolve_config_name,
    run_guarded,
)
from .classes import (_add_class_file_args, _categories, _classes_from_args, _config_classes, _default_out,
                      _vocabulary)
from .evaluate import Terminated, interrupted_exit_code, sigterm_as_interrupt

SEGMENT_EXAMPLES = """\
examples:
  ovdense segment photos/ --classes cat "dog, puppy" --background "sky, wall" --out runs/pets
  ovdense segment photos/ --config sclip_voc21 --out runs/voc          # VOC's 21 classes, SCLIP's protocol
  ovdense segment photo.jpg --method naclip --classes-file names.txt --pretrained /weights/ViT-B-16.pt
  ovdense segment photos/ --classes road car tree --threshold 0.3 --no-pamr --templates "a photo of a {}."
  ovdense segment photos/ --out runs/pets --resume                     # continue a stopped run (even kill -9)
  ovdense segment "photos/**/*.jpg" --classes car person --save-txt   # a glob (quoted); YOLO txt labels
  ovdense segment big.jpg --classes road car --resolution model --refine-at model   # cheap on big photos

Outputs (OUT): labels/<name>.png (class ids, palette PNG), overlays/<name>.jpg, preds/<name>.json,
categories.json and run.json (classes, config, command, failures; written before the first image,
so any stopped run can be resumed). <name> keeps the image's extension (a.jpg -> labels/a.jpg.png),
so a.jpg and a.png never overwrite each other. With --save-txt: txt/<name without extension>.txt
(one YOLO line per connected region: "class x_center y_center width height", normalised; with
--save-txt-format polygon "class x1 y1 x2 y2 ...") and classes.txt (the class of each txt id;
a background class gets none). Images above 4 MP get their own row progress bar.
"""

DEMO_EXAMPLES = """\
examples:
  ovdense demo                       # shipped images, shipped tiny CLIP, no network: writes ovdense-demo/
  ovdense demo --out /tmp/demo --head sclip

The tiny CLIP (3.7 M parameters) was trained on a synthetic world of textured grass, water and
sand with coloured shapes; it knows only those 9 classes. For real photos use `ovdense segment`
with real CLIP weights (open_clip tag or --pretrained FILE).
"""


# ---------------------------------------------------------------------------------- classes
# ---------------------------------------------------------------------------------- segment
def _segmenter_accepts(name: str) -> bool:
    """Whether this ovdense's OVSegmenter takes the constructor keyword ``name``."""
    import inspect

    from ..predictor import OVSegmenter

    return name in inspect.signature(OVSegmenter.__init__).parameters


def cmd_segment(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    return run_guarded(lambda: _segment(args, argv))


def _segment(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ..apps.folder import find_images, prepare_output, run_fingerprint
    from ..text.embedding import text_progress

    # 1. inputs, cheapest first; no model is loaded before all of them pass
    check_device(args.device)
    encoded = _vocabulary_file(args)
    classes, background = (encoded, None) if encoded is not None else _classes_from_args(args)
    check_image_source(args.src)
    is_glob = not os.path.exists(args.src) and glob.has_magic(args.src)
    if args.save_txt_format is not None:
        args.save_txt = True
    save_txt = (args.save_txt_format or "box") if args.save_txt else None
    if args.refine_at is not None and not _segmenter_accepts("refine_at"):
        raise UserError("--refine-at needs an ovdense whose OVSegmenter takes refine_at (not this one)")
    if args.out is None:
        if args.resume:
            raise UserError("--resume needs the --out folder of the run to continue")
        args.out = _default_out()
    if os.path.isfile(args.out):
        raise UserError(f"output folder {args.out} exists and is not a folder")
    resolve_config_name(args, args.dataset)  # an unknown config name fails before the folder walk
    images = find_images(args.src, exclude=[args.out])
    if not images:
        from ..io.images import IMAGE_EXTENSIONS

        where = f"match {args.src}" if is_glob else f"found in {args.src}"
        print(f"error: no images {where} (looked for {', '.join(IMAGE_EXTENSIONS)})", file=sys.stderr)
        return EXIT_FAILED
    cfg = load_cli_config(args, dataset=args.dataset)
    if args.refine_at is not None:  # a constructor keyword: a top-level config entry, recorded and checked
        cfg.refine_at = args.refine_at
    if args.select_classes:  # the config section select_classes (its options may come from --cfg-options)
        cfg.select_classes = {"type": "presence", **dict(cfg.get("select_classes") or {})}
    if args.references is not None:
        check_file(args.references, "reference file")
    if args.reference_weight is not None and args.references is None:
        raise UserError("--reference-weight needs --references FILE")
    if classes is None:
        classes, cfg_background = _config_classes(cfg)
        background = cfg_background if background is None else background
    if classes is None:
        raise UserError("no classes: pass --classes or --classes-file (or a config/--dataset that names classes)")
    vocab = encoded.vocabulary if encoded is not None else _vocabulary(classes, background)
    if encoded is not None:
        _check_vocabulary_width(encoded, _config_embed_dim(cfg), args.vocabulary)
    check_output_dir(args.out)
    config = cfg.to_dict()
    config["classes"] = {"names": [list(s) for s in vocab.synonyms], "background": vocab.has_background}
    if encoded is not None:  # other embeddings for the same names are another run (checked at --resume)
        config["classes"]["vocabulary_sha256"] = _file_sha256(args.vocabulary)
    if args.references is not None:  # other prototypes or weight are another run (checked at --resume)
        config["references"] = {"file": os.path.abspath(args.references), "sha256": _file_sha256(args.references),
                                "weight": 0.5 if args.reference_weight is None else args.reference_weight}
    from ..runtime import resolve_device, resolve_dtype

    try:
        dtype = str(resolve_dtype(args.dtype, resolve_device(args.device)))  # as the segmenter will
    except ValueError as err:
        raise UserError(str(err)) from None
    fingerprint = run_fingerprint(_categories(vocab), config, dtype, resolution=args.resolution, save_txt=save_txt)
    from ..distributed import env_world

    if env_world()[0] == 0:  # under torchrun rank 0 checks (and --overwrite clears) before any rank writes
        prepare_output(args.out, fingerprint, resume=args.resume, overwrite=args.overwrite)

    # 2. the model
    from ..distributed import barrier, init_distributed, shutdown
    from ..apps.folder import merge_rank_records, segment_folder, write_contact_sheet

    with text_progress(not args.quiet):
        seg = build_segmenter(cfg, args, classes=classes, background=background)
    if encoded is not None:
        _check_vocabulary_width(encoded, seg.backbone.embed_dim, args.vocabulary)
    if args.references is not None:
        try:
            seg.set_references(args.references, config["references"]["weight"])
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from None
    seg.config = config
    dist = init_distributed(seg.device)
    info = {"config": config, "command": shlex.join(["ovdense", *argv]), "cwd": os.getcwd(),
            "device": str(seg.device), "dtype": str(seg.dtype)}
    try:
        summary = segment_folder(seg, args.src, args.out, resume=args.resume, batch_size=args.batch_size,
                                 progress=not args.quiet and dist.rank == 0, save_overlays=not args.no_overlays,
                                 run_info=info, shard=(dist.rank, dist.world_size), images=images,
                                 check_output=False, resolution=args.resolution, save_txt=save_txt)
        barrier(dist)
        if dist.distributed and dist.rank == 0:
            merge_rank_records(args.out, dist.world_size)
        sheet = None
        if dist.rank == 0 and not args.no_overlays and summary.done:
            sheet = write_contact_sheet(args.out)
    except KeyboardInterrupt as err:
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"{what}: finished images are kept in {args.out}; rerun with --resume to continue", file=sys.stderr)
        return interrupted_exit_code(err)
    except OSError as err:
        raise UserError(f"cannot write to {args.out}: {err.strerror or err}"
                        + (" (no space left on the device)" if err.errno == 28 else "")) from None
    finally:
        shutdown(dist)
    return finish_folder_run(summary, args.out, f"{summary.done} segmented, {summary.skipped} already done, "
                             f"{len(summary.failed)} failed ({summary.seconds:.1f} s) -> {args.out}"
                             + (f" (overview: {sheet})" if sheet else ""), args.strict)


# ---------------------------------------------------------------------------------- vocabulary files
def _vocabulary_file(args: argparse.Namespace):
    """The EncodedVocabulary of ``--vocabulary`` (None without it); refused with other class options."""
    path = getattr(args, "vocabulary", None)
    if path is None:
        return None
    given = [flag for flag, value in (("--classes", args.classes), ("--classes-file", args.classes_file),
                                      ("--background", args.background),
                                      ("--background-first", args.background_first)) if value]
    if given:
        raise UserError(f"give --vocabulary or {'/'.join(given)}, not both (the vocabulary file holds the classes)")
    check_file(path, "vocabulary file")
    from ..structures import EncodedVocabulary

    try:
        return EncodedVocabulary.load(path)
    except Exception as err:  # torch's unpickling, zip and key errors alike
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is not an ovdense vocabulary file (make one with `ovdense encode-classes`): "
                        f"{reason}") from None


def _config_embed_dim(cfg: Any) -> Optional[int]:
    """The text embedding width of the config's CLIP model, when known without loading it."""
    import json

    clip_model = (cfg.get("backbone") or {}).get("clip_model")
    if not isinstance(clip_model, str):
        return None
    try:
        if clip_model.endswith(".json"):
            with open(clip_model) as f:
                return int(json.load(f)["embed_dim"])
        import open_clip

        return int(open_clip.get_model_config(clip_model.replace("/", "-"))["embed_dim"])
    except Exception:  # unknown: checked once the model is loaded
        return None


def _check_vocabulary_width(encoded: Any, width: Optional[int], path: str) -> None:
    if width is not None and encoded.text.shape[1] != width:
        raise UserError(f"{path}: embeddings are {encoded.text.shape[1]} wide but this model's text embeddings are "
                        f"{width} wide: encode the classes with the same CLIP model "
                        f"(ovdense encode-classes --config ...)")


def _file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cmd_encode_classes(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    return run_guarded(lambda: _encode_classes(args))


def _encode_classes(args: argparse.Namespace) -> int:
    from ..text.embedding import text_progress

    check_device(args.device)
    args.classes = args.names or None
    classes, background = _classes_from_args(args)
    if classes is None:
        raise UserError("no classes: give NAMES or --classes-file")
    vocab = _vocabulary(classes, background)
    out = args.output
    if os.path.isdir(out):
        raise UserError(f"output {out} is a folder; give a file name such as vocab.pt")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UserError(f"output folder not found: {parent}")
    cfg = load_cli_config(args)
    with text_progress(not args.quiet):
        seg = build_segmenter(cfg, args, classes=vocab)
    from ..io.writers import atomic_path

    try:
        with atomic_path(out) as tmp:
            seg.encoded_vocabulary.save(tmp)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    print(f"{vocab.num_classes} classes ({vocab.num_queries} queries, {seg.encoded_vocabulary.text.shape[1]}-d) "
          f"-> {out}")
    return EXIT_OK


# ---------------------------------------------------------------------------------- demo
def demo_config(head: str = "maskclip") -> dict:
    """The shipped tiny CLIP's protocol: whole 64 px image, one template, scale 40."""
    from ..assets import asset_path

    return dict(
        backbone=dict(clip_model=asset_path("synth_clip", "synth-vit-tiny.json"),
                      pretrained=asset_path("synth_clip", "synth_clip.pt"), weights_format="open_clip"),
        head=dict(type=head),
        preprocess=dict(short_side=64),
        windows=dict(crop=0),
        decode=dict(logit_scale=40.0),
        text_encoder=dict(templates=["a photo of a {}."], cache_dir=""),  # 9 classes: no disk cache needed
    )


def cmd_demo(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    return run_guarded(lambda: _demo(args, argv))


def _demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import json
    import time

    from mmengine.config import Config

    from ..apps.folder import has_previous_run, segment_folder, write_contact_sheet
    from ..assets import asset_path, example_images
    from ..heads import list_heads

    check_device(args.device)
    if args.head not in list_heads():
        raise UserError(f"unknown head {args.head!r}; heads: {', '.join(list_heads())}")
    check_output_dir(args.out)
    overwrite = False
    if has_previous_run(args.out):
        try:
            with open(os.path.join(args.out, "run.json"), encoding="utf-8") as fh:
                overwrite = bool(json.load(fh).get("demo"))
        except (OSError, ValueError):
            overwrite = False
        if not overwrite:
            raise UserError(f"output folder {args.out} holds another run; choose another --out")
    t0 = time.perf_counter()
    cfg = Config(demo_config(args.head))
    args.dtype = "fp32"
    classes = asset_path("synth_classes.txt")
    seg = build_segmenter(cfg, args, classes=classes)
    images = example_images()
    info = {"demo": True, "config": seg.config, "command": shlex.join(["ovdense", *argv]), "cwd": os.getcwd(),
            "device": str(seg.device), "dtype": str(seg.dtype)}
    summary = segment_folder(seg, os.path.dirname(images[0]), args.out, batch_size=len(images),
                             progress=False, run_info=info, overwrite=overwrite, images=images)
    sheet = write_contact_sheet(args.out)
    seconds = time.perf_counter() - t0
    for path in images:
        name = os.path.basename(path)
        with open(os.path.join(args.out, "preds", name + ".json"), encoding="utf-8") as fh:
            record = json.load(fh)
        total = max(1, record["height"] * record["width"])
        areas = sorted(record["class_areas"].items(), key=lambda kv: -kv[1])
        found = ", ".join(f"{n} {100 * a / total:.0f}%" for n, a in areas if a)
        print(f"{name}: {found}")
    print(f"{summary.done} example images segmented in {seconds:.1f} s (model load included): overlays in "
          f"{os.path.join(args.out, 'overlays')}, all at a glance in {sheet}")
    return EXIT_OK if summary.done else EXIT_FAILED


# ---------------------------------------------------------------------------------- configs
def cmd_configs(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    from ..config import configs_dir, find_config, list_configs

    if args.name:
        try:
            path = find_config(args.name)
        except FileNotFoundError as err:
            return print_error(err)
        with open(path, encoding="utf-8") as fh:
            sys.stdout.write(fh.read())
        return EXIT_OK
    print(f"# shipped configs ({configs_dir()}); use as --config NAME or --method METHOD --dataset DATASET")
    for name in list_configs():
        print(name)
    return EXIT_OK


# ---------------------------------------------------------------------------------- parser
def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ovdense", description="Open-vocabulary semantic segmentation with CLIP: any class "
                    "names you type.",
                    epilog="examples:\n  ovdense demo\n  ovdense segment photos/ --classes cat dog --out runs/pets\n"
                           "  ovdense eval-semantic --config naclip_voc21 --data-root data/VOCdevkit/VOC2012\n"
                           "  ovdense configs\n\nRun `ovdense COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"ovdense {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    d = sub.add_parser("demo", help="segment the shipped example images with the shipped tiny CLIP (offline)",
                       description="Segment the shipped example images with the shipped tiny CLIP. Needs no "
                                   "network and no weights: a first check that everything works.",
                       epilog=DEMO_EXAMPLES)
    d.add_argument("--out", default="ovdense-demo", help="output folder (overlays/, labels/, preds/, run.json)")
    d.add_argument("--head", default="maskclip",
                   help="training-free head (vanilla, maskclip, sclip, clearclip, naclip)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    d.set_defaults(func=cmd_demo)

    p = sub.add_parser("segment", help="segment every image below a folder (labels, overlays, JSON records)",
                       description="Segment every image below a folder (recursively), one image, or the images "
                                   "a glob pattern matches, into the classes you name.", epilog=SEGMENT_EXAMPLES)
    p.add_argument("src", help="image folder (searched recursively; the output folder is skipped), one image, or a "
                               "quoted glob pattern such as \"photos/*.jpg\" (** spans folders)")
    c = p.add_argument_group("classes (default: the config's)")
    c.add_argument("--classes", nargs="+", metavar="CLASS",
                   help='class names; each value is one class, synonyms separated by ", " (e.g. cat "dog, puppy")')
    _add_class_file_args(c)
    c.add_argument("--dataset", default=None,
                   help="use the shipped config of this benchmark for --method (its protocol and classes), "
                        "e.g. voc21, ade20k")
    c.add_argument("--vocabulary", default=None, metavar="FILE",
                   help="classes with their text embeddings, written by `ovdense encode-classes` (instead of "
                        "--classes/--classes-file/--background: no text encoding at start)")
    o = p.add_argument_group("run")
    o.add_argument("--out", default=None, help="output folder (default: runs/segment/exp, exp2, ...)")
    o.add_argument("--resume", action="store_true",
                   help="continue a run in --out: skip finished images; refused if classes or config differ")
    o.add_argument("--overwrite", action="store_true", help="remove a previous run's outputs in --out first")
    o.add_argument("--batch-size", type=positive_batch, default=4, help="images whose windows share forward passes")
    o.add_argument("--no-overlays", action="store_true", help="do not write overlay JPGs")
    o.add_argument("--strict", action="store_true", help="exit 1 if any image failed (default: only if all did)")
    o.add_argument("--quiet", action="store_true", help="no progress bars (images, rows of big images, text encoding)")
    x = p.add_argument_group("outputs")
    x.add_argument("--resolution", choices=("input", "model"), default="input",
                   help="size of the label maps: the input image's, or the resized image the model saw "
                        "(far cheaper for big photos; overlays are drawn at that size)")
    x.add_argument("--refine-at", choices=("input", "model"), default=None,
                   help="where refiners such as PAMR run: on the logits at the output size (input, the reference "
                        "methods) or once at the model's size, then resized (model: far cheaper for big photos) "
                        "(default: the config's, else input)")
    x.add_argument("--select-classes", action="store_true",
                   help="per-image class selection before decoding (off by default): keep only the classes each "
                        "image plausibly contains, by CLIP's whole-image similarity and their area in the dense "
                        "logits (selector 'presence'; options via --cfg-options select_classes.KEY=VALUE)")
    x.add_argument("--references", default=None, metavar="FILE",
                   help="class prototypes from labelled reference images (ovdense add-references), fused with the "
                        "text of their classes")
    x.add_argument("--reference-weight", type=probability, default=None, metavar="W",
                   help="the prototypes' share in the fused class queries, 0-1 (default 0.5)")
    x.add_argument("--save-txt", action="store_true",
                   help="also write txt/<name>.txt: one YOLO line per connected region of each class "
                        "(class x_center y_center width height, normalised) and classes.txt naming the ids")
    x.add_argument("--save-txt-format", choices=("box", "polygon"), default=None,
                   help="box (YOLO detection) or polygon (YOLO segmentation: class x1 y1 x2 y2 ..., the region's "
                        "outline); implies --save-txt (default: box)")
    add_model_options(p)
    p.set_defaults(func=cmd_segment)

    e = sub.add_parser("encode-classes", help="encode class names once into a vocabulary file (segment --vocabulary)",
                       description="Encode class names with the config's CLIP text encoder (its templates) and write "
                                   "an EncodedVocabulary file: `ovdense segment --vocabulary FILE` and "
                                   "EncodedVocabulary.load(FILE) then start without encoding text.",
                       epilog="examples:\n  ovdense encode-classes cat \"dog, puppy\" --background sky -o pets.pt\n"
                              "  ovdense encode-classes --classes-file names.txt --config naclip_voc21 -o voc.pt\n"
                              "  ovdense segment photos/ --config naclip_voc21 --vocabulary voc.pt")
    e.add_argument("names", nargs="*", metavar="NAMES",
                   help='class names; each value is one class, synonyms separated by ", " (e.g. cat "dog, puppy")')
    _add_class_file_args(e)
    e.add_argument("-o", "--output", required=True, metavar="FILE", help="the vocabulary file to write (.pt)")
    e.add_argument("--quiet", action="store_true", help="no text-encoding progress bar")
    add_model_options(e)
    e.set_defaults(func=cmd_encode_classes)

    from .references import REFERENCES_EXAMPLES, add_references_args

    add_references_args(sub.add_parser(
        "add-references", help="class prototypes from a few labelled images (segment --references)",
        description="Average the segmenter's dense features over the labelled pixels of a few reference images, "
                    "per class, and write the prototypes to a file; `ovdense segment --references FILE` then "
                    "fuses them with the text of their classes.", epilog=REFERENCES_EXAMPLES), _add_class_file_args)

    from .detect import DETECT_EXAMPLES, add_detect_args

    add_detect_args(sub.add_parser("detect", help="instance masks and boxes for the classes you name (SAM + CLIP)",
                                   description="Detect instances of the classes you name in every image below a "
                                               "folder: SAM's automatic masks (or the semantic map's regions) "
                                               "classified by CLIP's dense features.", epilog=DETECT_EXAMPLES))

    g = sub.add_parser("configs", help="list the shipped configs, or print one",
                       description="List the shipped configs (usable by name with --config), or print one.")
    g.add_argument("name", nargs="?", help="a config name such as naclip_voc21")
    g.set_defaults(func=cmd_configs)

    b = sub.add_parser("benchmark", help="time each head against a plain baseline (see benchmark --help)",
                       add_help=False)
    b.set_defaults(func=None)  # dispatched in main() so that all its options pass through

    from .evaluate import register_cli

    register_cli(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:
        from ..bench.benchmark import main as benchmark_main

        return benchmark_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return int(args.func(args, argv) or 0)
    except KeyboardInterrupt as err:
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        if args.command == "eval-semantic":
            what += ": the images evaluated so far are checkpointed; rerun with --resume to continue"
        print(what, file=sys.stderr)
        return interrupted_exit_code(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
