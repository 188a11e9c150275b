"""World v2: a richer deterministic synthetic world with exact masks and held-out compositions.

Scenes are larger than one tiny-CLIP window (default 160 x 224, height x width; the tiny
CLIP sees 64 px windows), so sliding windows, SAM region proposals, DINO-style affinity
refinement and instance AP all have something to do:

* **stuff** covers the whole background in irregular regions (a warped power-diagram of 1-4
  textured stuff classes);
* **things** are solid-coloured shapes, 3-10 per scene drawn from 1-4 classes, so the same
  class often appears several times; objects are *normal* (radius 9-24 px), *small*
  (radius 3-6 px) or *thin* (every ``bar`` is 2-4 px wide and 24-80 px long);
* **occlusion**: objects are drawn in order and later ones cover earlier ones; an instance
  mask is the exact *visible* part (possibly split in pieces by a bar lying across it).
  Placement keeps at least 40 % (and 12 px) of every earlier object visible.

Labels are exact: masks come from integer rasterisation (OpenCV, no anti-aliasing) and the
image, the label map and the instance masks are all painted from the same masks. Every pixel
belongs to exactly one class (stuff or thing); :data:`IGNORE_INDEX` (255) is the value used
for "no class" in the exported PNGs and never occurs in a generated scene.

Classes (20; class id = index into :data:`CLASS_NAMES`)
--------------------------------------------------------
====  ================  ====  ================  ====  ================  ====  ================
id    name              id    name              id    name              id    name
====  ================  ====  ================  ====  ================  ====  ================
0     grass (stuff)     1     water (stuff)     2     sand (stuff)      3     wall (stuff)
4     red circle        5     red square        6     red triangle*     7     red bar
8     yellow circle     9     yellow square     10    yellow triangle   11    yellow bar*
12    purple circle*    13    purple square     14    purple triangle   15    purple bar
16    black circle      17    black square*     18    black triangle    19    black bar
====  ================  ====  ================  ====  ================  ====  ================

Things are colour x shape (``4 + 4 * colour + shape``). The four starred **novel
compositions** (:data:`NOVEL_PAIRS`: red triangle, yellow bar, purple circle, black square,
a Latin square, so every colour and every shape is seen in training with three other
partners) never appear in a training scene, crop or caption; they appear only in the
held-out evaluation split.

Index ranges (``sample(i)`` depends only on ``(seed, i, height, width)``)
-----------------------------------------------------------------------
* :data:`TRAIN_RANGE` = ``range(0, 1_000_000)``: training scenes; things drawn from the 12
  seen thing classes (:data:`SEEN_THING_IDS`) only.
* :data:`EVAL_RANGE` = ``range(1_000_000, 2_000_000)``: held-out evaluation scenes; things
  drawn from all 16 thing classes and every scene holds at least one novel composition.
* Any other index raises ``IndexError``. ``sample_single`` / ``sample_background`` follow
  the same ranges (a novel class with a training index raises ``ValueError``).

API
---
>>> w = WorldV2(seed=0)                       # 160 x 224 scenes
>>> s = w.sample(w.train_range[0])            # SceneV2: image, label_map, instances, stuff, caption
>>> for inst in s.instances: inst.class_id, inst.mask, inst.bbox, inst.area, inst.kind
>>> w.sample_single(w.eval_range[5], class_id=6)   # 64 x 64 crop of a (novel) red triangle
>>> w.sample_window(i, 64)                    # a 64 x 64 window of scene i (also s.crop(y, x, h, w))
>>> for s in w.iter_eval(100): ...
>>> w.write_coco("out/coco", n=200)           # COCO instances JSON + PNGs + names.txt (eval split)
>>> w.write_semseg_benchmark("out/bench", n=200)   # a VOC2012 layout read by ``voc20``

The semantic benchmark uses the ``voc20`` layout of :mod:`ovdense.datasets.semseg`
(``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/val.txt}``, label
PNG value = class id + 1, 0 = nothing, reduced by the reader to class id / 255), which has
exactly 20 classes::

    ovdense eval-semantic --config C --dataset voc20 --data-root out/bench \
        --classes-file out/bench/names.txt

Images in that layout are JPEG (quality 100, 4:4:4 chroma, a few grey levels off at most);
the COCO export keeps lossless PNGs.

Generation takes about 3.5-5.5 ms per 160 x 224 scene and under 1 ms per 64 x 64 single-object
crop (numpy + OpenCV, measured on a shared 2-core machine). Same seed, index, size and library
versions give the same bytes.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ovdense.ops.masks import mask_to_bbox

from .coco_export import write_coco_export

__all__ = [
    "CLASS_NAMES", "COLOURS", "SHAPES", "STUFF", "STUFF_IDS", "THING_IDS", "NOVEL_PAIRS",
    "NOVEL_IDS", "SEEN_THING_IDS", "TRAIN_RANGE", "EVAL_RANGE", "IGNORE_INDEX", "NUM_CLASSES",
    "SYNONYMS", "InstanceV2", "SceneV2", "WorldV2", "caption_for", "caption_for_v2",
    "class_id_of", "colour_shape_of", "names_file_text", "coco_categories",
]

# --------------------------------------------------------------------------------------
# Classes, splits
# --------------------------------------------------------------------------------------

#: stuff classes: name, synonyms, mean RGB colour
STUFF: List[Tuple[str, Tuple[str, ...], Tuple[int, int, int]]] = [
    ("grass", ("lawn",), (70, 140, 45)),
    ("water", ("sea",), (35, 85, 175)),
    ("sand", ("beach",), (215, 190, 135)),
    ("wall", ("brick wall",), (165, 160, 150)),
]
#: thing colours: name, RGB
COLOURS: List[Tuple[str, Tuple[int, int, int]]] = [
    ("red", (220, 35, 35)),
    ("yellow", (240, 205, 25)),
    ("purple", (140, 60, 205)),
    ("black", (25, 25, 25)),
]
#: thing shapes (``bar`` is the thin one)
SHAPES: List[str] = ["circle", "square", "triangle", "bar"]

NUM_STUFF = len(STUFF)
STUFF_IDS: List[int] = list(range(NUM_STUFF))
THING_IDS: List[int] = list(range(NUM_STUFF, NUM_STUFF + len(COLOURS) * len(SHAPES)))
CLASS_NAMES: List[str] = [s[0] for s in STUFF] + [f"{c} {s}" for c, _ in COLOURS for s in SHAPES]
NUM_CLASSES = len(CLASS_NAMES)
SYNONYMS: Dict[int, Tuple[str, ...]] = {i: s[1] for i, s in enumerate(STUFF)}

#: (colour, shape) pairs held out from every training scene, crop and caption
NOVEL_PAIRS: Tuple[Tuple[str, str], ...] = (
    ("red", "triangle"), ("yellow", "bar"), ("purple", "circle"), ("black", "square"))


def class_id_of(colour: str, shape: str) -> int:
    """Class id of a (colour, shape) thing."""
    return NUM_STUFF + [c for c, _ in COLOURS].index(colour) * len(SHAPES) + SHAPES.index(shape)


NOVEL_IDS: List[int] = sorted(class_id_of(c, s) for c, s in NOVEL_PAIRS)
SEEN_THING_IDS: List[int] = [c for c in THING_IDS if c not in NOVEL_IDS]

TRAIN_RANGE = range(0, 1_000_000)
EVAL_RANGE = range(1_000_000, 2_000_000)
IGNORE_INDEX = 255

_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def colour_shape_of(cid: int) -> Tuple[int, int]:
    """(colour index into :data:`COLOURS`, shape index into :data:`SHAPES`) of a thing class id;
    the inverse of :func:`class_id_of`."""
    k = cid - NUM_STUFF
    return k // len(SHAPES), k % len(SHAPES)


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def names_file_text() -> str:
    """Class-name file: one class per line in class-id order, synonyms after ', '."""
    return "\n".join(", ".join((n,) + SYNONYMS.get(i, ())) for i, n in enumerate(CLASS_NAMES)) + "\n"


def coco_categories() -> List[dict]:
    """COCO categories: id = class id + 1, ``isthing`` 0 for stuff, ``novel`` flag."""
    return [{"id": i + 1, "name": n, "supercategory": "stuff" if i < NUM_STUFF else "thing",
             "isthing": int(i >= NUM_STUFF), "novel": int(i in NOVEL_IDS)}
            for i, n in enumerate(CLASS_NAMES)]


# --------------------------------------------------------------------------------------
# Scene structures
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class InstanceV2:
    """One instance: class id and exact visible boolean mask (full image size).

    ``kind`` is ``"normal"``, ``"small"``, ``"thin"`` (bars) or ``"stuff"``; ``full_area`` is
    the in-frame area before occlusion (the amodal area; equal to ``area`` when nothing
    covers it). Iterating yields ``(class_id, mask)`` like v1's instance tuples.
    """

    class_id: int
    mask: np.ndarray
    kind: str = "normal"
    full_area: int = 0

    def __iter__(self):
        return iter((self.class_id, self.mask))

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def bbox(self) -> Tuple[int, int, int, int]:
        """Tight box of the visible mask, COCO ``(x, y, width, height)`` in whole pixels."""
        return mask_to_bbox(self.mask)

    @property
    def occluded(self) -> bool:
        return self.area < self.full_area

    @property
    def is_thing(self) -> bool:
        return self.class_id >= NUM_STUFF

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.class_id]


@dataclass(eq=False)
class SceneV2:
    """One sample. ``instances`` are the things in drawing order (bottom to top); ``stuff`` has
    one segment per stuff class present. ``segments`` (stuff + things) tile the image once."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    label_map: np.ndarray  # H x W int64 class ids
    instances: List[InstanceV2] = field(default_factory=list)
    stuff: List[InstanceV2] = field(default_factory=list)
    caption: str = ""
    index: int = -1
    split: str = ""

    @property
    def segments(self) -> List[InstanceV2]:
        return list(self.stuff) + list(self.instances)

    @property
    def class_ids(self) -> List[int]:
        return sorted({s.class_id for s in self.segments})

    @property
    def thing_class_ids(self) -> List[int]:
        return sorted({s.class_id for s in self.instances})

    def instance_map(self) -> np.ndarray:
        """int32 map: 0 where no thing, ``k + 1`` on the visible pixels of ``instances[k]``."""
        out = np.zeros(self.label_map.shape, np.int32)
        for k, inst in enumerate(self.instances):
            out[inst.mask] = k + 1
        return out

    def crop(self, y0: int, x0: int, h: int, w: int, min_pixels: int = 1) -> "SceneV2":
        """The window ``[y0:y0+h, x0:x0+w]`` with its instances (those with >= ``min_pixels``
        pixels inside) and a caption naming them (e.g. for training CLIP on windows)."""
        sl = (slice(y0, y0 + h), slice(x0, x0 + w))

        def cut(items):
            out = []
            for it in items:
                m = np.ascontiguousarray(it.mask[sl])
                if np.count_nonzero(m) >= min_pixels:
                    out.append(InstanceV2(it.class_id, m, it.kind, it.full_area))
            return out

        sc = SceneV2(np.ascontiguousarray(self.image[sl]), np.ascontiguousarray(self.label_map[sl]),
                     cut(self.instances), cut(self.stuff), index=self.index, split=self.split)
        sc.caption = caption_for(sc.segments)
        return sc


def caption_for(instances: Iterable, rng: Optional[np.random.Generator] = None, min_pixels: int = 1,
                synonym_prob: float = 0.0, counts: bool = True) -> str:
    """Caption naming every thing and stuff class among ``instances``.

    ``instances``: :class:`InstanceV2` objects or ``(class_id, mask)`` pairs; segments with
    fewer than ``min_pixels`` pixels are left out. Things come first ("two red circles",
    "a yellow bar" with ``counts``, else always "a red circle"), then the stuff ("on grass and
    water"), each by decreasing area, or shuffled with ``rng`` (training captions, where stuff
    names are replaced by a synonym with probability ``synonym_prob``).
    """
    area: Dict[int, int] = {}
    count: Dict[int, int] = {}
    for cid, m in instances:
        a = int(np.count_nonzero(m))
        if a >= min_pixels:
            area[cid] = area.get(cid, 0) + a
            count[cid] = count.get(cid, 0) + 1
    things = [c for c in area if c >= NUM_STUFF]
    stuff = [c for c in area if c < NUM_STUFF]
    if rng is None:
        things.sort(key=lambda c: (-area[c], c))
        stuff.sort(key=lambda c: (-area[c], c))
    else:
        rng.shuffle(things)
        rng.shuffle(stuff)

    def thing(c):
        n = count[c] if counts else 1
        name = CLASS_NAMES[c]
        return f"{_article(name)} {name}" if n == 1 else f"{_NUMBERS.get(n, 'many')} {name}s"

    def sname(c):
        if rng is not None and synonym_prob > 0 and SYNONYMS.get(c) and rng.random() < synonym_prob:
            return SYNONYMS[c][int(rng.integers(len(SYNONYMS[c])))]
        return CLASS_NAMES[c]

    obj = _join([thing(c) for c in things])
    bg = _join([sname(c) for c in stuff])
    if obj and bg:
        return f"a photo of {obj} on {bg}."
    return f"a photo of {obj or bg}."


caption_for_v2 = caption_for

# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------

_GRIDS: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    key = (h, w)
    if key not in _GRIDS:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        _GRIDS[key] = (yy, xx)
    return _GRIDS[key]


def _noise(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


#: per stuff class: the colour direction its scalar texture field moves along
_STUFF_DIR = np.array([[0.45, 1.0, 0.35], [0.8, 1.0, 0.85], [1.0, 1.0, 0.82], [1.0, 0.97, 0.92]], np.float32)


def _stuff_field(kind: int, h: int, w: int, rng: np.random.Generator, noise: np.ndarray,
                 y0: int = 0, x0: int = 0) -> np.ndarray:
    """Scalar float32 texture field of stuff class ``kind`` on the ``h`` x ``w`` window at
    ``(y0, x0)``; the colour is ``base + field * _STUFF_DIR[kind]``. ``noise`` is the window
    of the scene's shared unit-variance pixel noise. Pixel-scale statistics do not depend on the
    image size (a 64 px window looks the same in any scene)."""
    if kind == 0:  # grass: short vertical blades of darker / lighter green, lighter patches
        k = int(rng.integers(5, 10))
        blades = cv2.blur(noise, (1, k), borderType=cv2.BORDER_REFLECT)
        patch = cv2.resize(_noise(rng, (h // 24 + 2, w // 24 + 2)), (w, h), interpolation=cv2.INTER_LINEAR)
        return blades * (20.0 * math.sqrt(k)) + patch * 9.0 + noise * 4.0
    if kind == 1:  # water: bright wavy crests and darker troughs on deep blue
        period = rng.uniform(5.0, 8.0)
        amp = rng.uniform(1.0, 2.5)
        lam = rng.uniform(6.0, 12.0)
        ph = rng.uniform(0, 2 * math.pi, 2)
        yy = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        xx = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
        a = np.float32(2 * math.pi / period)
        wave = np.sin(a * yy + (a * amp * np.sin(xx * np.float32(1.0 / lam) + np.float32(ph[0])) + np.float32(ph[1])))
        return np.clip((wave - 0.55) * (70 / 0.45), 0, 70) - np.clip((-wave - 0.6) * 25, 0, 25) + noise * 5.0
    if kind == 2:  # sand: blotchy low frequencies plus dark and light grains
        blotch = cv2.resize(_noise(rng, (h // 8 + 2, w // 8 + 2)), (w, h), interpolation=cv2.INTER_CUBIC)
        f = blotch * 9.0 + noise * 6.0
        f[noise < -1.5] -= 55.0  # 6.7 % dark grains
        f[noise > 1.6] += 30.0  # 3.8 % light grains
        return f
    # wall: staggered bricks of varying tone with dark mortar lines
    bh = int(rng.integers(7, 11))
    bw = int(round(bh * rng.uniform(1.8, 2.6)))
    oy, ox = int(rng.integers(0, bh)), int(rng.integers(0, bw))
    yy = np.arange(y0, y0 + h)[:, None] + oy
    row = yy // bh
    xs = np.arange(x0, x0 + w)[None, :] + ox + (row % 2) * (bw // 2)
    col = xs // bw
    tone = rng.normal(0, 11, (int(row.max()) + 1, int(col.max()) + 1)).astype(np.float32)
    f = tone[row, col] + noise * 4.0
    f[((yy % bh) == 0) | ((xs % bw) == 0)] = -62.0
    return f


def _smooth(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Upsample a coarse noise grid to ``h`` x ``w``: cubic to a quarter size, then linear
    (a direct cubic upsampling by a large factor is several times slower in OpenCV)."""
    q = cv2.resize(grid, (max(w // 4, 2), max(h // 4, 2)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(q, (w, h), interpolation=cv2.INTER_LINEAR)


def _stuff_layout(h: int, w: int, kinds: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """uint8 map of stuff classes: a power diagram of 1-2 seeds per class on warped coordinates,
    so region boundaries are irregular curves. Every class keeps >= 3 % of the image when it
    can (a few retries)."""
    kinds = np.asarray(kinds, np.int64)
    if len(kinds) == 1:
        return np.full((h, w), kinds[0], np.uint8)
    yy, xx = _grid(h, w)
    gh, gw = h // 40 + 3, w // 40 + 3
    best, best_min = None, -1.0
    for _ in range(8):
        owner = np.concatenate([np.arange(len(kinds)), rng.integers(0, len(kinds), len(kinds))])
        owner = owner[: len(kinds) + int(rng.integers(0, len(kinds) + 1))]
        sy = rng.uniform(0, h, len(owner)).astype(np.float32)
        sx = rng.uniform(0, w, len(owner)).astype(np.float32)
        wt = (rng.uniform(-0.3, 0.3, len(owner)) * h * w / len(owner)).astype(np.float32)
        amp = rng.uniform(8.0, 20.0)
        dx = _smooth(_noise(rng, (gh, gw)), h, w) * np.float32(amp)
        dy = _smooth(_noise(rng, (gh, gw)), h, w) * np.float32(amp)
        px, py = dx.__iadd__(xx), dy.__iadd__(yy)
        # power distance |p - s_j|^2 - wt_j without the |p|^2 common to all seeds: one fused op
        best_d = None
        nearest = np.zeros((h, w), np.uint8)
        for j in range(len(owner)):  # argmin over seeds (first minimum wins ties)
            c = float(sx[j]) ** 2 + float(sy[j]) ** 2 - float(wt[j])
            dj = cv2.addWeighted(px, -2.0 * float(sx[j]), py, -2.0 * float(sy[j]), c)
            if best_d is None:
                best_d = dj
            else:
                nearest[dj < best_d] = j
                np.minimum(best_d, dj, out=best_d)
        frac = np.bincount(nearest.ravel(), minlength=len(owner)) @ (owner[:, None] == np.arange(len(kinds)))
        if frac.min() / (h * w) > best_min:
            best, best_min = (kinds[owner], nearest), float(frac.min() / (h * w))
        if best_min >= 0.03:
            break
    table = np.zeros(256, np.uint8)
    table[: len(best[0])] = best[0]
    return cv2.LUT(best[1], table)


def _shape_extent(shape: str, size: float, length: float) -> float:
    if shape == "bar":
        return 0.5 * math.hypot(length, size) + 1
    return {"circle": 1.0, "square": 0.88 * math.sqrt(2), "triangle": 1.25}[shape] * size + 1


def _draw(shape: str, h: int, w: int, cx: float, cy: float, size: float, length: float,
          rot: float) -> Tuple[Optional[np.ndarray], int, int]:
    """Rasterise one filled shape (no anti-aliasing) into a local canvas.

    Returns ``(mask, y0, x0)``: the boolean mask of the image window starting at ``(y0, x0)``
    (the same pixels a full-frame drawing gives), or ``(None, 0, 0)`` if it misses the image.
    ``size`` is the radius (circle, square, triangle) or the width (bar).
    """
    ext = _shape_extent(shape, size, length)
    x0, x1 = max(0, int(math.floor(cx - ext))), min(w, int(math.ceil(cx + ext)) + 1)
    y0, y1 = max(0, int(math.floor(cy - ext))), min(h, int(math.ceil(cy + ext)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None, 0, 0
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    sub = 4
    f = 1 << sub
    lx, ly = cx - x0, cy - y0
    if shape == "circle":
        cv2.circle(m, (int(round(lx * f)), int(round(ly * f))), int(round(size * f)), 1, -1,
                   lineType=cv2.LINE_8, shift=sub)
    else:
        if shape == "square":
            a = size * 0.88
            pts = [(-a, -a), (a, -a), (a, a), (-a, a)]
        elif shape == "triangle":
            R = size * 1.25
            pts = [(R * math.cos(t), R * math.sin(t))
                   for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        else:  # bar
            a, b = length / 2, size / 2
            pts = [(-a, -b), (a, -b), (a, b), (-a, b)]
        p = np.asarray(pts, np.float64)
        c, s = math.cos(rot), math.sin(rot)
        q = np.stack([p[:, 0] * c - p[:, 1] * s + lx, p[:, 0] * s + p[:, 1] * c + ly], 1)
        cv2.fillPoly(m, [np.round(q * f).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=sub)
    return m.view(bool), y0, x0


# --------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------


class WorldV2:
    """Deterministic generator of v2 scenes (see the module docstring).

    Args:
        seed: world seed; ``sample(i)`` depends only on ``(seed, i, height, width)``.
        height, width: scene size (default 160 x 224). Object and texture sizes are in pixels
            and do not scale with the scene.
        min_objects, max_objects: thing instances attempted per scene (some may not fit).
        max_classes: at most this many thing classes per scene (so classes repeat).
        small_prob: chance that a non-bar object is small (radius 3-6 px).
        keep_visible: fraction of every object that later objects must leave visible.
    """

    train_range = TRAIN_RANGE
    eval_range = EVAL_RANGE

    def __init__(self, seed: int = 0, height: int = 160, width: int = 224, min_objects: int = 3,
                 max_objects: int = 10, max_classes: int = 4, small_prob: float = 0.25,
                 keep_visible: float = 0.4):
        self.seed = int(seed)
        self.height, self.width = int(height), int(width)
        self.min_objects, self.max_objects = int(min_objects), int(max_objects)
        self.max_classes = int(max_classes)
        self.small_prob = float(small_prob)
        self.keep_visible = float(keep_visible)
        self.min_visible_px = 12
        self.class_names: List[str] = list(CLASS_NAMES)
        self.stuff_ids = list(STUFF_IDS)
        self.thing_ids = list(THING_IDS)
        self.novel_ids = list(NOVEL_IDS)
        self.seen_thing_ids = list(SEEN_THING_IDS)
        self.novel_pairs = NOVEL_PAIRS
        self.ignore_index = IGNORE_INDEX
        self.background_index: Optional[int] = None  # every pixel has a named class

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    # ------------------------------------------------------------------ splits
    @staticmethod
    def split_of(index: int) -> str:
        """``"train"`` or ``"eval"``; ``IndexError`` outside both ranges."""
        index = int(index)
        if index in TRAIN_RANGE:
            return "train"
        if index in EVAL_RANGE:
            return "eval"
        raise IndexError(f"scene index {index} is outside TRAIN_RANGE {TRAIN_RANGE} and EVAL_RANGE {EVAL_RANGE}")

    def allowed_thing_ids(self, index: int) -> List[int]:
        """Thing classes that may appear at this index (seen only in the training range)."""
        return list(SEEN_THING_IDS) if self.split_of(index) == "train" else list(THING_IDS)

    def split_range(self, split: str) -> range:
        if split == "train":
            return TRAIN_RANGE
        if split == "eval":
            return EVAL_RANGE
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")

    def _rng(self, index: int, stream: int, h: int, w: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), stream, h, w])

    # ------------------------------------------------------------------ composition
    def _things(self, rng, h, w, classes: Sequence[int], kinds: Optional[Sequence[str]] = None,
                centered: bool = False):
        """Place objects in order; returns ``owner`` (uint8: 0 = none, ``k + 1`` = object ``k``
        on top there) and per-object info."""
        owner = np.zeros((h, w), np.uint8)
        vis: List[int] = []
        full: List[int] = []
        info: List[Tuple[int, str, Tuple[int, int, int, int]]] = []  # class, kind, local bbox
        for i, cid in enumerate(classes[:254]):
            shape = SHAPES[colour_shape_of(cid)[1]]
            if kinds is not None:
                kind = kinds[i]
            else:
                kind = "thin" if shape == "bar" else ("small" if rng.random() < self.small_prob else "normal")
            for _ in range(15):
                if kind == "thin":
                    size, length = rng.uniform(2.0, 4.0), rng.uniform(24.0, 80.0)
                    if centered:
                        size, length = rng.uniform(3.0, 5.0), rng.uniform(40.0, 0.9 * min(h, w))
                elif kind == "small":
                    size, length = rng.uniform(3.0, 6.0), 0.0
                else:
                    size, length = (rng.uniform(17.0, 22.0) if centered else rng.uniform(9.0, 24.0)), 0.0
                rot = rng.uniform(0, 2 * math.pi)
                if centered:
                    cx, cy = w / 2 + rng.uniform(-4, 4), h / 2 + rng.uniform(-4, 4)
                else:
                    mg = 4.0 if kind == "thin" else 0.5 * size
                    cx, cy = rng.uniform(mg, w - mg), rng.uniform(mg, h - mg)
                m, y0, x0 = _draw(shape, h, w, cx, cy, size, length, rot)
                if m is None:
                    continue
                area = int(np.count_nonzero(m))
                if area < self.min_visible_px:
                    continue
                sub = owner[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
                hit = sub[m]
                hit = hit[hit > 0]
                if hit.size:
                    lost = np.bincount(hit, minlength=len(vis) + 1)[1:]
                    left = np.asarray(vis) - lost
                    need = np.maximum(np.ceil(self.keep_visible * np.asarray(full)), self.min_visible_px)
                    if np.any(left < need):
                        continue
                    vis = left.tolist()
                sub[m] = len(vis) + 1
                vis.append(area)
                full.append(area)
                info.append((int(cid), kind, (y0, x0, m.shape[0], m.shape[1])))
                break
        return owner, full, info

    def _compose(self, rng, h, w, stuff_kinds, classes, kinds=None, centered=False) -> SceneV2:
        stuff_lab = _stuff_layout(h, w, stuff_kinds, rng)
        # shared unit-variance pixel noise (uniform: four times cheaper to draw than normal)
        noise = rng.random((h, w), dtype=np.float32)
        noise -= 0.5
        noise *= np.float32(math.sqrt(12.0))
        base = np.array([s[2] for s in STUFF], np.float32) + rng.normal(0, 6, (NUM_STUFF, 3)).astype(np.float32)
        if len(stuff_kinds) == 1:
            fld = _stuff_field(int(stuff_kinds[0]), h, w, rng, noise)
        else:
            fld = np.empty((h, w), np.float32)
            for k in stuff_kinds:  # each texture only on the bounding box of its region
                sel = stuff_lab == k
                rows, cols = np.flatnonzero(sel.any(1)), np.flatnonzero(sel.any(0))
                if rows.size == 0:
                    continue
                win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                f = _stuff_field(int(k), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1), rng,
                                 noise[win], int(rows[0]), int(cols[0]))
                np.copyto(fld[win], f, where=sel[win])
        planes = np.empty((3, h, w), np.float32)  # planar RGB (broadcasting over channels is slow)
        lut_b, lut_d = np.zeros((2, 256), np.float32)
        for c in range(3):
            lut_b[:NUM_STUFF], lut_d[:NUM_STUFF] = base[:, c], _STUFF_DIR[:, c]
            planes[c] = cv2.LUT(stuff_lab, lut_b)
            planes[c] += fld * cv2.LUT(stuff_lab, lut_d)
        owner, full, info = self._things(rng, h, w, classes, kinds, centered)
        cls_of = np.zeros(256, np.uint8)
        cls_of[1:len(info) + 1] = [c for c, _, _ in info]
        label8 = stuff_lab.copy()
        np.copyto(label8, cv2.LUT(owner, cls_of), where=owner > 0)
        instances: List[InstanceV2] = []
        for i, (cid, kind, (y0, x0, bh, bw)) in enumerate(info):
            mask = owner == i + 1
            instances.append(InstanceV2(cid, mask, kind, full[i]))
            # paint: jittered colour, a gentle shading gradient and pixel noise, in the box
            loc = mask[y0:y0 + bh, x0:x0 + bw]
            if not loc.any():
                continue
            col = np.array(COLOURS[colour_shape_of(cid)[0]][1], np.float32) + rng.normal(0, 10, 3).astype(np.float32)
            g = rng.normal(0, 1, 2).astype(np.float32) * np.float32(0.15 / 64.0)
            shade = (np.arange(bh, dtype=np.float32)[:, None] - bh / 2) * g[1]
            shade = shade + (np.arange(bw, dtype=np.float32)[None, :] - bw / 2) * g[0]
            shade += 1.0
            grain = noise[y0:y0 + bh, x0:x0 + bw] * 4.0
            for c in range(3):
                np.copyto(planes[c, y0:y0 + bh, x0:x0 + bw], shade * col[c] + grain, where=loc)
        stuff = []
        for k in sorted(set(int(v) for v in stuff_kinds)):
            m = label8 == k
            if m.any():
                stuff.append(InstanceV2(k, m, "stuff", int(np.count_nonzero(stuff_lab == k))))
        label = label8.astype(np.int64)
        # |x| rounded and saturated to uint8 (colours are >= 0 but for rare noise on black)
        image = cv2.merge([cv2.convertScaleAbs(planes[c]) for c in range(3)])
        return SceneV2(image=image, label_map=label, instances=instances, stuff=stuff)

    # ------------------------------------------------------------------ public API
    def sample(self, index: int) -> SceneV2:
        """The scene with this index (deterministic; the split follows from the index)."""
        split = self.split_of(index)
        h, w = self.height, self.width
        for attempt in range(32):
            # stream 0; a later stream only in the (never yet seen) case that an evaluation
            # scene lost its novel object because it did not fit
            rng = self._rng(index, 0 if attempt == 0 else 100 + attempt, h, w)
            n_stuff = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.4, 0.3, 0.15]))
            stuff_kinds = sorted(rng.choice(STUFF_IDS, size=n_stuff, replace=False).tolist())
            n_obj = int(rng.integers(self.min_objects, self.max_objects + 1))
            n_cls = int(rng.integers(1, min(self.max_classes, len(SEEN_THING_IDS)) + 1))
            if split == "train":
                chosen = rng.choice(SEEN_THING_IDS, size=n_cls, replace=False).tolist()
            else:  # every evaluation scene holds at least one novel composition
                first = int(rng.choice(NOVEL_IDS))
                rest = [c for c in THING_IDS if c != first]
                chosen = [first] + rng.choice(rest, size=n_cls - 1, replace=False).tolist()
            classes = chosen + rng.choice(chosen, size=max(n_obj - n_cls, 0)).tolist()
            rng.shuffle(classes)
            scene = self._compose(rng, h, w, stuff_kinds, classes)
            if split == "train" or set(scene.thing_class_ids) & set(NOVEL_IDS):
                break
        else:  # pragma: no cover
            raise RuntimeError(f"could not place a novel object in evaluation scene {index}")
        scene.caption = caption_for(scene.segments)
        scene.index, scene.split = int(index), split
        return scene

    def sample_single(self, index: int, class_id: Optional[int] = None, size: int = 64) -> SceneV2:
        """A large, centred single object on one stuff class (``size`` x ``size``, zero-shot tests).

        Default class: ``allowed[index % len(allowed)]`` with the classes allowed at this index
        (12 seen classes in the training range, all 16 in the evaluation range). A novel class
        with a training index raises ``ValueError``. Caption: "a photo of a red circle on grass."
        """
        split = self.split_of(index)
        allowed = self.allowed_thing_ids(index)
        if class_id is None:
            class_id = allowed[int(index) % len(allowed)]
        if class_id not in allowed:
            raise ValueError(f"class {class_id} ({CLASS_NAMES[class_id] if 0 <= class_id < NUM_CLASSES else '?'}) "
                             f"is not allowed at {split} index {index}")
        rng = self._rng(index, 1, size, size)
        kind = int(rng.choice(STUFF_IDS))
        shape = SHAPES[colour_shape_of(class_id)[1]]
        scene = self._compose(rng, size, size, [kind], [class_id],
                              kinds=["thin" if shape == "bar" else "normal"], centered=True)
        scene.caption = caption_for(scene.segments)
        scene.index, scene.split = int(index), split
        return scene

    def sample_window(self, index: int, size: int = 64, min_pixels: int = 1) -> SceneV2:
        """A ``size`` x ``size`` window of scene ``index`` at a position drawn from
        ``(seed, index)`` (deterministic), with the instances inside it and their caption
        (e.g. to train the tiny CLIP on windows of the scenes it will segment)."""
        scene = self.sample(index)
        h, w = scene.label_map.shape
        size = min(int(size), h, w)
        rng = self._rng(index, 3, h, w)
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return scene.crop(y0, x0, size, size, min_pixels=min_pixels)

    def sample_background(self, index: int, class_id: Optional[int] = None, size: int = 64) -> SceneV2:
        """A stuff-only ``size`` x ``size`` image, class ``index % 4`` unless given."""
        split = self.split_of(index)
        if class_id is None:
            class_id = STUFF_IDS[int(index) % NUM_STUFF]
        if class_id not in STUFF_IDS:
            raise ValueError(f"class {class_id} is not a stuff class")
        rng = self._rng(index, 2, size, size)
        scene = self._compose(rng, size, size, [class_id], [])
        scene.caption = caption_for(scene.segments)
        scene.index, scene.split = int(index), split
        return scene

    def indices(self, split: str, n: Optional[int] = None, start: int = 0) -> range:
        """Indices ``start .. start+n-1`` of a split's range (all of it when ``n`` is None)."""
        r = self.split_range(split)
        stop = len(r) if n is None else min(len(r), start + int(n))
        return r[start:stop]

    def iter_train(self, n: Optional[int] = None, start: int = 0) -> Iterator[SceneV2]:
        for i in self.indices("train", n, start):
            yield self.sample(i)

    def iter_eval(self, n: Optional[int] = None, start: int = 0) -> Iterator[SceneV2]:
        for i in self.indices("eval", n, start):
            yield self.sample(i)

    def caption(self, scene: SceneV2, rng: Optional[np.random.Generator] = None, **kw) -> str:
        return caption_for(scene.segments, rng, **kw)

    def names_file_text(self) -> str:
        return names_file_text()

    def coco_categories(self) -> List[dict]:
        return coco_categories()

    def _info(self, split: str) -> dict:
        return {"description": "ovdense synthetic world v2", "seed": self.seed, "height": self.height,
                "width": self.width, "split": split, "train_range": [TRAIN_RANGE.start, TRAIN_RANGE.stop],
                "eval_range": [EVAL_RANGE.start, EVAL_RANGE.stop],
                "novel_pairs": [list(p) for p in NOVEL_PAIRS], "novel_class_ids": list(NOVEL_IDS)}

    # ------------------------------------------------------------------ exports
    def write_coco(self, out_dir: str, n: int, split: str = "eval", start: int = 0,
                   include_stuff: bool = False) -> str:
        """Write ``n`` scenes of ``split`` (``indices(split, n, start)``) in COCO form.

        Layout: ``images/{index:08d}.png`` (lossless RGB), ``labels/{index:08d}.png`` (uint8
        class ids, :data:`IGNORE_INDEX` for no class, which does not occur),
        ``annotations.json`` (COCO instances: image id = scene index, category id = class id
        + 1 for all 20 classes with ``isthing``; one annotation per visible thing instance in
        drawing order, RLE with ``str`` counts, ``iscrowd`` 0, ``area`` = mask pixel count,
        ``bbox`` = tight box of the mask; with ``include_stuff`` also one annotation per
        stuff class present, before the things), ``captions.json`` and ``names.txt``.
        Returns the path of ``annotations.json``.
        """
        def scenes():
            for index in self.indices(split, n, start):
                yield index, self.sample(index)

        def masks(scene: SceneV2):
            for inst in (scene.segments if include_stuff else scene.instances):
                yield inst.class_id, inst.mask, {"kind": inst.kind, "occluded": int(inst.occluded)}

        return write_coco_export(out_dir, scenes(), masks, info=self._info(split), categories=coco_categories(),
                                 names_text=names_file_text())

    def write_semseg_benchmark(self, root: str, n: int, split: str = "eval", start: int = 0,
                               jpeg_quality: int = 100) -> str:
        """Write ``n`` scenes of ``split`` as a benchmark read by ``build_dataset("voc20", root)``.

        Layout under ``root``: ``VOCdevkit/VOC2012/JPEGImages/{index:08d}.jpg`` (JPEG, 4:4:4),
        ``VOCdevkit/VOC2012/SegmentationClass/{index:08d}.png`` (uint8, class id + 1; 0 would
        be "no class", which the ``voc20`` reader maps to 255 = ignore),
        ``VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt`` and ``names.txt`` (the 20 class
        lines, for ``--classes-file``). Returns the dataset root (``.../VOC2012``).
        """
        base = os.path.join(root, "VOCdevkit", "VOC2012")
        img_dir = os.path.join(base, "JPEGImages")
        seg_dir = os.path.join(base, "SegmentationClass")
        set_dir = os.path.join(base, "ImageSets", "Segmentation")
        for d in (img_dir, seg_dir, set_dir):
            os.makedirs(d, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ids = []
        for index in self.indices(split, n, start):
            scene = self.sample(index)
            name = f"{index:08d}"
            cv2.imwrite(os.path.join(img_dir, name + ".jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), params)
            cv2.imwrite(os.path.join(seg_dir, name + ".png"), (scene.label_map + 1).astype(np.uint8))
            ids.append(name)
        with open(os.path.join(set_dir, "val.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        with open(os.path.join(root, "names.txt"), "w") as f:
            f.write(names_file_text())
        with open(os.path.join(root, "world_v2.json"), "w") as f:
            json.dump({**self._info(split), "dataset": "voc20", "indices": [int(i) for i in ids]}, f)
        return base
