"""``ovdense add-references``: class prototypes from a few labelled images, written to a file that
``ovdense segment --references FILE`` (or ``OVSegmenter.set_references(FILE)``) reads."""
from __future__ import annotations

import argparse
import os
from typing import List, Tuple

import numpy as np

from .common import EXIT_OK, UserError, add_model_options, build_segmenter, check_device, load_cli_config, run_guarded

REFERENCES_EXAMPLES = (
    "examples:\n"
    "  ovdense add-references refs/images refs/labels --classes mug plate \"fork, cutlery\" \\\n"
    "      --config naclip_voc21 -o kitchen_refs.npz\n"
    "  ovdense segment photos/ --config naclip_voc21 --classes mug plate \"fork, cutlery\" \\\n"
    "      --references kitchen_refs.npz --reference-weight 0.5\n"
    "label maps: one PNG per image, same stem (refs/labels/img1.png for refs/images/img1.jpg), pixel\n"
    "value = index of the class in the vocabulary's order (a --background class first, then --classes or\n"
    "--classes-file in order), 255 = unlabelled")


def add_references_args(p: argparse.ArgumentParser, class_file_args) -> None:
    p.add_argument("images", help="folder of reference images")
    p.add_argument("labels", help="folder of label maps: <image stem>.png, class indices, 255 = unlabelled")
    p.add_argument("--classes", nargs="+", metavar="CLASS",
                   help='the classes the label values index, in order ("dog, puppy": synonyms of one class)')
    class_file_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the reference file to write (.npz)")
    p.add_argument("--ignore-index", type=int, default=255, help="label value of unlabelled pixels (default 255)")
    add_model_options(p)
    p.set_defaults(func=lambda args, argv=(): run_guarded(lambda: _add_references(args)))


def reference_pairs(images: str, labels: str) -> List[Tuple[str, str]]:
    """``(image, label map)`` paths: every image below ``images`` with ``<labels>/<stem>.png``."""
    from ..io.sources import find_images

    if not os.path.isdir(images):
        raise UserError(f"reference image folder not found: {images}")
    if not os.path.isdir(labels):
        raise UserError(f"label folder not found: {labels}")
    pairs = []
    for path in find_images(images):
        rel = os.path.splitext(os.path.relpath(path, images))[0]
        label = os.path.join(labels, rel + ".png")
        if not os.path.isfile(label):
            raise UserError(f"{label}: no label map for reference image {path}")
        pairs.append((path, label))
    if not pairs:
        raise UserError(f"no images found in {images}")
    return pairs


def read_label_map(path: str, size: Tuple[int, int]) -> np.ndarray:
    """A reference label PNG (:func:`ovdense.datasets.semseg.load_label_map`: raw indices, palette PNGs
    by index) checked against its image's ``size``; one-line errors."""
    from ..datasets.semseg import DatasetError, load_label_map

    try:
        labels = load_label_map(path)
    except (DatasetError, OSError) as err:
        raise UserError(f"{path}: cannot read the label map ({err})") from None
    if labels.shape != tuple(size):
        raise UserError(f"{path}: label map of size {labels.shape[1]}x{labels.shape[0]}, its image is "
                        f"{size[1]}x{size[0]}")
    return labels


def _add_references(args: argparse.Namespace) -> int:
    from ..io.images import load_image
    from .classes import _classes_from_args

    check_device(args.device)
    classes, background = _classes_from_args(args)
    if not classes:
        raise UserError("no classes: give --classes or --classes-file (the classes the label values index)")
    out = args.output
    if os.path.isdir(out):
        raise UserError(f"output {out} is a folder; give a file name such as refs.npz")
    pairs = reference_pairs(args.images, args.labels)
    images, label_maps = [], []
    for image_path, label_path in pairs:
        rgb = load_image(image_path)
        images.append(rgb)
        label_maps.append(read_label_map(label_path, rgb.shape[:2]))
    cfg = load_cli_config(args)
    seg = build_segmenter(cfg, args, classes=classes, background=background)
    names = list(seg.class_names)
    for (_, label_path), labels in zip(pairs, label_maps):
        if int(labels[labels != args.ignore_index].max(initial=0)) >= len(names):
            raise UserError(f"{label_path}: label value beyond the {len(names)} classes given")
    refs = seg.add_references(images, label_maps, names, ignore_index=args.ignore_index)
    from ..io.writers import atomic_path

    try:
        with atomic_path(out) as tmp:
            refs.save(tmp)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    counts = ", ".join(f"{n} {c}" for n, c in zip(refs.class_names, refs.counts))
    print(f"{len(refs)} class prototypes from {len(pairs)} images (feature cells: {counts}) -> {out}")
    return EXIT_OK

