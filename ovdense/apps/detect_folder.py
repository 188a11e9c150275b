"""Detect instances in every image below a folder: per-image JSON (RLE masks), overlays and
COCO results. The run bookkeeping is :mod:`ovdense.apps.folder`'s (resume, sharding, failures).

Layout of ``out_dir``::

    run.json                 config, classes, versions, counts, failures, timings, command
    categories.json          [{"id", "name", "synonyms"}]: the class ids of every record
    images.json              [{"id", "file_name", "height", "width"}]: COCO ``images`` of the run
    preds/<rel>.<ext>.json   per image: its size and detections (class, confidence, xyxy, RLE
                             mask, SAM scores); written last, so it marks the image as done
    overlays/<rel>.<ext>.jpg masks, boxes and labels
    results.json             every detection as a COCO result (image_id from images.json,
                             category_id = the class id, bbox XYWH, RLE segmentation, score)
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from ..io.images import ImageLoadError, load_image
from ..io.sources import find_images, source_base
from ..io.writers import write_json
from .folder import (FolderRunSummary, _remove_stale_temps, output_stem, prepare_output, run_fingerprint,
                     recorded_run, run_record)

logger = logging.getLogger(__name__)


def detect_folder(detector: Any, src: str, out_dir: str, resume: bool = False, progress: bool = True,
                  save_overlays: bool = True, run_info: Optional[Dict[str, Any]] = None,
                  shard: Sequence[int] = (0, 1), overwrite: bool = False, images: Optional[Sequence[str]] = None,
                  check_output: bool = True) -> FolderRunSummary:
    """Run ``detector`` (a :class:`~ovdense.Detector` whose segmenter has classes) over every
    image below ``src`` (a folder, one image or a glob). Arguments as
    :func:`~ovdense.apps.folder.segment_folder`'s; ``run_info["config"]`` should hold the
    detector's settings too, since a resumption checks it."""
    from tqdm import tqdm

    segmenter = detector.segmenter
    if segmenter.vocabulary is None:
        raise RuntimeError("set the segmenter's classes before running a folder")
    rank, world = shard
    if images is None:
        images = find_images(src, exclude=[out_dir])
    base = source_base(src)
    all_images = list(images)
    rel = {p: output_stem(p, base) for p in all_images}
    mine = all_images[rank::world]
    record_path = {p: os.path.join(out_dir, "preds", rel[p] + ".json") for p in mine}
    vocab = segmenter.vocabulary
    categories = [{"id": i, "name": n, "synonyms": list(s)}
                  for i, (n, s) in enumerate(zip(vocab.class_names, vocab.synonyms))]
    run_info = dict(run_info or {})
    fingerprint = run_fingerprint(categories, run_info.get("config", getattr(segmenter, "config", None)),
                                  run_info.get("dtype", str(getattr(segmenter, "dtype", ""))))
    fingerprint["task"] = "detect"
    summary = FolderRunSummary(total=len(mine))
    name = "run.json" if world == 1 else f"run_rank{rank}.json"

    def record(status: str) -> Dict[str, Any]:
        return run_record({**run_info, "task": "detect"}, src, categories, fingerprint, summary, status, shard)

    os.makedirs(out_dir, exist_ok=True)
    if rank == 0:
        if check_output:
            prepare_output(out_dir, fingerprint, resume=resume, overwrite=overwrite)
        _remove_stale_temps(out_dir)
        write_json(os.path.join(out_dir, "categories.json"), categories)
    todo = [p for p in mine if not (resume and os.path.isfile(record_path[p]))]
    summary.skipped = len(mine) - len(todo)
    if rank == 0:
        write_json(os.path.join(out_dir, "run.json"), record("running"))
    bar = tqdm(total=len(todo), desc="detect", unit="img", disable=not progress, file=sys.stderr)
    with recorded_run(summary, os.path.join(out_dir, name), record, bar):
        for path in todo:
            try:
                image = load_image(path)
                dets = detector.detect(image)
            except (ImageLoadError, RuntimeError, ValueError) as err:
                message = str(err) if isinstance(err, ImageLoadError) else f"{path}: {err}"
                summary.failed.append({"path": path, "error": message})
                logger.warning("skipping %s", message)
                bar.update(1)
                continue
            _write_outputs(out_dir, rel[path], path, image, dets, vocab.class_names, save_overlays,
                           record_path[path])
            summary.done += 1
            bar.update(1)
    return summary


def _write_outputs(out_dir: str, rel: str, path: str, image, dets, class_names, save_overlays: bool,
                   record_path: str) -> None:
    if save_overlays:
        from ..viz import save_image
        from ..viz.detections import draw_detections

        save_image(os.path.join(out_dir, "overlays", rel + ".jpg"), draw_detections(image, dets, class_names))
    record = {"path": path, "height": int(image.shape[0]), "width": int(image.shape[1]), **dets.to_json()}
    write_json(record_path, record)


def write_coco_results(out_dir: str, src: str, images: Sequence[str]) -> Dict[str, str]:
    """``images.json`` (COCO ``images``: id = position in ``images``) and ``results.json``
    (COCO results of every finished image's record, category_id = class id). Returns their paths."""
    base = source_base(src)
    entries: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []
    for image_id, path in enumerate(images):
        rel = output_stem(path, base)
        rec_path = os.path.join(out_dir, "preds", rel + ".json")
        if not os.path.isfile(rec_path):
            continue
        with open(rec_path, encoding="utf-8") as fh:
            rec = json.load(fh)
        entries.append({"id": image_id, "file_name": rel, "height": rec["height"], "width": rec["width"]})
        for det in rec["detections"]:
            x1, y1, x2, y2 = det["xyxy"]
            item = {"image_id": image_id, "category_id": det["class_id"], "score": det["confidence"],
                    "bbox": [x1, y1, x2 - x1, y2 - y1]}
            if "segmentation" in det:
                item["segmentation"] = det["segmentation"]
                item["area"] = det.get("area", 0)
            results.append(item)
    paths = {"images": os.path.join(out_dir, "images.json"), "results": os.path.join(out_dir, "results.json")}
    write_json(paths["images"], entries)
    write_json(paths["results"], results)
    return paths
