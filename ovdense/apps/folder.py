"""Segment every image below a folder and write labels, overlays and JSON records.

Layout of ``out_dir``::

    run.json                 resolved config, classes, versions, counts, failures, timings, command
    categories.json          [{"id", "name", "synonyms"}]: the ids used in every label PNG
    labels/<rel>.<ext>.png   class index per pixel (palette PNG; 16-bit grey above 256 classes)
    overlays/<rel>.<ext>.jpg colours, class contours and a legend (background left clear)
    contact_sheet.jpg        the overlays at a glance (written by the command line)
    preds/<rel>.<ext>.json   per-image record; written last, so it marks the image as done
    txt/<rel>.txt            with ``save_txt``: YOLO instance lines (``<rel>`` without the extension,
                             unless two images share it); classes.txt names the txt class ids

``<rel>.<ext>`` is the image's path below the source folder (or below a glob's fixed part)
with its extension kept, so ``a.jpg`` and ``a.png`` never share an output. Every file is
written atomically, so an interrupted run leaves no half-written output and ``resume=True``
skips exactly the images whose record exists. ``run.json`` is written before the first image
with everything a resumption checks (classes, config, dtype, output resolution, txt export;
``status: running``) and again at the end (``complete`` or ``interrupted``), so a run stopped
in any way (Ctrl-C, SIGTERM, SIGKILL, out of memory) can be resumed; a resumed run must match
the recorded one (:class:`RunMismatchError` otherwise; ``overwrite=True`` starts over). An
output folder inside the source folder is never read as input. An unreadable image (corrupt,
empty, unsupported) is reported by name in ``run.json`` and skipped.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from ..io.images import ImageLoadError, LoadedImage, load_image
from ..io.sources import find_images, source_base  # noqa: F401  (re-exported: the folder tool's inputs)
from ..evaluation.meta import collect_versions
from ..io.writers import (YOLO_FORMATS, _json_default, write_json, write_label_png, write_overlay_jpg, write_text,
                          yolo_label_lines)

logger = logging.getLogger(__name__)

#: What a folder run writes into its output folder (``overwrite=True`` removes exactly these).
OUTPUT_FOLDERS = ("labels", "overlays", "preds", "txt")
RUN_FILES = ("run.json", "categories.json", "classes.txt")
#: Images above this many pixels are predicted alone, with a per-image row progress bar.
LARGE_IMAGE_PIXELS = 4_000_000
#: Fingerprint entries that older run.json files lack, and the value they had.
FINGERPRINT_DEFAULTS: Dict[str, Any] = {"resolution": "input", "save_txt": None}
#: Config entries whose value here means the same as their absence (the segmenter's default).
CONFIG_DEFAULTS: Dict[str, Any] = {"refine_at": "input"}


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


def output_stem(path: str, base: str) -> str:
    """Output name of an image: its path below ``base`` with the extension kept (``sub/a.jpg``)."""
    return os.path.relpath(path, base or ".")


def txt_names(rels: Sequence[str]) -> Dict[str, str]:
    """``txt/`` file of each output name: ``sub/a.jpg`` -> ``sub/a.txt`` (what YOLO tools look
    for), or ``sub/a.jpg.txt`` when another image has the same name without its extension."""
    stems = Counter(os.path.splitext(r)[0] for r in rels)
    return {r: (os.path.splitext(r)[0] if stems[os.path.splitext(r)[0]] == 1 else r) + ".txt" for r in rels}


def run_fingerprint(categories: Sequence[Dict[str, Any]], config: Optional[Dict[str, Any]],
                    dtype: Optional[str] = None, resolution: str = "input",
                    save_txt: Optional[str] = None) -> Dict[str, Any]:
    """What must not change between a run and its resumption: the classes, the config, the dtype,
    the output resolution and the txt export format (None: no export).

    ``runtime`` options (batch sizes, memory bounds) and the device do not change the results'
    meaning and are left out; so are config entries set to their default (:data:`CONFIG_DEFAULTS`).
    """
    cfg = {k: v for k, v in (config or {}).items()
           if k not in ("runtime", "classes") and not (k in CONFIG_DEFAULTS and v == CONFIG_DEFAULTS[k])}
    value = {"classes": [[c["name"], list(c["synonyms"])] for c in categories], "config": cfg, "dtype": dtype,
             "resolution": resolution, "save_txt": save_txt}
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


def _recorded_fingerprint(out_dir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(out_dir, "run.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=_json_default) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _leaf_differences(old: Any, new: Any, prefix: str) -> List[str]:
    """Dotted names of the entries that differ (``decode.logit_scale``), recursing into dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{name} (not recorded, now: {_short(new[key])})")
            elif key not in new:
                out.append(f"{name} (recorded: {_short(old[key])}, now: not set)")
            else:
                out += _leaf_differences(old[key], new[key], name)
        return out
    return [] if old == new else [f"{prefix} (recorded: {_short(old)}, now: {_short(new)})"]


def describe_differences(old: Dict[str, Any], new: Dict[str, Any],
                         defaults: Optional[Dict[str, Any]] = None, limit: int = 6) -> List[str]:
    """What differs between a recorded fingerprint and this run's, for one error line: the
    classes, then each differing config entry by its dotted name with both values, then the
    other entries (a missing one counts as its value in ``defaults``)."""
    defaults = FINGERPRINT_DEFAULTS if defaults is None else defaults
    out = []
    if old.get("classes") != new.get("classes"):
        out.append("classes (recorded: " + ", ".join(str(c[0]) if isinstance(c, (list, tuple)) else str(c)
                                                    for c in old.get("classes") or []) + ")")
    out += _leaf_differences(old.get("config") or {}, new.get("config") or {}, "")
    for key in sorted((set(old) | set(new)) - {"classes", "config"}):
        a, b = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
        if a != b:
            out.append(f"{key} (recorded: {_short(a)}, now: {_short(b)})")
    if len(out) > limit:
        out = out[:limit] + [f"{len(out) - limit} more"]
    return out


def has_previous_run(out_dir: str) -> bool:
    """Whether ``out_dir`` already holds a folder run's outputs."""
    return any(os.path.exists(os.path.join(out_dir, n)) for n in RUN_FILES + ("preds",))


def prepare_output(out_dir: str, fingerprint: Optional[Dict[str, Any]], resume: bool = False,
                   overwrite: bool = False) -> None:
    """Check ``out_dir`` against a previous run before anything is computed.

    * ``overwrite``: the previous run's outputs (``labels/``, ``overlays/``, ``preds/``, ``txt/``,
      ``run.json``, ``run_rank*.json``, ``categories.json``, ``classes.txt``) are removed;
      nothing else in the folder is touched.
    * ``resume``: the recorded fingerprint (classes, config, dtype, resolution, txt export) must
      equal ``fingerprint`` (:class:`RunMismatchError` naming what differs otherwise).
    * neither, with a previous run present: :class:`RunMismatchError` (pass one of the two).
    """
    if overwrite:
        for name in OUTPUT_FOLDERS:
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
        for name in RUN_FILES:
            if os.path.isfile(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        for name in os.listdir(out_dir) if os.path.isdir(out_dir) else ():
            if name.startswith("run_rank") and name.endswith(".json"):
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
        raise RunMismatchError(f"cannot resume in {out_dir}: its run.json is missing or records no classes/config "
                               f"to check against (a run made by an older ovdense); pass --overwrite to start over")
    diffs = describe_differences(recorded, fingerprint)
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
    if image.shape[:2] != result.label_map.shape:  # resolution="model": the image as the model saw it
        import cv2

        h, w = result.label_map.shape
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
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


def _accepts(func: Callable, name: str) -> bool:
    """Whether ``func`` takes the keyword ``name`` (duck-typed segmenters may not)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _predict_batch(segmenter, loaded, summary: FolderRunSummary, **kwargs):
    """Predict a batch; if it fails, retry one by one so only the culprit is skipped."""
    try:
        images = [LoadedImage(img, path) for path, img in loaded]  # stages reading side files see the path
        if len(loaded) == 1:  # one image (a large one, or a batch's last): predict(image) gives one result
            results = [segmenter.predict(images[0], **kwargs)]
        else:
            results = segmenter.predict(images, **kwargs)
        return [(p, img, r) for (p, img), r in zip(loaded, results)]
    except (RuntimeError, ValueError, OSError) as err:  # OSError: a missing side file (a region map)
        if len(loaded) == 1:
            path = loaded[0][0]
            summary.failed.append({"path": path, "error": f"{path}: {err}"})
            logger.warning("skipping %s: %s", path, err)
            return []
    out = []
    for item in loaded:
        out += _predict_batch(segmenter, [item], summary, **kwargs)
    return out


class _RowBar:
    """A per-image progress bar over output rows, fed by ``predict(..., progress=callback)``."""

    def __init__(self, name: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, desc=f"{name} rows", unit="row", leave=False, file=sys.stderr)

    def __call__(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()  # shown with its total at once, whatever tqdm's redraw interval
        self.bar.update(max(0, int(done) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


def _groups(loaded, large_pixels: int):
    """Small images in one prediction batch; each large image alone."""
    small = [item for item in loaded if item[1].shape[0] * item[1].shape[1] <= large_pixels]
    large = [[item] for item in loaded if item[1].shape[0] * item[1].shape[1] > large_pixels]
    return ([small] if small else []) + large


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
    resolution: str = "input",
    save_txt: Optional[str] = None,
) -> FolderRunSummary:
    """Run ``segmenter`` (an OVSegmenter with classes set) over every image below ``src``.

    Args:
        src: a folder (searched recursively), one image, or a glob pattern (``photos/*.jpg``).
        batch_size: images whose windows share forward passes. Images above
            :data:`LARGE_IMAGE_PIXELS` are predicted alone, with a row progress bar when
            ``progress`` and the segmenter's ``predict`` takes ``progress=callback``.
        shard: ``(rank, world_size)``: this process takes every ``world_size``-th image.
        run_info: extra fields for ``run.json`` (e.g. the resolved config, the command line).
        resume: skip images whose record exists; the recorded fingerprint must match.
        overwrite: remove a previous run's outputs first.
        images: the images to run (default: :func:`find_images` of ``src``, ``out_dir`` excluded).
        check_output: run :func:`prepare_output` on rank 0 (False when the caller already did, before
            any rank started writing).
        resolution: ``"input"`` (label maps at the image's size) or ``"model"`` (at the size the
            model saw: far cheaper for big photos); passed to ``predict`` when not ``"input"``.
        save_txt: ``"box"`` or ``"polygon"``: also write ``txt/<name>.txt`` YOLO lines of the
            connected-component instances (:func:`ovdense.io.writers.yolo_label_lines`) and
            ``classes.txt`` (the class of each txt id; a background class gets no id).
    """
    from tqdm import tqdm

    if segmenter.vocabulary is None:
        raise RuntimeError("set the segmenter's classes before running a folder")
    if save_txt is not None and save_txt not in YOLO_FORMATS:
        raise ValueError(f"save_txt must be one of {YOLO_FORMATS} or None, got {save_txt!r}")
    rank, world = shard
    if images is None:
        images = find_images(src, exclude=[out_dir])
    base = source_base(src)
    all_rel = {p: output_stem(p, base) for p in images}
    txt_name = txt_names(list(all_rel.values())) if save_txt else {}
    images = list(images)[rank::world]
    rel = {p: all_rel[p] for p in images}
    record_path = {p: os.path.join(out_dir, "preds", rel[p] + ".json") for p in images}
    vocab = segmenter.vocabulary
    categories = [{"id": i, "name": n, "synonyms": list(s)}
                  for i, (n, s) in enumerate(zip(vocab.class_names, vocab.synonyms))]
    run_info = dict(run_info or {})
    fingerprint = run_fingerprint(categories, run_info.get("config", getattr(segmenter, "config", None)),
                                  run_info.get("dtype", str(getattr(segmenter, "dtype", ""))),
                                  resolution=resolution, save_txt=save_txt)
    summary = FolderRunSummary(total=len(images))
    name = "run.json" if world == 1 else f"run_rank{rank}.json"

    def record(status: str) -> Dict[str, Any]:
        return run_record(run_info, src, categories, fingerprint, summary, status, shard)

    os.makedirs(out_dir, exist_ok=True)
    if rank == 0:
        if check_output:
            prepare_output(out_dir, fingerprint, resume=resume, overwrite=overwrite)
        _remove_stale_temps(out_dir)
        write_json(os.path.join(out_dir, "categories.json"), categories)
        if save_txt:
            names = list(vocab.class_names)[1 if vocab.has_background else 0:]
            write_text(os.path.join(out_dir, "classes.txt"), "".join(f"{n}\n" for n in names))
    todo = [p for p in images if not (resume and os.path.isfile(record_path[p]))]
    summary.skipped = len(images) - len(todo)
    if rank == 0:
        # before the first image: what a resumption checks, so that a run stopped in any way
        # (SIGKILL, out of memory) can be resumed; rewritten with the counts at the end
        write_json(os.path.join(out_dir, "run.json"), record("running"))
    skip = (0,) if vocab.has_background else ()
    kwargs: Dict[str, Any] = {} if resolution == "input" else {"resolution": resolution}
    rows_progress = progress and _accepts(segmenter.predict, "progress")
    bar = tqdm(total=len(todo), desc="segment", unit="img", disable=not progress, file=sys.stderr)
    with recorded_run(summary, os.path.join(out_dir, name), record, bar):
        for batch in _batches(todo, max(1, batch_size)):
            loaded = []
            for path in batch:
                try:
                    loaded.append((path, load_image(path)))
                except ImageLoadError as err:
                    summary.failed.append({"path": path, "error": str(err)})
                    logger.warning("skipping %s", err)
                    bar.update(1)
            for group in _groups(loaded, LARGE_IMAGE_PIXELS):
                rows = _RowBar(rel[group[0][0]]) if rows_progress and len(group) == 1 and \
                    group[0][1].shape[0] * group[0][1].shape[1] > LARGE_IMAGE_PIXELS else None
                try:
                    results = _predict_batch(segmenter, group, summary, **kwargs,
                                             **({"progress": rows} if rows is not None else {}))
                finally:
                    if rows is not None:
                        rows.close()
                for path, img, res in results:
                    _write_outputs(out_dir, rel[path], path, img, res, skip, save_overlays, save_txt,
                                   txt_name.get(rel[path]), record_path[path])
                    summary.done += 1
                bar.update(len(group))
    return summary


@contextmanager
def recorded_run(summary: FolderRunSummary, record_path: str, record: Callable[[str], Dict[str, Any]],
                 bar: Any) -> Iterator[None]:
    """The bookkeeping around a folder run's loop: ``summary.seconds`` timed; Ctrl-C (or SIGTERM
    where the command line turns it into one) marks the run interrupted and is re-raised; at
    the end, however it ends, the progress bar is closed and ``record(status)`` is written to
    ``record_path`` (``complete`` or ``interrupted``; a failed write is logged, never raised
    over the error that ended the run)."""
    t_start = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t_start
        try:
            write_json(record_path, record("interrupted" if summary.interrupted else "complete"))
        except OSError as err:  # e.g. the disk filled up: the error being raised says why
            logger.error("could not write %s: %s", record_path, err)


def run_record(run_info: Dict[str, Any], src: str, categories: Sequence[Dict[str, Any]],
               fingerprint: Dict[str, Any], summary: FolderRunSummary, status: str,
               shard: Sequence[int] = (0, 1)) -> Dict[str, Any]:
    """The content of ``run.json`` (or ``run_rank<r>.json``): the run's info, source, classes,
    fingerprint, versions, status (``running``, ``complete``, ``interrupted``) and counts."""
    return {**run_info, "source": os.path.abspath(src), "classes": categories, "fingerprint": fingerprint,
            "versions": collect_versions(), "status": status,
            "images": summary.total, "done": summary.done, "skipped_existing": summary.skipped,
            "failed": summary.failed, "seconds": round(summary.seconds, 3), "interrupted": summary.interrupted,
            "shard": {"rank": int(shard[0]), "world_size": int(shard[1])}}


def _write_outputs(out_dir: str, rel: str, path: str, img, res, skip: Sequence[int], save_overlays: bool,
                   save_txt: Optional[str], txt_name: Optional[str], record_path: str) -> None:
    """One image's outputs; its record last (it marks the image as done)."""
    res.path = path
    write_label_png(os.path.join(out_dir, "labels", rel + ".png"), res.label_map, len(res.class_names))
    if save_overlays:
        _write_overlay(os.path.join(out_dir, "overlays", rel + ".jpg"), img, res, skip)
    if save_txt:  # the instances of build_instances(res, "connected_components"), without N full-size masks
        lines = yolo_label_lines(res.label_map, bool(getattr(res, "has_background", False)), fmt=save_txt)
        write_text(os.path.join(out_dir, "txt", txt_name or os.path.splitext(rel)[0] + ".txt"),
                   "".join(line + "\n" for line in lines))
    record = res.to_dict()
    record.update(label_png=os.path.join("labels", rel + ".png"))
    write_json(record_path, record)


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
