"""Segment every image below a folder and write labels, overlays and JSON records.

Layout of ``out_dir``::

    run.json                 resolved config, classes, versions, counts, failures, timings, command
    categories.json          [{"id", "name", "synonyms"}]: the ids used in every label PNG
    labels/<rel>.<ext>.png   class index per pixel (palette PNG; 16-bit grey above 256 classes)
    overlays/<rel>.<ext>.jpg colours, class contours and a legend (background left clear)
    contact_sheet.jpg        the overlays at a glance (written by the command line)
    preds/<rel>.<ext>.json   per-image record; written last, so it marks the image as done

``<rel>.<ext>`` is the image's path below the source folder with its extension kept, so
``a.jpg`` and ``a.png`` never share an output. Every file is written atomically, so an
interrupted run leaves no half-written output and ``resume=True`` skips exactly the images
whose record exists; a resumed run must use the classes and config of the recorded one
(:class:`RunMismatchError` otherwise; ``overwrite=True`` starts over). An output folder inside
the source folder is never read as input. An unreadable image (corrupt, empty, unsupported)
is reported by name in ``run.json`` and skipped.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..io.images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from ..evaluation.meta import collect_versions
from ..io.writers import _json_default, write_json, write_label_png, write_overlay_jpg

logger = logging.getLogger(__name__)

#: What a folder run writes into its output folder (``overwrite=True`` removes exactly these).
OUTPUT_FOLDERS = ("labels", "overlays", "preds")
RUN_FILES = ("run.json", "categories.json")


class RunMismatchError(ValueError):
    """The output folder holds a run made with other classes or another config."""


@dataclass
class FolderRunSummary:
    """What a folder run did."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: List[Dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


def find_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                exclude: Sequence[str] = ()) -> List[str]:
    """Image files below ``root`` (recursive, sorted); ``root`` may also be one image file.

    Folders in ``exclude`` (e.g. the run's own output folder) and hidden entries are skipped.
    """
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"input folder not found: {root}")
    exts = tuple(e.lower() for e in extensions)
    skip = {os.path.realpath(e) for e in exclude}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) not in skip)
        found += [os.path.join(folder, f) for f in files if f.lower().endswith(exts) and not f.startswith(".")]
    return sorted(found)


def output_stem(path: str, base: str) -> str:
    """Output name of an image: its path below ``base`` with the extension kept (``sub/a.jpg``)."""
    return os.path.relpath(path, base)


def run_fingerprint(categories: Sequence[Dict[str, Any]], config: Optional[Dict[str, Any]],
                    dtype: Optional[str] = None) -> Dict[str, Any]:
    """What must not change between a run and its resumption: the classes, the config, the dtype.

    ``runtime`` options (batch sizes, memory bounds) and the device do not change the results'
    meaning and are left out.
    """
    cfg = {k: v for k, v in (config or {}).items() if k not in ("runtime", "classes")}
    value = {"classes": [[c["name"], list(c["synonyms"])] for c in categories], "config": cfg, "dtype": dtype}
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


def _recorded_fingerprint(out_dir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(out_dir, "run.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get("fingerprint")
    except (OSError, ValueError):
        return None


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    out = []
    if old.get("classes") != new.get("classes"):
        out.append("classes (recorded: " + ", ".join(c[0] for c in old.get("classes") or []) + ")")
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    changed = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
    if changed:
        out.append("config sections " + ", ".join(changed))
    if old.get("dtype") != new.get("dtype"):
        out.append(f"dtype (recorded: {old.get('dtype')})")
    return out


def has_previous_run(out_dir: str) -> bool:
    """Whether ``out_dir`` already holds a folder run's outputs."""
    return any(os.path.exists(os.path.join(out_dir, n)) for n in RUN_FILES + ("preds",))


def prepare_output(out_dir: str, fingerprint: Optional[Dict[str, Any]], resume: bool = False,
                   overwrite: bool = False) -> None:
    """Check ``out_dir`` against a previous run before anything is computed.

    * ``overwrite``: the previous run's outputs (``labels/``, ``overlays/``, ``preds/``,
      ``run.json``, ``categories.json``) are removed; nothing else in the folder is touched.
    * ``resume``: the recorded classes/config/dtype must equal ``fingerprint``
      (:class:`RunMismatchError` naming what differs otherwise).
    * neither, with a previous run present: :class:`RunMismatchError` (pass one of the two).
    """
    if overwrite:
        for name in OUTPUT_FOLDERS:
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
        for name in RUN_FILES:
            if os.path.isfile(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        return
    if not has_previous_run(out_dir):
        return
    if not resume:
        raise RunMismatchError(f"output folder {out_dir} already holds a run: pass --resume to continue it or "
                               f"--overwrite to start over (or choose another --out)")
    recorded = _recorded_fingerprint(out_dir)
    if fingerprint is None:
        return
    if recorded is None:
        raise RunMismatchError(f"cannot resume in {out_dir}: its run.json records no classes/config to check "
                               f"against (made by an older ovdense or interrupted hard); pass --overwrite to start over")
    diffs = _differences(recorded, fingerprint)
    if diffs:
        raise RunMismatchError(f"cannot resume in {out_dir}: this run differs from the recorded one in "
                               f"{'; '.join(diffs)}; pass --overwrite to start over or choose another --out")


def _remove_stale_temps(out_dir: str) -> None:
    """Temp files that a killed run (SIGKILL) left behind."""
    for name in OUTPUT_FOLDERS + (".",):
        folder = os.path.join(out_dir, name)
        for dirpath, _, files in os.walk(folder):
            for f in files:
                if f.startswith(".tmp-"):
                    try:
                        os.remove(os.path.join(dirpath, f))
                    except OSError:
                        pass
            if name == ".":
                break


def _write_overlay(path: str, image, result, skip: Sequence[int]) -> None:
    """The overlay a person looks at: colours, class contours and a legend (classes present, by
    area) beside the image (:func:`ovdense.viz.draw_overlay`); plain blend if that is unavailable."""
    try:
        from ..viz import draw_overlay, save_image
    except ImportError:  # pragma: no cover - viz is part of the package
        write_overlay_jpg(path, image, result.label_map, len(result.class_names), skip=skip)
        return
    rgb = draw_overlay(image, result.label_map, list(result.class_names),
                       has_background=bool(getattr(result, "has_background", False)) or 0 in skip)
    save_image(path, rgb)


def write_contact_sheet(out_dir: str, max_items: int = 100) -> Optional[str]:
    """``contact_sheet.jpg``: thumbnails of the run's overlays with their names (None without overlays)."""
    folder = os.path.join(out_dir, "overlays")
    if not os.path.isdir(folder):
        return None
    items = []
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".jpg") and not f.startswith("."):
                full = os.path.join(dirpath, f)
                items.append((os.path.relpath(full, folder)[:-len(".jpg")], full))
    if not items:
        return None
    from ..viz import contact_sheet

    items.sort()
    return contact_sheet(items, os.path.join(out_dir, "contact_sheet.jpg"), max_items=max_items,
                         title=f"{len(items)} images" + (f" (first {max_items})" if len(items) > max_items else ""))


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
    overwrite: bool = False,
    images: Optional[Sequence[str]] = None,
    check_output: bool = True,
) -> FolderRunSummary:
    """Run ``segmenter`` (an OVSegmenter with classes set) over every image below ``src``.

    Args:
        batch_size: images whose windows share forward passes.
        shard: ``(rank, world_size)``: this process takes every ``world_size``-th image.
        run_info: extra fields for ``run.json`` (e.g. the resolved config, the command line).
        resume: skip images whose record exists; the recorded classes/config must match.
        overwrite: remove a previous run's outputs first.
        images: the images to run (default: :func:`find_images` below ``src``, ``out_dir`` excluded).
        check_output: run :func:`prepare_output` on rank 0 (False when the caller already did, before
            any rank started writing).
    """
    from tqdm import tqdm

    if segmenter.vocabulary is None:
        raise RuntimeError("set the segmenter's classes before running a folder")
    rank, world = shard
    if images is None:
        images = find_images(src, exclude=[out_dir])
    images = list(images)[rank::world]
    base = src if os.path.isdir(src) else os.path.dirname(src)
    rel = {p: output_stem(p, base) for p in images}
    record_path = {p: os.path.join(out_dir, "preds", rel[p] + ".json") for p in images}
    vocab = segmenter.vocabulary
    categories = [{"id": i, "name": n, "synonyms": list(s)}
                  for i, (n, s) in enumerate(zip(vocab.class_names, vocab.synonyms))]
    run_info = dict(run_info or {})
    fingerprint = run_fingerprint(categories, run_info.get("config", getattr(segmenter, "config", None)),
                                  run_info.get("dtype", str(getattr(segmenter, "dtype", ""))))
    os.makedirs(out_dir, exist_ok=True)
    if rank == 0:
        if check_output:
            prepare_output(out_dir, fingerprint, resume=resume, overwrite=overwrite)
        _remove_stale_temps(out_dir)
        write_json(os.path.join(out_dir, "categories.json"), categories)
    summary = FolderRunSummary(total=len(images))
    todo = [p for p in images if not (resume and os.path.isfile(record_path[p]))]
    summary.skipped = len(images) - len(todo)
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
                    _write_overlay(os.path.join(out_dir, "overlays", rel[path] + ".jpg"), img, res, skip)
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
        try:
            write_json(os.path.join(out_dir, name), {
                **run_info,
                "source": os.path.abspath(src), "classes": categories, "fingerprint": fingerprint,
                "versions": collect_versions(),
                "images": summary.total, "done": summary.done, "skipped_existing": summary.skipped,
                "failed": summary.failed, "seconds": round(summary.seconds, 3), "interrupted": summary.interrupted,
                "shard": {"rank": rank, "world_size": world},
            })
        except OSError as err:  # e.g. the disk filled up: the error being raised says why
            logger.error("could not write %s: %s", name, err)
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
