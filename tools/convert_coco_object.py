#!/usr/bin/env python
"""Make COCO-Object ground truth: ``annotations/<split>/<stem>_instanceTrainIds.png``.

COCO-Object (the benchmark of GroupViT/TCL/SCLIP/NACLIP) has 81 classes: background 0 and the
80 COCO thing categories numbered 1..80 in COCO id order (person=1 ... toothbrush=80).

Two sources:

``--stuff-dir DIR`` (the published protocol): the COCO-Stuff 164k ``stuffthingmaps`` PNGs,
    whose pixels hold ``coco_id - 1`` (255 = unlabelled). Thing pixels get their contiguous
    index, stuff and unlabelled pixels become background 0, as SCLIP/NACLIP's
    ``cvt_coco_object.py`` does. Use this to reproduce published numbers.

``--instances JSON`` (when only the instances file is at hand): every annotation mask is
    painted with its category's contiguous index over a background of 0, in annotation-id
    order (later instances over earlier, so overlaps take the later label); crowd regions are
    painted with their category (``--crowd label``, default), set to 255 (``ignore``) or left
    alone (``skip``). COCO-Stuff's thing maps come from the same instance masks, but their
    overlap handling differs, so a few boundary pixels can differ from the published GT.

Examples::

    python tools/convert_coco_object.py --stuff-dir data/coco_stuff164k/annotations/val2017 \
        --out data/coco_stuff164k/annotations/val2017
    python tools/convert_coco_object.py --instances annotations/instances_val2017.json \
        --out data/coco_stuff164k/annotations/val2017
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ovdense.datasets.coco_instances import category_index, paint_instances  # noqa: E402

#: COCO ids 1..90 that have no thing category in COCO 2014/2017.
UNUSED_THING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
SUFFIX = "_instanceTrainIds.png"


def stuff_lookup() -> np.ndarray:
    """256-entry table: stuffthingmaps value (``coco_id - 1``) -> COCO-Object label."""
    thing_ids = [i for i in range(1, 91) if i not in UNUSED_THING_IDS]
    table = np.zeros(256, dtype=np.uint8)
    for label, cid in enumerate(thing_ids, start=1):
        table[cid - 1] = label
    return table


def convert_stuff(stuff_dir: Path, out_dir: Path) -> int:
    """Convert every stuffthingmaps PNG in ``stuff_dir``; returns the number written."""
    table = stuff_lookup()
    files = sorted(p for p in stuff_dir.glob("*.png") if "TrainIds" not in p.name)
    if not files:
        raise FileNotFoundError(f"no stuffthingmaps PNGs in {stuff_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        raw = np.array(Image.open(path))
        Image.fromarray(table[raw]).save(out_dir / f"{path.stem}{SUFFIX}")
    return len(files)


def convert_instances(ann_file: Path, out_dir: Path, crowd: str) -> int:
    """Paint every image of a COCO instances file; returns the number written."""
    from pycocotools.coco import COCO

    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO instances file not found: {ann_file}")
    coco = COCO(str(ann_file))
    cat_to_label = category_index(coco, background=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for img_id in sorted(coco.getImgIds()):
        label = paint_instances(coco, img_id, cat_to_label, background=True, crowd=crowd)
        stem = Path(coco.imgs[img_id]["file_name"]).stem
        Image.fromarray(label.astype(np.uint8)).save(out_dir / f"{stem}{SUFFIX}")
    return len(coco.getImgIds())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--stuff-dir", type=Path, help="folder of COCO-Stuff stuffthingmaps PNGs")
    src.add_argument("--instances", type=Path, help="COCO instances JSON")
    p.add_argument("--out", type=Path, required=True, help="output folder for the PNGs")
    p.add_argument("--crowd", choices=("label", "ignore", "skip"), default="label",
                   help="crowd regions (--instances only)")
    args = p.parse_args(argv)
    if args.stuff_dir is not None:
        n = convert_stuff(args.stuff_dir, args.out)
    else:
        n = convert_instances(args.instances, args.out, args.crowd)
    print(f"wrote {n} label maps to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
