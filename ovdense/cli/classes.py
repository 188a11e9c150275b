"""Class-list options and helpers that ``segment``, ``detect`` and ``encode-classes`` share."""
from __future__ import annotations

import argparse
import os
from typing import Any, List

from .common import UserError, check_classes_file


def _classes_from_args(args: argparse.Namespace):
    """(classes, background) from --classes/--classes-file/--background(-first); None = the config's."""
    if args.classes and args.classes_file:
        raise UserError("give --classes or --classes-file, not both")
    if args.background_first and not args.classes_file:
        raise UserError("--background-first says the first line of --classes-file is the background; "
                        "with --classes use --background NAMES")
    if args.background_first and args.background is not None:
        raise UserError("give --background or --background-first, not both")
    if args.classes_file:
        check_classes_file(args.classes_file)
        return args.classes_file, ("first" if args.background_first else args.background)
    if args.classes:
        return list(args.classes), args.background
    return None, args.background


def _config_classes(cfg: Any):
    from ..config import resolve_names_path

    spec = cfg.get("classes") or {}
    return resolve_names_path(spec.get("names"), cfg), spec.get("background")


def _vocabulary(classes: Any, background: Any):
    from ..text.vocabulary import build_vocabulary

    try:
        return build_vocabulary(classes, background=background)
    except (ValueError, TypeError) as err:
        raise UserError(f"classes: {err}") from None


def _categories(vocab) -> List[dict]:
    return [{"id": i, "name": n, "synonyms": list(s)}
            for i, (n, s) in enumerate(zip(vocab.class_names, vocab.synonyms))]


def _default_out(base: str = os.path.join("runs", "segment")) -> str:
    """``runs/segment/exp``, ``exp2``, ... : the first that holds no run (Ultralytics' rule)."""
    from ..apps.folder import has_previous_run

    n = 1
    while True:
        path = os.path.join(base, "exp" if n == 1 else f"exp{n}")
        if not os.path.exists(path) or (os.path.isdir(path) and not has_previous_run(path)
                                        and not os.listdir(path)):
            return path
        n += 1


def _add_class_file_args(group: Any) -> None:
    """The class options that ``segment`` and ``encode-classes`` share (besides the names)."""
    group.add_argument("--classes-file", help='name file: one class per line, synonyms separated by ", " or "; "')
    group.add_argument("--background", help='background synonyms to add as class 0, e.g. "sky, wall, floor"')
    group.add_argument("--background-first", action="store_true",
                       help="the first line of --classes-file is the background class")
