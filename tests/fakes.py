"""Test doubles for the evaluation tests: a GT-reading fake segmenter and fake dataset layouts."""

from __future__ import annotations

import os
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from ovdense.datasets import DATASETS


@dataclass
class FakeResult:
    """Duck-typed ``SegmentationResult``."""

    label_map: np.ndarray
    class_names: list
    scores: Optional[np.ndarray] = None
    has_background: bool = False


class FakeSegmenter:
    """Predicts the ground truth with a deterministic per-image fraction of flipped pixels.

    Args:
        gt_of: image path -> label map in class-index space (ignore pixels allowed).
        num_classes: number of classes predicted.
        noise: fraction of pixels replaced by a random class.
        seed: noise seed; the noise of an image depends only on the seed and the file name,
            so it is the same whatever process or order evaluates the image.
        ignore_index: GT value replaced by a random class in the prediction.
    """

    def __init__(self, gt_of: Callable[[str], np.ndarray], num_classes: int, noise: float = 0.1,
                 seed: int = 0, ignore_index: int = 255) -> None:
        self.gt_of = gt_of
        self.num_classes = num_classes
        self.noise = noise
        self.seed = seed
        self.ignore_index = ignore_index
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.has_background = False
        self.calls: list = []
        self.config = {"type": "FakeSegmenter", "noise": noise, "seed": seed}

    def set_classes(self, names, background=None) -> None:
        """Accept a list of names or a name file; ``background`` as OVSegmenter.set_classes."""
        if isinstance(names, (str, os.PathLike)) and Path(names).is_file():
            names = [ln.strip() for ln in Path(names).read_text().splitlines() if ln.strip()]
        names = list(names)
        if background is not None and background != "first":
            names = [background] + names
        self.class_names = names
        self.has_background = background is not None
        self.num_classes = len(self.class_names)

    def predict(self, image, return_scores: bool = False) -> FakeResult:
        """GT with noise; one-hot scores when asked."""
        self.calls.append(str(image))
        gt = np.asarray(self.gt_of(str(image))).astype(np.int64)
        rng = np.random.default_rng([self.seed, zlib.crc32(Path(str(image)).name.encode())])
        pred = gt.copy()
        invalid = (pred == self.ignore_index) | (pred < 0) | (pred >= self.num_classes)
        pred[invalid] = rng.integers(0, self.num_classes, size=int(invalid.sum()))
        flip = rng.random(pred.shape) < self.noise
        pred[flip] = rng.integers(0, self.num_classes, size=int(flip.sum()))
        scores = None
        if return_scores:
            scores = np.zeros((self.num_classes,) + pred.shape, dtype=np.float32)
            np.put_along_axis(scores, pred[None], 0.9, axis=0)
        return FakeResult(pred, list(self.class_names), scores, self.has_background)


def make_layout(name: str, parent: Path, n_images: int = 4, seed: int = 0,
                size: tuple = (12, 16)) -> Path:
    """Write a tiny fake benchmark ``name`` under ``parent`` (its usual top folder); return parent.

    GT values: raw labels ``0..num_classes`` for reduce_zero_label datasets (0 = background),
    ``0..num_classes-1`` otherwise, plus some 255 pixels. VOC GT is a palette PNG.
    """
    spec = DATASETS[name]
    rng = np.random.default_rng(seed)
    root = parent / spec.root_subdir
    ids = []
    for i in range(n_images):
        ids.append(f"city{i % 2}/city{i % 2}_{i:06d}_000019" if spec.recursive else f"img_{i:04d}")
    for image_id in ids:
        img_path = root / spec.img_dir / f"{image_id}{spec.img_suffix}"
        gt_path = root / spec.ann_dir / f"{image_id}{spec.seg_suffix}"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        gt_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(img_path)
        high = spec.num_classes + (1 if spec.reduce_zero_label else 0)
        gt = rng.integers(0, high, size).astype(np.uint8)
        gt[rng.random(size) < 0.05] = 255
        img = Image.fromarray(gt)
        if spec.root_subdir.startswith("VOCdevkit"):
            img.putpalette([(i * 37) % 256 for i in range(768)])
        img.save(gt_path)
    if spec.split_file:
        split = root / spec.split_file
        split.parent.mkdir(parents=True, exist_ok=True)
        split.write_text("\n".join(ids) + "\n")
    return parent


def dataset_segmenter(dataset, noise: float = 0.1, seed: int = 0) -> FakeSegmenter:
    """A :class:`FakeSegmenter` whose GT lookup reads ``dataset``'s mapped ground truth."""
    lookup = {str(s.image_path): s.gt_path for s in dataset.samples}
    return FakeSegmenter(lambda p: dataset.load_gt(lookup[p]), dataset.num_classes, noise, seed)


def sharded_worker(rank: int, world: int, port: int, data_root: str, out_dir: str,
                   name: str) -> None:
    """One rank of a ``torchrun``-like job (environment variables set as torchrun does)."""
    import torch

    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from ovdense.datasets import build_dataset
    from ovdense.evaluation.semantic_runner import evaluate_semantic

    dataset = build_dataset(name, data_root)
    seg = dataset_segmenter(dataset, noise=0.2, seed=3)
    evaluate_semantic(seg, dataset, out_dir=out_dir, progress=False, checkpoint_every=2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a gloo rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(worker: Callable, *args, nprocs: int = 2, timeout: float = 120.0) -> None:
    """Spawn ``worker(rank, nprocs, port, *args)`` in ``nprocs`` processes as ``torchrun`` would
    and wait; fails the test after ``timeout`` seconds and never leaves a rank running."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(worker, nprocs=nprocs, join=False, start_method="spawn",
                             args=(nprocs, free_port()) + tuple(args))
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "sharded run timed out"
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
