#!/usr/bin/env python
"""COCO bbox/segm AP and semantic mIoU of a segmenter (same as ``ovdense eval-coco``).

    python tools/eval_coco.py --config C --gt instances_val2017.json --images val2017
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ovdense.cli.evaluate import main_coco  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_coco())
