"""World v2: determinism, held-out compositions, exact masks, richness and the exports."""
import json
import re

import cv2
import numpy as np
import pytest

from ovdense.synthetic.world_v2 import (CLASS_NAMES, COLOURS, EVAL_RANGE, IGNORE_INDEX, NOVEL_IDS,
                                        NOVEL_PAIRS, NUM_CLASSES, SEEN_THING_IDS, SHAPES, STUFF_IDS,
                                        THING_IDS, TRAIN_RANGE, InstanceV2, WorldV2, caption_for,
                                        class_id_of, names_file_text)

WORLD = WorldV2(seed=0)
N_TRAIN_CHECK = 300
NOVEL_NAMES = [CLASS_NAMES[c] for c in NOVEL_IDS]
_TRAIN_SCENES = {}


def train_scenes(n):
    if n not in _TRAIN_SCENES:
        _TRAIN_SCENES[n] = [WORLD.sample(i) for i in TRAIN_RANGE[:n]]
    return _TRAIN_SCENES[n]


def eval_scenes(n):
    return [WORLD.sample(i) for i in EVAL_RANGE[:n]]


def _box(m):
    ys, xs = np.nonzero(m)
    return (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def test_classes_and_ranges():
    assert len(THING_IDS) >= 12 and len(STUFF_IDS) >= 4 and NUM_CLASSES == len(CLASS_NAMES) == 20
    assert len(set(CLASS_NAMES)) == NUM_CLASSES
    assert set(NOVEL_IDS).isdisjoint(SEEN_THING_IDS) and set(NOVEL_IDS) | set(SEEN_THING_IDS) == set(THING_IDS)
    # a Latin square: each colour and each shape is novel in exactly one pair, seen in three
    assert sorted(c for c, _ in NOVEL_PAIRS) == sorted(c for c, _ in COLOURS)
    assert sorted(s for _, s in NOVEL_PAIRS) == sorted(SHAPES)
    assert [class_id_of(c, s) for c, s in NOVEL_PAIRS] == [CLASS_NAMES.index(f"{c} {s}") for c, s in NOVEL_PAIRS]
    assert TRAIN_RANGE.stop <= EVAL_RANGE.start
    assert WORLD.train_range == TRAIN_RANGE and WORLD.eval_range == EVAL_RANGE
    assert WorldV2.split_of(TRAIN_RANGE[-1]) == "train" and WorldV2.split_of(EVAL_RANGE[0]) == "eval"
    for bad in (-1, EVAL_RANGE.stop):
        with pytest.raises(IndexError):
            WORLD.sample(bad)
    assert list(WORLD.indices("eval", 3, start=2)) == [EVAL_RANGE[2], EVAL_RANGE[3], EVAL_RANGE[4]]


def test_deterministic_and_seeded():
    a, b = WorldV2(seed=0), WorldV2(seed=0)
    for i in (0, 17, TRAIN_RANGE[-1], EVAL_RANGE[0], EVAL_RANGE[12345]):
        sa, sb = a.sample(i), b.sample(i)
        assert sa.image.tobytes() == sb.image.tobytes()
        assert sa.label_map.tobytes() == sb.label_map.tobytes()
        assert sa.caption == sb.caption
        assert len(sa.instances) == len(sb.instances)
        for x, y in zip(sa.segments, sb.segments):
            assert x.class_id == y.class_id and np.array_equal(x.mask, y.mask)
    assert a.sample_single(EVAL_RANGE[3]).image.tobytes() == b.sample_single(EVAL_RANGE[3]).image.tobytes()
    assert not np.array_equal(a.sample(3).image, a.sample(4).image)
    assert not np.array_equal(a.sample(3).image, WorldV2(seed=1).sample(3).image)


def test_heldout_compositions_only_in_eval():
    pattern = re.compile("|".join(re.escape(n) for n in NOVEL_NAMES))
    for s in train_scenes(N_TRAIN_CHECK):
        assert s.split == "train"
        assert not set(s.thing_class_ids) & set(NOVEL_IDS), s.index
        assert not np.isin(s.label_map, NOVEL_IDS).any()
        assert not pattern.search(s.caption), s.caption
        assert not pattern.search(s.crop(40, 60, 64, 64).caption)
    for i in TRAIN_RANGE[:48]:
        single = WORLD.sample_single(i)
        assert single.thing_class_ids[0] in SEEN_THING_IDS and not pattern.search(single.caption)
    with pytest.raises(ValueError):
        WORLD.sample_single(TRAIN_RANGE[5], class_id=NOVEL_IDS[0])
    # every evaluation scene holds a novel composition; all four occur
    ev = eval_scenes(40)
    assert all(set(s.thing_class_ids) & set(NOVEL_IDS) for s in ev)
    assert set().union(*(set(s.thing_class_ids) for s in ev)) >= set(NOVEL_IDS)
    assert any(pattern.search(s.caption) for s in ev)
    # zero-shot crops of every thing class, novel ones included, in the evaluation range
    for k, cid in enumerate(THING_IDS):
        single = WORLD.sample_single(EVAL_RANGE[k], class_id=cid)
        assert single.image.shape == (64, 64, 3) and single.thing_class_ids == [cid]
        assert CLASS_NAMES[cid] in single.caption
        assert single.instances[0].area >= 60  # the bar is the smallest
    assert [WORLD.sample_single(EVAL_RANGE[k]).thing_class_ids[0] for k in range(16)] == THING_IDS


def test_scene_structure_exact_masks():
    scenes = train_scenes(N_TRAIN_CHECK)[:80] + eval_scenes(20)
    for s in scenes:
        h, w = s.label_map.shape
        assert (h, w) == (160, 224) and s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.label_map.dtype == np.int64 and not (s.label_map == IGNORE_INDEX).any()
        thing_union = np.zeros((h, w), bool)
        for inst in s.instances:
            m = inst.mask
            assert m.dtype == bool and m.shape == (h, w) and m.any() and inst.is_thing
            assert not (m & thing_union).any()  # visible masks are disjoint
            thing_union |= m
            assert np.all(s.label_map[m] == inst.class_id)
            assert inst.area == m.sum() <= inst.full_area
            assert inst.bbox == _box(m)
        # the thing masks are exactly the thing pixels of the semantic map
        assert np.array_equal(thing_union, s.label_map >= len(STUFF_IDS))
        cover = np.zeros((h, w), np.int64)
        for seg in s.segments:
            cover += seg.mask
            assert np.all(s.label_map[seg.mask] == seg.class_id)
        assert np.all(cover == 1)
        assert [st.class_id for st in s.stuff] == sorted({st.class_id for st in s.stuff})
        # the caption names every class present (thing names are not substrings of each other)
        for c in range(NUM_CLASSES):
            assert (CLASS_NAMES[c] in s.caption) == (c in s.class_ids), (s.caption, s.class_ids)
        imap = s.instance_map()
        for k, inst in enumerate(s.instances):
            assert np.array_equal(imap == k + 1, inst.mask)


def test_richness_occlusion_repeats_thin_small():
    scenes = train_scenes(N_TRAIN_CHECK)[:150]
    insts = [i for s in scenes for i in s.instances]
    # occlusion: some objects lose pixels to later ones (and stay >= 40 % visible)
    occluded = [i for i in insts if i.occluded]
    assert sum(any(i.occluded for i in s.instances) for s in scenes) >= 0.3 * len(scenes)
    assert all(i.area >= 0.4 * i.full_area - 1 for i in insts)
    # a bar across an object can split its visible mask in pieces
    assert any(cv2.connectedComponents(i.mask.astype(np.uint8))[0] > 2 for i in occluded)
    # several instances of one class in one scene
    assert sum(len(s.instances) > len(s.thing_class_ids) for s in scenes) >= 0.5 * len(scenes)
    # thin bars (a few px wide) and small objects exist
    thin = [i for i in insts if i.kind == "thin" and not i.occluded]
    assert len(thin) >= 20
    widths = [min(cv2.minAreaRect(np.argwhere(i.mask)[:, ::-1].astype(np.float32))[1]) for i in thin]
    assert np.median(widths) <= 4.5 and max(widths) <= 6.5
    small = [i for i in insts if i.kind == "small"]
    assert len(small) >= 20 and np.median([i.area for i in small]) < 120
    assert max(i.area for i in insts) > 64 * 64 / 4  # and large ones, beyond a quarter window
    # stuff: all four classes occur, usually several per scene, in irregular regions
    assert set().union(*({st.class_id for st in s.stuff} for s in scenes)) == set(STUFF_IDS)
    assert np.mean([len(s.stuff) >= 2 for s in scenes]) > 0.6


def test_captions_and_crops():
    s = WORLD.sample(7)
    c = caption_for(s.segments)
    assert c == s.caption and c.startswith("a photo of ") and c.endswith(".")
    assert caption_for([(4, np.ones((2, 2), bool)), (4, np.ones((3, 3), bool)), (1, np.ones((4, 4), bool))]) \
        == "a photo of two red circles on water."
    assert caption_for([(4, np.ones((2, 2), bool))] * 2, counts=False) == "a photo of a red circle."
    assert caption_for([(0, np.ones((2, 2), bool))]) == "a photo of grass."
    r1 = caption_for(s.segments, np.random.default_rng(3), synonym_prob=1.0)
    r2 = caption_for(s.segments, np.random.default_rng(3), synonym_prob=1.0)
    assert r1 == r2 and "grass" not in r1.replace("lawn", "")
    assert list(InstanceV2(5, np.ones((2, 2), bool)))[0] == 5  # iterates as (class_id, mask)
    win2 = WORLD.sample_window(7)
    assert win2.image.shape == (64, 64, 3) and win2.caption == WORLD.sample_window(7).caption
    win = s.crop(48, 80, 64, 64)
    assert win.image.shape == (64, 64, 3) and np.array_equal(win.image, s.image[48:112, 80:144])
    cover = np.zeros((64, 64), int)
    for seg in win.segments:
        cover += seg.mask
        assert np.all(win.label_map[seg.mask] == seg.class_id)
    assert np.all(cover == 1)
    assert win.caption == caption_for(win.segments)
    bg = WORLD.sample_background(TRAIN_RANGE[2])
    assert bg.class_ids == [STUFF_IDS[2]] and bg.instances == [] and np.all(bg.label_map == 2)


def test_names_file():
    lines = names_file_text().strip().split("\n")
    assert [ln.split(", ")[0] for ln in lines] == CLASS_NAMES
    assert lines[0] == "grass, lawn" and lines[4] == "red circle"


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools <= 2.0.11
def test_write_coco_roundtrip(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    ann = WORLD.write_coco(str(tmp_path), n=5, split="eval", start=10)
    with open(ann) as f:
        raw = json.load(f)
    assert all(isinstance(a["segmentation"]["counts"], str) for a in raw["annotations"])
    assert raw["info"]["novel_class_ids"] == NOVEL_IDS
    coco = COCO(ann)
    assert sorted(coco.getCatIds()) == list(range(1, NUM_CLASSES + 1))
    assert [coco.cats[i + 1]["name"] for i in range(NUM_CLASSES)] == CLASS_NAMES
    assert [coco.cats[i + 1]["isthing"] for i in range(NUM_CLASSES)] == [int(i >= 4) for i in range(NUM_CLASSES)]
    names = (tmp_path / "names.txt").read_text().strip().split("\n")
    assert [ln.split(", ")[0] for ln in names] == [coco.cats[i]["name"] for i in sorted(coco.cats)]
    ids = list(EVAL_RANGE[10:15])
    assert sorted(coco.getImgIds()) == ids
    for idx in ids:
        s = WORLD.sample(idx)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[idx])), key=lambda a: a["id"])
        assert len(anns) == len(s.instances)
        for a, inst in zip(anns, s.instances):
            assert a["category_id"] == inst.class_id + 1 and a["iscrowd"] == 0
            assert np.array_equal(coco.annToMask(a).astype(bool), inst.mask)
            assert a["area"] == inst.mask.sum()
            assert a["bbox"] == list(_box(inst.mask))
        img = cv2.imread(str(tmp_path / "images" / f"{idx:08d}.png"))[:, :, ::-1]
        assert np.array_equal(img, s.image)
        lab = cv2.imread(str(tmp_path / "labels" / f"{idx:08d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(lab.astype(np.int64), s.label_map)
    # with stuff segments: they tile the image together with the things
    coco2 = COCO(WORLD.write_coco(str(tmp_path / "stuff"), n=1, split="train", include_stuff=True))
    s = WORLD.sample(TRAIN_RANGE[0])
    masks = [coco2.annToMask(a) for a in coco2.loadAnns(coco2.getAnnIds(imgIds=[0]))]
    assert len(masks) == len(s.segments) and np.all(np.sum(masks, 0) == 1)


def test_semseg_benchmark_reader(tmp_path):
    from ovdense.datasets import build_dataset

    root = WORLD.write_semseg_benchmark(str(tmp_path), n=4, split="eval")
    for data_root in (tmp_path, root):
        ds = build_dataset("voc20", data_root)
        assert len(ds) == 4 and ds.num_classes == NUM_CLASSES
    for (img_path, gt_path), idx in zip(ds, EVAL_RANGE[:4]):
        s = WORLD.sample(idx)
        assert np.array_equal(ds.load_gt(gt_path), s.label_map)
        img = cv2.imread(str(img_path))[:, :, ::-1].astype(int)
        assert np.abs(img - s.image).max() <= 8 and np.abs(img - s.image).mean() < 1.0  # JPEG q100 4:4:4
    names = (tmp_path / "names.txt").read_text().strip().split("\n")
    assert [ln.split(", ")[0] for ln in names] == CLASS_NAMES
