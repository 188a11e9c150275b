"""The ``ovdense`` command line (an application of the library; the core never imports it)."""
from .main import add_model_options, build_parser, build_segmenter_from_args, main

__all__ = ["add_model_options", "build_parser", "build_segmenter_from_args", "main"]
