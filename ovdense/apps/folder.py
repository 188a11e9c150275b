"""Segment every image below a folder and write labels, overlays and JSON records.

Layout of ``out_dir``::

    run.json             resolved config, classes, versions, counts, failures, timings
    categories.json      [{"id", "name", "synonyms"}]: the ids used in every label PNG
    labels/<rel>.png     class index per pixel (palette PNG; 16-bit grey above 256 classes)
    overlays/<rel>.jpg   colours over the image (background left clear)
    preds/<rel>.json     per-image record; written last, so it marks the image as done

Every file is written atomically, so an interrupted run leaves no half-written output and
``resume=True`` skips exactly the images whose record exists. An unreadable image
(corrupt, empty, unsupported) is reported by name in ``run.json`` and skipped.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..io.images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from ..evaluation.meta import collect_versions
from ..io.writers import write_json, write_label_png, write_overlay_jpg

logger = logging.getLogger(__name__)


@dataclass
class FolderRunSummary:
    """What a folder run did."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: List[Dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


def find_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[str]:
    """Image files below ``root`` (recursive, sorted); ``root`` may also be one image file."""
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"input folder not found: {root}")
    exts = tuple(e.lower() for e in extensions)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(folder, f) for f in files if f.lower().endswith(exts) and not f.startswith(".")]
    return sorted(found)


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _predict_batch(segmenter, loaded, summary: FolderRunSummary):
    """Predict a batch; if it fails, retry one by one so only the culprit is skipped."""
    try:
        results = segmenter.predict([img for _, img in loaded])
        return [(p, img, r) for (p, img), r in zip(loaded, results)]
    except (RuntimeError, ValueError) as err:
        if len(loaded) == 1:
            path = loaded[0][0]
            summary.failed.append({"path": path, "error": f"{path}: {err}"})
            logger.warning("skipping %s: %s", path, err)
            return []
    out = []
    for item in loaded:
        out += _predict_batch(segmenter, [item], summary)
    return out


def segment_folder(
    segmenter,
    src: str,
    out_dir: str,
    resume: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    save_overlays: bool = True,
    run_info: Optional[Dict[str, Any]] = None,
    shard: Sequence[int] = (0, 1),
) -> FolderRunSummary:
    """Run ``segmenter`` (an OVSegmenter with classes set) over every image below ``src``.

    Args:
        batch_size: images whose windows share forward passes.
        shard: ``(rank, world_size)``: this process takes every ``world_size``-th image.
        run_info: extra fields for ``run.json`` (e.g. the resolved config, the command line).
    """
    from tqdm import tqdm

    if segmenter.vocabulary is None:
        raise RuntimeError("set the segmenter's classes before running a folder")
    rank, world = shard
    images = find_images(src)[rank::world]
    base = src if os.path.isdir(src) else os.path.dirname(src)
    rel = {p: os.path.splitext(os.path.relpath(p, base))[0] for p in images}
    record_path = {p: os.path.join(out_dir, "preds", rel[p] + ".json") for p in images}
    summary = FolderRunSummary(total=len(images))
    todo = [p for p in images if not (resume and os.path.isfile(record_path[p]))]
    summary.skipped = len(images) - len(todo)
    vocab = segmenter.vocabulary
    categories = [{"id": i, "name": n, "synonyms": list(s)}
                  for i, (n, s) in enumerate(zip(vocab.class_names, vocab.synonyms))]
    os.makedirs(out_dir, exist_ok=True)
    if rank == 0:
        write_json(os.path.join(out_dir, "categories.json"), categories)
    skip = (0,) if vocab.has_background else ()
    t_start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="segment", unit="img", disable=not progress, file=sys.stderr)
    try:
        for batch in _batches(todo, max(1, batch_size)):
            loaded = []
            for path in batch:
                try:
                    loaded.append((path, load_image(path)))
                except ImageLoadError as err:
                    summary.failed.append({"path": path, "error": str(err)})
                    logger.warning("skipping %s", err)
                    bar.update(1)
            if not loaded:
                continue
            for path, img, res in _predict_batch(segmenter, loaded, summary):
                res.path = path
                write_label_png(os.path.join(out_dir, "labels", rel[path] + ".png"), res.label_map,
                                len(res.class_names))
                if save_overlays:
                    write_overlay_jpg(os.path.join(out_dir, "overlays", rel[path] + ".jpg"), img, res.label_map,
                                      len(res.class_names), skip=skip)
                record = res.to_dict()
                record.update(label_png=os.path.join("labels", rel[path] + ".png"))
                write_json(record_path[path], record)
                summary.done += 1
            bar.update(len(loaded))
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t_start
        name = "run.json" if world == 1 else f"run_rank{rank}.json"
        write_json(os.path.join(out_dir, name), {
            **(run_info or {}),
            "source": os.path.abspath(src), "classes": categories, "versions": collect_versions(),
            "images": summary.total, "done": summary.done, "skipped_existing": summary.skipped,
            "failed": summary.failed, "seconds": round(summary.seconds, 3), "interrupted": summary.interrupted,
            "shard": {"rank": rank, "world_size": world},
        })
    return summary


def merge_rank_records(out_dir: str, world_size: int) -> Dict[str, Any]:
    """Merge ``run_rank{r}.json`` of a sharded run into ``run.json`` (counts summed, failures joined)."""
    import json

    records = []
    for rank in range(world_size):
        path = os.path.join(out_dir, f"run_rank{rank}.json")
        with open(path, encoding="utf-8") as fh:
            records.append(json.load(fh))
    merged = dict(records[0])
    for key in ("images", "done", "skipped_existing"):
        merged[key] = sum(r[key] for r in records)
    merged["failed"] = sorted((f for r in records for f in r["failed"]), key=lambda f: f["path"])
    merged["seconds"] = max(r["seconds"] for r in records)
    merged["interrupted"] = any(r["interrupted"] for r in records)
    merged["shard"] = {"world_size": world_size, "per_rank": [
        {"rank": r["shard"]["rank"], "images": r["images"], "done": r["done"], "seconds": r["seconds"]}
        for r in records]}
    write_json(os.path.join(out_dir, "run.json"), merged)
    return merged
