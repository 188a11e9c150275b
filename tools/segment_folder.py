#!/usr/bin/env python
"""Segment a folder of images: ``python tools/segment_folder.py SRC --config C --classes ... --out DIR``.

Same as ``ovdense segment``; see ``ovdense segment --help``.
"""
import sys

from ovdense.cli import main

if __name__ == "__main__":
    sys.exit(main(["segment"] + sys.argv[1:]))
