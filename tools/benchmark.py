#!/usr/bin/env python
"""Benchmark the heads against a plain reference-style baseline; same as ``ovdense benchmark``."""
import sys

from ovdense.bench.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
