"""The ``ovdense`` command line (an application of the library; the core never imports it)."""
from .common import UserError, add_model_options, build_segmenter_from_args
from .main import build_parser, main

__all__ = ["UserError", "add_model_options", "build_parser", "build_segmenter_from_args", "main"]
