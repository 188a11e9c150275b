"""A small, deterministic synthetic world for offline open-vocabulary segmentation tests.

Every scene is a textured *stuff* background (one or two of ``grass``, ``water``, ``sand``)
with one to three solid-coloured *things* (each class has its own colour and shape) drawn
on top.  Labels are exact: the label map is painted from the same boolean masks that
colour the pixels, every pixel belongs to exactly one class, and there is no unlabeled or
ignore pixel.  Captions name every visible object and every background.

Everything is drawn with numpy and OpenCV from a ``numpy.random.Generator`` seeded with
``(seed, index)``, so ``sample(i)`` returns the same scene on every machine and call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .coco_export import write_coco_export

# --------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------

#: stuff classes (backgrounds): name, synonyms, mean RGB colour
STUFF = [
    ("grass", ("lawn",), (70, 140, 45)),
    ("water", ("sea",), (35, 85, 175)),
    ("sand", ("beach",), (215, 190, 135)),
]

#: thing classes (objects): name, shape, RGB colour
THINGS = [
    ("red circle", "circle", (220, 35, 35)),
    ("white square", "square", (240, 240, 240)),
    ("black triangle", "triangle", (25, 25, 25)),
    ("purple star", "star", (145, 55, 200)),
    ("orange cross", "cross", (255, 140, 20)),
    ("pink heart", "heart", (255, 120, 195)),
]

CLASS_NAMES: List[str] = [s[0] for s in STUFF] + [t[0] for t in THINGS]
NUM_STUFF = len(STUFF)
STUFF_IDS = list(range(NUM_STUFF))
THING_IDS = list(range(NUM_STUFF, NUM_STUFF + len(THINGS)))
SYNONYMS: Dict[int, Tuple[str, ...]] = {i: s[1] for i, s in enumerate(STUFF)}


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f" and {items[-1]}"


@dataclass
class Scene:
    """One sample: RGB image, exact labels, per-instance masks and a caption."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    label_map: np.ndarray  # H x W int64 class ids
    instances: List[Tuple[int, np.ndarray]] = field(default_factory=list)  # (class_id, bool mask)
    caption: str = ""
    index: int = -1

    @property
    def class_ids(self) -> List[int]:
        return sorted({c for c, _ in self.instances})


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------


def _texture(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A full-frame float32 RGB texture for stuff class ``kind``."""
    s = size / 64.0
    base = np.array(STUFF[kind][2], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:  # grass: many short, nearly vertical blades in darker / lighter greens
        n = int(size * size / 10)
        x0 = rng.uniform(0, size, n)
        y0 = rng.uniform(0, size, n)
        length = rng.uniform(2.5, 6.0, n) * s
        ang = rng.normal(0, 0.35, n)
        shade = rng.choice([-1.0, 1.0], n) * rng.uniform(20, 45, n)
        canvas = np.zeros((size, size), np.float32)
        for i in range(n):
            p0 = (int(x0[i]), int(y0[i]))
            p1 = (int(x0[i] + length[i] * math.sin(ang[i])), int(y0[i] - length[i] * math.cos(ang[i])))
            cv2.line(canvas, p0, p1, float(shade[i]), 1, lineType=cv2.LINE_8)
        img += canvas[..., None] * np.array([0.6, 1.0, 0.5], np.float32)
        img += rng.normal(0, 6, (size, size, 1)).astype(np.float32)
    elif kind == 1:  # water: bright, wavy horizontal crests on deep blue
        period = rng.uniform(5.0, 8.0) * s
        amp = rng.uniform(1.0, 2.5) * s
        lam = rng.uniform(6.0, 12.0) * s
        phase = rng.uniform(0, 2 * math.pi, 2)
        wave = np.sin(2 * math.pi * (yy + amp * np.sin(xx / lam + phase[0])) / period + phase[1])
        crest = np.clip((wave - 0.55) / 0.45, 0, 1)
        img += crest[..., None] * np.array([55, 70, 60], np.float32)
        img -= np.clip(-wave - 0.6, 0, 1)[..., None] * np.array([10, 20, 30], np.float32)
        img += rng.normal(0, 5, (size, size, 1)).astype(np.float32)
    else:  # sand: blotchy low-frequency variation plus dark and light grains
        g = max(2, size // 8)
        blotch = cv2.resize(rng.normal(0, 1, (g, g)).astype(np.float32), (size, size),
                            interpolation=cv2.INTER_CUBIC)
        img += blotch[..., None] * np.array([10, 9, 7], np.float32)
        grains = rng.random((size, size))
        img[grains < 0.06] -= np.array([55, 55, 45], np.float32)
        img[grains > 0.96] += np.array([30, 30, 30], np.float32)
        img += rng.normal(0, 7, (size, size, 1)).astype(np.float32)
    return img


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """Boolean mask of one filled shape (no anti-aliasing, so labels are exact)."""
    m = np.zeros((size, size), np.uint8)
    sub = 4  # fixed-point sub-pixel precision for cv2 drawing
    f = 1 << sub

    def poly(pts):
        pts = np.asarray(pts, np.float64)
        c, s_ = math.cos(rot), math.sin(rot)
        rx = pts[:, 0] * c - pts[:, 1] * s_ + cx
        ry = pts[:, 0] * s_ + pts[:, 1] * c + cy
        q = np.round(np.stack([rx, ry], 1) * f).astype(np.int32)
        cv2.fillPoly(m, [q], 1, lineType=cv2.LINE_8, shift=sub)

    if shape == "circle":
        cv2.circle(m, (int(round(cx * f)), int(round(cy * f))), int(round(r * f)), 1, -1,
                   lineType=cv2.LINE_8, shift=sub)
    elif shape == "square":
        a = r * 0.88
        poly([(-a, -a), (a, -a), (a, a), (-a, a)])
    elif shape == "triangle":
        R = r * 1.25
        poly([(R * math.cos(t), R * math.sin(t)) for t in
              (-math.pi / 2, -math.pi / 2 + 2 * math.pi / 3, -math.pi / 2 + 4 * math.pi / 3)])
    elif shape == "star":
        R, ri = r * 1.3, r * 0.62
        pts = []
        for k in range(10):
            t = -math.pi / 2 + k * math.pi / 5
            rad = R if k % 2 == 0 else ri
            pts.append((rad * math.cos(t), rad * math.sin(t)))
        poly(pts)
    elif shape == "cross":
        L, w = r * 1.15, r * 0.45
        poly([(-L, -w), (L, -w), (L, w), (-L, w)])
        poly([(-w, -L), (w, -L), (w, L), (-w, L)])
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        hx = 16 * np.sin(t) ** 3
        hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        k = r * 1.1 / 16.0
        poly(np.stack([hx * k, (hy + 2.0) * k], 1))
    else:  # pragma: no cover
        raise ValueError(shape)
    return m.astype(bool)


# --------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------


class SyntheticWorld:
    """Deterministic generator of synthetic scenes.

    Args:
        image_size: side of the square images in pixels (64 is what the tiny CLIP fixture
            was trained on; the drawing scales with it).
        seed: world seed; ``sample(i)`` depends only on ``(seed, i, image_size)``.
        min_objects, max_objects: number of thing instances per scene.
        two_background_prob: chance that a scene is split between two backgrounds.
    """

    def __init__(self, image_size: int = 64, seed: int = 0, min_objects: int = 1,
                 max_objects: int = 3, two_background_prob: float = 0.5):
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.min_objects = int(min_objects)
        self.max_objects = int(max_objects)
        self.two_background_prob = float(two_background_prob)
        self.class_names: List[str] = list(CLASS_NAMES)
        self.stuff_ids = list(STUFF_IDS)
        self.thing_ids = list(THING_IDS)
        self.background_index: Optional[int] = None  # every class is named; no generic background

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ random streams
    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), stream, self.image_size])

    # ------------------------------------------------------------------ composition
    def _background(self, rng: np.random.Generator,
                    kinds: Sequence[int]) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
        size = self.image_size
        if len(kinds) == 1:
            img = _texture(kinds[0], size, rng)
            return img, [(kinds[0], np.ones((size, size), bool))]
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        for _ in range(50):
            theta = rng.uniform(0, 2 * math.pi)
            cx, cy = rng.uniform(0.3, 0.7, 2) * size
            wob_a = rng.uniform(0.5, 2.5) * size / 64
            wob_l = rng.uniform(6, 14) * size / 64
            d = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
            along = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
            d = d + wob_a * np.sin(along / wob_l + rng.uniform(0, 6.3))
            a = d < 0
            frac = a.mean()
            if 0.25 <= frac <= 0.75:
                break
        img = np.where(a[..., None], _texture(kinds[0], size, rng), _texture(kinds[1], size, rng))
        return img, [(kinds[0], a), (kinds[1], ~a)]

    def _objects(self, rng: np.random.Generator, n: int, classes: Optional[Sequence[int]] = None,
                 r_range: Tuple[float, float] = (9.0, 16.0), centered: bool = False):
        size = self.image_size
        s = size / 64.0
        if classes is None:
            classes = rng.choice(self.thing_ids, size=n, replace=False).tolist()
        occupied = np.zeros((size, size), bool)
        placed = []  # (class_id, full mask)
        for cid in classes:
            shape = THINGS[cid - NUM_STUFF][1]
            best = None
            for attempt in range(40):
                r = rng.uniform(*r_range) * s
                if centered:
                    cx, cy = size / 2 + rng.uniform(-4, 4, 2) * s
                else:
                    lo, hi = r * 0.7, size - r * 0.7
                    cx, cy = rng.uniform(lo, hi, 2)
                rot = rng.uniform(0, 2 * math.pi)
                m = _shape_mask(shape, size, cx, cy, r, rot)
                area = m.sum()
                if area < 30 * s * s:
                    continue
                overlap = (m & occupied).sum() / area
                if overlap <= 0.1:
                    best = m
                    break
                if best is None or overlap < best[1]:
                    best = (m, overlap)
            if isinstance(best, tuple):
                best = best[0]
            if best is None:
                continue
            occupied |= best
            placed.append((cid, best))
        # later objects occlude earlier ones; keep visible parts only
        visible = []
        covered = np.zeros((size, size), bool)
        for cid, m in reversed(placed):
            v = m & ~covered
            covered |= m
            visible.append((cid, v))
        visible.reverse()
        return placed, visible

    def _paint(self, img: np.ndarray, rng: np.random.Generator, placed) -> np.ndarray:
        size = self.image_size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        for cid, m in placed:
            col = np.array(THINGS[cid - NUM_STUFF][2], np.float32) + rng.normal(0, 8, 3).astype(np.float32)
            g = rng.normal(0, 1, 2)
            shade = 1.0 + 0.08 * (g[0] * (xx - 0.5) + g[1] * (yy - 0.5))
            obj = col[None, None, :] * shade[..., None] + rng.normal(0, 5, (size, size, 1)).astype(np.float32)
            img[m] = obj[m]
        return img

    def _compose(self, rng: np.random.Generator, kinds: Sequence[int], n_obj: int,
                 classes: Optional[Sequence[int]] = None, **obj_kw) -> Scene:
        size = self.image_size
        img, stuff = self._background(rng, kinds)
        placed, visible = self._objects(rng, n_obj, classes, **obj_kw)
        img = self._paint(img, rng, placed)
        label = np.zeros((size, size), np.int64)
        instances: List[Tuple[int, np.ndarray]] = []
        thing_union = np.zeros((size, size), bool)
        for cid, v in visible:
            thing_union |= v
        for cid, m in stuff:
            vm = m & ~thing_union
            if vm.any():
                instances.append((cid, vm))
        for cid, v in visible:
            if v.any():
                instances.append((cid, v))
        for cid, m in instances:
            label[m] = cid
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return Scene(image=image, label_map=label, instances=instances)

    # ------------------------------------------------------------------ public API
    def sample(self, index: int) -> Scene:
        """The scene with this index (deterministic)."""
        rng = self._rng(index, 0)
        two = rng.random() < self.two_background_prob
        kinds = rng.choice(self.stuff_ids, size=2 if two else 1, replace=False).tolist()
        n_obj = int(rng.integers(self.min_objects, self.max_objects + 1))
        scene = self._compose(rng, kinds, n_obj)
        scene.caption = self.caption(scene)
        scene.index = int(index)
        return scene

    def sample_single(self, index: int, class_id: Optional[int] = None) -> Scene:
        """A large, roughly centred single object on one background (zero-shot tests).

        The class is ``index % num_things`` unless ``class_id`` is given.
        """
        rng = self._rng(index, 1)
        if class_id is None:
            class_id = self.thing_ids[int(index) % len(self.thing_ids)]
        kind = int(rng.choice(self.stuff_ids))
        scene = self._compose(rng, [kind], 1, classes=[class_id], r_range=(17.0, 22.0), centered=True)
        scene.caption = f"a photo of {_article(CLASS_NAMES[class_id])} {CLASS_NAMES[class_id]}."
        scene.index = int(index)
        return scene

    def sample_background(self, index: int, class_id: Optional[int] = None) -> Scene:
        """A background-only image (one stuff class), class ``index % 3`` by default."""
        rng = self._rng(index, 2)
        if class_id is None:
            class_id = self.stuff_ids[int(index) % len(self.stuff_ids)]
        scene = self._compose(rng, [class_id], 0, classes=[])
        scene.caption = f"a photo of {_article(CLASS_NAMES[class_id])} {CLASS_NAMES[class_id]}."
        scene.index = int(index)
        return scene

    def caption(self, scene: Scene, rng: Optional[np.random.Generator] = None) -> str:
        """'a photo of a red circle and a white square on grass and water.'

        Objects in order of decreasing area, backgrounds in order of decreasing area; with
        ``rng`` the orders are shuffled (used for training captions).
        """
        return caption_for(scene.instances, rng)

    def names_file_text(self) -> str:
        """Class names in the SCLIP ``cls_*.txt`` format: one class per line, synonyms
        separated by ', ' (no background line: every class, backgrounds included, is named)."""
        lines = []
        for i, name in enumerate(self.class_names):
            lines.append(", ".join((name,) + tuple(SYNONYMS.get(i, ()))))
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ COCO export
    def coco_categories(self) -> List[dict]:
        cats = []
        for i, name in enumerate(self.class_names):
            cats.append({"id": i + 1, "name": name,
                         "supercategory": "stuff" if i in self.stuff_ids else "thing",
                         "isthing": 0 if i in self.stuff_ids else 1})
        return cats

    def write_coco(self, out_dir: str, n: int, start_index: int = 0) -> str:
        """Write ``n`` scenes starting at ``start_index``.

        Layout: ``out_dir/images/{index:08d}.png`` (RGB), ``out_dir/labels/{index:08d}.png``
        (uint8 semantic class ids = index into ``class_names``), ``out_dir/annotations.json``
        (COCO instances; category id = class index + 1; RLE segmentation with str counts),
        ``out_dir/names.txt`` (``names_file_text()``) and ``out_dir/captions.json``.
        Returns the path of the annotations file.
        """
        def scenes():
            for index in range(start_index, start_index + n):
                yield index, self.sample(index)

        info = {"description": "ovdense synthetic world", "seed": self.seed, "image_size": self.image_size}
        return write_coco_export(out_dir, scenes(), lambda scene: ((cid, m, {}) for cid, m in scene.instances),
                                 info=info, categories=self.coco_categories(), names_text=self.names_file_text())


def caption_for(instances: Sequence[Tuple[int, np.ndarray]], rng: Optional[np.random.Generator] = None,
                min_pixels: int = 1, synonym_prob: float = 0.0) -> str:
    """Caption naming every thing and stuff class among ``instances`` (area >= min_pixels)."""
    area: Dict[int, int] = {}
    for cid, m in instances:
        a = int(m.sum())
        if a >= min_pixels:
            area[cid] = area.get(cid, 0) + a
    things = [c for c in area if c >= NUM_STUFF]
    stuff = [c for c in area if c < NUM_STUFF]
    if rng is None:
        things.sort(key=lambda c: -area[c])
        stuff.sort(key=lambda c: -area[c])
    else:
        rng.shuffle(things)
        rng.shuffle(stuff)

    def sname(c):
        if rng is not None and synonym_prob > 0 and SYNONYMS.get(c) and rng.random() < synonym_prob:
            return SYNONYMS[c][int(rng.integers(len(SYNONYMS[c])))]
        return CLASS_NAMES[c]

    obj = _join([f"{_article(CLASS_NAMES[c])} {CLASS_NAMES[c]}" for c in things])
    bg = _join([sname(c) for c in stuff])
    if obj and bg:
        return f"a photo of {obj} on {bg}."
    if obj:
        return f"a photo of {obj}."
    return f"a photo of {_article(bg)} {bg}."
