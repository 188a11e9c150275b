"""What every ``ovdense`` subcommand shares: model options, first-class tuning flags, input
checks that run before any model is loaded, and one way to report a user error.

A user error (a missing folder, an unwritable output, an unknown device, model, head or config
section, offline weights, ...) is one ``error: ...`` line on stderr and exit code 2, never a
traceback. :class:`UserError` carries it; :func:`run_guarded` turns the library's own user-error
exceptions into it. ``OVDENSE_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from typing import Any, Callable, List, Optional, Sequence

#: Exit codes: 0 ok, 1 nothing was produced (no image found, every image failed), 2 user error.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DEFAULT_METHOD = "naclip"


class UserError(Exception):
    """A mistake in the command's inputs: printed as one ``error: ...`` line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ... (see PROG --help)``, exit 2) and defaults in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option; description and epilog (the examples) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def print_error(message: Any) -> int:
    """Print ``error: message`` (one line) and return exit code 2."""
    text = str(message)
    if isinstance(message, KeyError) and len(message.args) == 1:
        text = str(message.args[0])  # KeyError's str() adds quotes
    text = " ".join(text.split()) or type(message).__name__
    print(f"error: {text}", file=sys.stderr)
    return EXIT_USAGE


def user_error_types() -> tuple:
    """Exceptions that the library raises for bad inputs (not for bugs)."""
    from ..datasets import DatasetError
    from ..io.images import ImageLoadError

    return (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            DatasetError, ImageLoadError, KeyError, ValueError)


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command body; a user error becomes one ``error:`` line and exit code 2."""
    try:
        return func()
    except KeyboardInterrupt:
        raise
    except user_error_types() as err:
        if os.environ.get("OVDENSE_DEBUG"):
            raise
        return print_error(err)
    except OSError as err:  # disk full, read-only file system, ...
        if os.environ.get("OVDENSE_DEBUG"):
            raise
        return print_error(f"{err.strerror or err}: {err.filename}" if err.filename else err)


# ---------------------------------------------------------------------------------- options
def add_model_options(p: argparse.ArgumentParser, *, batch_help: Optional[str] = None) -> None:
    """The model options of every subcommand: which config, which weights, where, and the knobs."""
    g = p.add_argument_group("model (a config names every stage; these flags override it)")
    g.add_argument("--config", default=None,
                   help="a shipped config by name (naclip_voc21, sclip_ade20k, ...; METHOD_DATASET) or the path "
                        "of a config file (default: --method's protocol)")
    g.add_argument("--method", default=None,
                   help=f"vanilla, maskclip, sclip, clearclip or naclip: the method's shipped protocol "
                        f"(with --dataset: its config for that dataset) (default: {DEFAULT_METHOD} unless --config)")
    g.add_argument("--clip-model", help="open_clip model name (ViT-B-16) or model-config .json, replacing the config's")
    g.add_argument("--pretrained",
                   help="CLIP weights: an open_clip tag (openai, laion2b_s34b_b88k) or a local file "
                        "(/path/ViT-B-16.pt); 'none' for random weights")
    g.add_argument("--weights-format", choices=("auto", "openai", "open_clip"), default=None,
                   help="how to read a local weights file: OpenAI (QuickGELU) or open_clip (GELU) "
                        "(default: read from the file)")
    g.add_argument("--head", help="the training-free head replacing the config's (ovdense.list_heads())")
    g.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N")
    g.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16", "auto"), help="compute precision")
    t = p.add_argument_group("protocol knobs (each sets one config entry)")
    t.add_argument("--image-size", type=_size_arg, default=None, metavar="PX",
                   help="short side the image is resized to before the model (preprocess.short_side; "
                        "0 = keep the image's size)")
    t.add_argument("--window", type=_nonneg_int, default=None, metavar="PX",
                   help="sliding-window side (windows.crop; 0 = one whole-image pass)")
    t.add_argument("--stride", type=_pos_int, default=None, metavar="PX", help="sliding-window stride (windows.stride)")
    t.add_argument("--logit-scale", type=_pos_float, default=None, metavar="S",
                   help="softmax temperature on the cosines (decode.logit_scale)")
    t.add_argument("--threshold", type=_prob, default=None, metavar="P",
                   help="pixels whose best probability is lower become background, or unlabelled without a "
                        "background class (decode.background_threshold)")
    t.add_argument("--pamr", action=argparse.BooleanOptionalAction, default=None,
                   help="PAMR refinement on (10 steps, dilations 8,16) or off (refiners)")
    t.add_argument("--refiners", nargs="+", metavar="NAME", default=None,
                   help="refiner chain replacing the config's, e.g. pamr; 'none' for no refiner")
    t.add_argument("--templates", nargs="+", metavar="T", default=None,
                   help="prompt templates: a named set (openai80, simple, none), a text file with one template per "
                        "line, or templates with {} such as \"a photo of a {}.\"")
    t.add_argument("--windows-per-batch", type=_pos_int, default=None, metavar="N",
                   help=batch_help or "windows (crops) per forward pass (runtime.batch_size)")
    t.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any other config entry, e.g. head.gaussian_std=3 decode.area_threshold=0.1 "
                        "(values cannot contain spaces: use --templates for prompts)")


def _pos_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _size_arg(text: str) -> int:
    return _nonneg_int(text)


def _pos_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _prob(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type for a value in [0, 1]."""
    return _prob(text)


def positive_batch(text: str) -> int:
    """argparse type for image batch sizes."""
    return _pos_int(text)


# ---------------------------------------------------------------------------------- checks
def check_device(device: str) -> None:
    """Refuse a device that does not exist here, before anything is loaded."""
    import torch

    if device in (None, "auto"):
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available here (use --device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"device {device!r} requested but MPS is not available here")
    elif dev.type != "cpu":
        raise UserError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")


def check_file(path: Optional[str], what: str) -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise UserError(f"{what} is not a file: {path}")


def check_dir(path: Optional[str], what: str) -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if not os.path.isdir(path):
        raise UserError(f"{what} is not a folder: {path}")


def check_output_dir(path: str, what: str = "output folder") -> None:
    """Create ``path`` if needed and prove it writable (a small probe file), before any model load."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".tmp-probe-")
        try:
            os.write(fd, b"\0" * 65536)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as err:
        reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise UserError(f"cannot write to {what} {path}: {reason}") from None


def check_image_source(src: str) -> None:
    """The ``src`` of ``segment`` / ``detect``: an existing folder, image or glob whose fixed folder
    exists; a video file is refused with what to do instead (the tools write one output per image)."""
    import glob

    from ..io.sources import VIDEO_EXTENSIONS, source_base

    is_glob = not os.path.exists(src) and glob.has_magic(src)
    if not os.path.exists(src) and not is_glob:
        raise UserError(f"input folder not found: {src}")
    if is_glob and not os.path.isdir(source_base(src) or "."):
        raise UserError(f"input folder not found: {source_base(src)} (of the pattern {src})")
    if os.path.isfile(src) and src.lower().endswith(VIDEO_EXTENSIONS):
        raise UserError(f"{src} is a video; this tool takes images (a folder, one image or a glob): extract its "
                        f"frames first (e.g. ffmpeg -i {src} frames/%06d.png), or stream it in Python with "
                        f"OVSegmenter.predict_iter({src!r})")


def check_classes_file(path: Optional[str]) -> None:
    """A class-name file must exist and name at least one class."""
    if path is None:
        return
    if not os.path.isfile(path):
        raise UserError(f"class-name file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.strip() for line in fh]
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read class-name file {path}: {err}") from None
    if not any(lines):
        raise UserError(f"class-name file {path} names no class")


# ---------------------------------------------------------------------------------- config
def resolve_config_name(args: argparse.Namespace, dataset: Optional[str] = None) -> str:
    """``--config`` as given, else ``--method`` (default naclip) with ``dataset``: a shipped config name."""
    from ..config import find_config

    method = getattr(args, "method", None)
    if args.config:
        if method:
            raise UserError("give --config or --method, not both")
        if os.path.isfile(args.config):
            return args.config
        try:
            return find_config(args.config)
        except FileNotFoundError as err:
            raise UserError(str(err)) from None
    method = method or DEFAULT_METHOD
    if dataset:
        for suffix in _config_suffixes(dataset):
            try:
                return find_config(f"{method}_{suffix}")
            except FileNotFoundError:
                continue
        raise UserError(f"no shipped config {method}_{dataset}: the shipped configs cover voc21, voc20, context60, "
                        f"context59, coco_object, coco_stuff164k, cityscapes, ade20k (or pass --config FILE)")
    try:
        return find_config(method)
    except FileNotFoundError as err:
        raise UserError(f"unknown method {method!r}: " + str(err).split("(", 1)[-1].rstrip(")")) from None


def _config_suffixes(dataset: str) -> List[str]:
    """Config-file suffixes for a dataset name or alias (pc60 -> context60, coco_stuff -> coco_stuff164k)."""
    key = dataset.strip().lower().replace("-", "_")
    table = {"pc60": "context60", "pascal_context": "context60", "pc59": "context59", "coco_stuff": "coco_stuff164k",
             "city_scapes": "cityscapes", "ade": "ade20k"}
    return [key, table.get(key, key)]


def _read_templates(values: Sequence[str]) -> Any:
    """``--templates`` values: one named set, or files of templates, or literal templates."""
    if len(values) == 1 and values[0] in ("openai80", "simple", "none"):
        return None if values[0] == "none" else values[0]
    templates: List[str] = []
    for value in values:
        if "{}" in value:
            templates.append(value)
        elif os.path.isfile(value):
            with open(value, encoding="utf-8") as fh:
                templates += [line.rstrip("\n") for line in fh if line.strip() and not line.startswith("#")]
        else:
            raise UserError(f"--templates: {value!r} is neither a named set (openai80, simple, none), nor a file, "
                            f"nor a template with {{}}")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise UserError(f"--templates: template {bad[0]!r} has no {{}} for the class name")
    return templates


def apply_overrides(cfg: Any, args: argparse.Namespace) -> None:
    """``--cfg-options`` then the first-class flags, into the config's sections (in place)."""
    if args.cfg_options:
        from mmengine.config import DictAction

        parsed = argparse.Namespace()
        try:
            DictAction(option_strings=[], dest="o")(None, parsed, args.cfg_options)
        except (ValueError, TypeError, SyntaxError) as err:
            raise UserError(f"--cfg-options: {err}") from None
        cfg.merge_from_dict(parsed.o)

    def section(name: str) -> dict:
        value = cfg.get(name)
        return dict(value) if value else {}

    backbone = section("backbone")
    if getattr(args, "clip_model", None):
        backbone["clip_model"] = args.clip_model
    if getattr(args, "pretrained", None):
        backbone["pretrained"] = None if args.pretrained.lower() == "none" else args.pretrained
    if getattr(args, "weights_format", None):
        backbone["weights_format"] = args.weights_format
    cfg.backbone = backbone
    if getattr(args, "head", None):
        cfg.head = dict(type=args.head)
    if getattr(args, "image_size", None) is not None:
        pre = section("preprocess")
        pre["short_side"] = args.image_size or None
        cfg.preprocess = pre
    if getattr(args, "window", None) is not None or getattr(args, "stride", None) is not None:
        win = section("windows")
        if args.window is not None:
            win["crop"] = args.window
            if args.stride is None and args.window:
                win["stride"] = min(int(win.get("stride") or args.window), args.window)
        if args.stride is not None:
            win["stride"] = args.stride
        cfg.windows = win
    decode = section("decode")
    if getattr(args, "logit_scale", None) is not None:
        decode["logit_scale"] = args.logit_scale
    if getattr(args, "threshold", None) is not None:
        decode["background_threshold"] = args.threshold
    if decode:
        cfg.decode = decode
    refiners = None
    if getattr(args, "refiners", None):
        names = [n for n in args.refiners if n.lower() != "none"]
        refiners = [dict(type=n) for n in names]
    if getattr(args, "pamr", None) is not None:
        current = refiners if refiners is not None else [dict(r) for r in (cfg.get("refiners") or [])]
        others = [r for r in current if str(r.get("type", "")).lower() != "pamr"]
        kept = [r for r in current if str(r.get("type", "")).lower() == "pamr"]
        refiners = others + ((kept or [dict(type="pamr", steps=10, dilations=(8, 16))]) if args.pamr else [])
    if refiners is not None:
        cfg.refiners = refiners
    if getattr(args, "templates", None):
        text = section("text_encoder")
        text["templates"] = _read_templates(args.templates)
        cfg.text_encoder = text
    if getattr(args, "windows_per_batch", None):
        runtime = section("runtime")
        runtime["batch_size"] = args.windows_per_batch
        cfg.runtime = runtime


def load_cli_config(args: argparse.Namespace, dataset: Optional[str] = None) -> Any:
    """The config a command runs with: named or file config, overrides applied. No model is loaded."""
    from ..config import load_config, segmenter_kwargs

    path = resolve_config_name(args, dataset)
    try:
        cfg = load_config(path)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    except Exception as err:  # mmengine: syntax errors, bad _base_ ...
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        raise UserError(f"cannot read config {path}: {err}") from None
    apply_overrides(cfg, args)
    try:
        segmenter_kwargs(cfg)  # bad sections fail here, before any model load
    except KeyError as err:
        raise UserError(err.args[0] if err.args else str(err)) from None
    head = cfg.get("head")
    head_type = head if isinstance(head, str) else (head or {}).get("type")
    if head_type:
        from ..heads import list_heads

        known = list(list_heads())
        if head_type not in known:
            raise UserError(f"unknown head {head_type!r}; heads: {', '.join(known)}")
    backbone = cfg.get("backbone") or {}
    pretrained = backbone.get("pretrained")
    if isinstance(pretrained, str) and (os.sep in pretrained
                                        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
        check_file(pretrained, "CLIP weights file")
    clip_model = backbone.get("clip_model")
    if isinstance(clip_model, str):
        if clip_model.endswith(".json"):
            check_file(clip_model, "model config file")
        else:
            import open_clip

            if clip_model.replace("/", "-") not in open_clip.list_models():
                raise UserError(f"unknown open_clip model {clip_model!r}; pass a name from open_clip.list_models() "
                                f"(ViT-B-16, ViT-L-14, ...) or a model-config .json")
    return cfg


def build_segmenter(cfg: Any, args: argparse.Namespace, classes: Any = None, background: Any = None):
    """OVSegmenter from a checked config (one GPU per rank under torchrun); user errors -> UserError."""
    from ..distributed import env_world
    from ..predictor import OVSegmenter

    _, world, local = env_world()
    device = args.device
    if world > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{local}"  # one GPU per process under torchrun
    try:
        with _held_library_errors():
            return OVSegmenter.from_config(cfg, classes=classes, background=background, device=device,
                                           dtype=args.dtype)
    except user_error_types() as err:
        raise UserError(print_text(err)) from None
    except TypeError as err:  # a stage constructor refusing a config key
        if "config section" not in str(err) and "unexpected keyword" not in str(err):
            raise
        raise UserError(str(err)) from None
    except RuntimeError as err:  # device and driver problems
        raise UserError(f"could not build the model on device {device!r}: {err}") from None


class _held_library_errors:
    """Hold other libraries' ERROR log records (open_clip logs a failed download before raising)
    while the model loads: shown if the load succeeds, dropped if it fails, since the one
    ``error:`` line then says what went wrong."""

    def __enter__(self) -> "_held_library_errors":
        import logging

        self.held: list = []
        self.handlers = list(logging.getLogger().handlers)

        def hold(record: "logging.LogRecord") -> bool:
            if record.levelno >= logging.ERROR and not record.name.startswith("ovdense"):
                self.held.append(record)
                return False
            return True

        self.filter = hold
        for handler in self.handlers:
            handler.addFilter(hold)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        import logging

        for handler in self.handlers:
            handler.removeFilter(self.filter)
        if exc_type is None:
            for record in self.held:
                logging.getLogger(record.name).handle(record)


def print_text(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    text = str(err)
    from ..backbones.clip import WeightsNotFoundError

    if isinstance(err, WeightsNotFoundError) and "--pretrained" not in text:
        text += " On the command line: --pretrained /path/to/file.pt"
    return text


def build_segmenter_from_args(args: argparse.Namespace, classes: Any = None, background: Any = None):
    """Config + command-line overrides -> OVSegmenter (classes set): checks, then the model."""
    cfg = load_cli_config(args, dataset=getattr(args, "dataset", None))
    return build_segmenter(cfg, args, classes=classes, background=background)


def finish_folder_run(summary: Any, out: str, headline: str, strict: bool) -> int:
    """Print a folder run's outcome (``headline``, then one ``skipped:`` line per failed image)
    and return its exit code: 1 when every image failed, or any did with ``strict``; else 0."""
    print(headline)
    for failure in summary.failed:
        print(f"  skipped: {failure['error']}", file=sys.stderr)
    if summary.failed and summary.done + summary.skipped == 0:
        print(f"error: every image failed ({len(summary.failed)}); see {os.path.join(out, 'run.json')}",
              file=sys.stderr)
        return EXIT_FAILED
    if summary.failed and strict:
        return EXIT_FAILED
    return EXIT_OK
