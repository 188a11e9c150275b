#!/usr/bin/env python
"""Semantic-segmentation benchmark evaluation (same as ``ovdense eval-semantic``).

    python tools/eval_semseg.py --config C --data-root data --dataset voc21 [--limit N]
    torchrun --nproc_per_node 4 tools/eval_semseg.py --config C --data-root data --resume
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ovdense.cli.evaluate import main_semantic  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_semantic())
