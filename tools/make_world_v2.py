#!/usr/bin/env python
"""Write synthetic world v2 data sets (see ``ovdense/synthetic/world_v2.py``).

    python tools/make_world_v2.py --out data/world_v2 --n 200            # eval split, both exports
    python tools/make_world_v2.py --out data/world_v2_train --split train --n 1000 --coco-only

Writes ``OUT/coco`` (``annotations.json`` with COCO instances, lossless ``images/*.png``,
semantic ``labels/*.png``, ``captions.json``, ``names.txt``) and ``OUT/semseg`` (a VOC2012
layout read by the ``voc20`` reader), then prints the evaluation commands::

    ovdense eval-semantic --config C --dataset voc20 --data-root OUT/semseg --classes-file OUT/semseg/names.txt
    ovdense eval-coco --config C --gt OUT/coco/annotations.json --images OUT/coco/images \
        --classes-file OUT/coco/names.txt --no-background
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ovdense.synthetic.world_v2 import WorldV2  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=200, help="number of scenes")
    p.add_argument("--split", default="eval", choices=("train", "eval"))
    p.add_argument("--start", type=int, default=0, help="offset into the split's index range")
    p.add_argument("--seed", type=int, default=0, help="world seed")
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--include-stuff", action="store_true", help="COCO annotations for stuff segments too")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--coco-only", action="store_true")
    g.add_argument("--semseg-only", action="store_true")
    args = p.parse_args(argv)

    world = WorldV2(seed=args.seed, height=args.height, width=args.width)
    out = Path(args.out)
    t0 = time.perf_counter()
    if not args.semseg_only:
        ann = world.write_coco(str(out / "coco"), args.n, split=args.split, start=args.start,
                               include_stuff=args.include_stuff)
        print(f"COCO: {ann}")
        print(f"  ovdense eval-coco --config C --gt {ann} --images {out / 'coco' / 'images'} "
              f"--classes-file {out / 'coco' / 'names.txt'} --no-background")
    if not args.coco_only:
        world.write_semseg_benchmark(str(out / "semseg"), args.n, split=args.split, start=args.start)
        print(f"semantic benchmark (voc20 layout): {out / 'semseg'}")
        print(f"  ovdense eval-semantic --config C --dataset voc20 --data-root {out / 'semseg'} "
              f"--classes-file {out / 'semseg' / 'names.txt'}")
    print(f"{args.n} {args.split} scenes in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
