"""The synthetic world generator and the tiny CLIP fixture trained on it."""
import json
import os

import numpy as np
import pytest

from ovdense.synthetic import SyntheticWorld
from ovdense.synthetic.world import CLASS_NAMES, STUFF_IDS, THING_IDS

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "synth_clip")
CONFIG_PATH = os.path.join(FIXTURE_DIR, "synth-vit-tiny.json")
WEIGHTS_PATH = os.path.join(FIXTURE_DIR, "synth_clip.pt")
HELDOUT_START = 1_000_000  # training used scene indices < 200,000

# Zero-shot accuracy of the shipped fixture on the held-out single-object images below,
# as measured when it was made (see tests/fixtures/synth_clip/README.md); the floor leaves
# a margin for numerical differences across machines. Chance is 1/6.
ZERO_SHOT_MEASURED = 1.0
ZERO_SHOT_FLOOR = 0.8
ZERO_SHOT_N = 60


def test_deterministic_and_seeded():
    a, b = SyntheticWorld(seed=0), SyntheticWorld(seed=0)
    for i in (0, 7, 12345):
        sa, sb = a.sample(i), b.sample(i)
        assert np.array_equal(sa.image, sb.image)
        assert np.array_equal(sa.label_map, sb.label_map)
        assert sa.caption == sb.caption
    # a repeated call gives the same scene; another index or seed gives another
    assert np.array_equal(a.sample(3).image, a.sample(3).image)
    assert not np.array_equal(a.sample(3).image, a.sample(4).image)
    assert not np.array_equal(a.sample(3).image, SyntheticWorld(seed=1).sample(3).image)


@pytest.mark.parametrize("size", [64, 96])
def test_scene_structure(size):
    w = SyntheticWorld(image_size=size, seed=0)
    assert w.class_names == CLASS_NAMES
    for i in range(40):
        s = w.sample(i)
        assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
        assert s.label_map.shape == (size, size) and s.label_map.dtype == np.int64
        # instance masks tile the image exactly once and agree with the label map
        cover = np.zeros((size, size), np.int64)
        for cid, m in s.instances:
            assert m.dtype == bool and m.shape == (size, size) and m.any()
            assert np.all(s.label_map[m] == cid)
            cover += m
        assert np.all(cover == 1)
        # at least one thing and one stuff class; each thing covers several 8x8 patches
        ids = [c for c, _ in s.instances]
        things = [c for c in ids if c in THING_IDS]
        assert 1 <= len(things) <= 3 and len(set(things)) == len(things)
        assert 1 <= len([c for c in ids if c in STUFF_IDS]) <= 2
        # the caption names every class present and nothing else
        for c in range(len(CLASS_NAMES)):
            assert (CLASS_NAMES[c] in s.caption) == (c in ids), (s.caption, ids)
    # objects are big enough for patch-level prediction (median > 3 patches of 8x8 at 64 px)
    areas = [m.sum() for i in range(40) for c, m in w.sample(i).instances if c in THING_IDS]
    assert np.median(areas) * (64 / size) ** 2 > 3 * 64


def test_single_and_background_samples():
    w = SyntheticWorld(seed=0)
    for i in range(12):
        s = w.sample_single(i)
        cid = THING_IDS[i % len(THING_IDS)]
        assert [c for c, _ in s.instances if c in THING_IDS] == [cid]
        assert CLASS_NAMES[cid] in s.caption
        b = w.sample_background(i)
        assert len(b.instances) == 1 and b.instances[0][0] == STUFF_IDS[i % 3]
        assert np.all(b.label_map == STUFF_IDS[i % 3])


def test_names_file():
    lines = SyntheticWorld().names_file_text().strip().split("\n")
    assert len(lines) == len(CLASS_NAMES)
    for line, name in zip(lines, CLASS_NAMES):
        assert line.split(", ")[0] == name
    assert lines[0] == "grass, lawn"


def test_write_coco_roundtrip(tmp_path):
    pycocotools = pytest.importorskip("pycocotools")  # noqa: F841
    from pycocotools.coco import COCO
    import cv2

    w = SyntheticWorld(seed=0)
    ann = w.write_coco(str(tmp_path), n=6, start_index=100)
    with open(ann) as f:
        raw = json.load(f)
    assert all(isinstance(a["segmentation"]["counts"], str) for a in raw["annotations"])
    coco = COCO(ann)
    assert sorted(coco.getCatIds()) == list(range(1, len(CLASS_NAMES) + 1))
    assert [coco.cats[i + 1]["name"] for i in range(len(CLASS_NAMES))] == CLASS_NAMES
    assert sorted(coco.getImgIds()) == list(range(100, 106))
    for idx in range(100, 106):
        s = w.sample(idx)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[idx]))
        assert len(anns) == len(s.instances)
        for a, (cid, m) in zip(anns, s.instances):
            assert a["category_id"] == cid + 1 and a["iscrowd"] == 0
            assert np.array_equal(coco.annToMask(a).astype(bool), m)
            assert a["area"] == m.sum()
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        img = cv2.imread(str(tmp_path / "images" / f"{idx:08d}.png"))[:, :, ::-1]
        assert np.array_equal(img, s.image)
        lab = cv2.imread(str(tmp_path / "labels" / f"{idx:08d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(lab.astype(np.int64), s.label_map)
    assert (tmp_path / "names.txt").read_text() == w.names_file_text()


# --------------------------------------------------------------------------------------
# the tiny CLIP fixture
# --------------------------------------------------------------------------------------


def _load_fixture():
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    if not os.path.exists(WEIGHTS_PATH):
        pytest.skip("tiny CLIP fixture not built (python tools/train_tiny_clip.py)")
    open_clip.add_model_config(CONFIG_PATH)
    model = open_clip.create_model("synth-vit-tiny", pretrained=WEIGHTS_PATH)
    model.eval()
    return open_clip, torch, model, open_clip.get_tokenizer("synth-vit-tiny")


def _zero_shot(open_clip, torch, model, tokenizer, n):
    import torch.nn.functional as F
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    w = SyntheticWorld(image_size=64, seed=0)
    scenes = [w.sample_single(HELDOUT_START + i) for i in range(n)]
    x = np.stack([s.image for s in scenes]).astype(np.float32) / 255.0
    x = (x - np.array(OPENAI_DATASET_MEAN, np.float32)) / np.array(OPENAI_DATASET_STD, np.float32)
    x = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer([f"a photo of a {CLASS_NAMES[c]}." for c in THING_IDS])), dim=-1)
    pred = (img @ txt.T).argmax(1).numpy()
    gt = np.array([THING_IDS.index([c for c, _ in s.instances if c in THING_IDS][0]) for s in scenes])
    return float((pred == gt).mean())


def test_fixture_size_and_config():
    total = sum(os.path.getsize(os.path.join(FIXTURE_DIR, f)) for f in os.listdir(FIXTURE_DIR))
    assert total <= 8 * 1024 * 1024
    with open(CONFIG_PATH) as f:
        cfg = json.load(f)
    assert cfg["vision_cfg"]["patch_size"] == 8 and cfg["text_cfg"]["vocab_size"] == 49408


def test_tiny_clip_zero_shot():
    open_clip, torch, model, tokenizer = _load_fixture()
    assert model.visual.image_size == (64, 64)
    acc = _zero_shot(open_clip, torch, model, tokenizer, ZERO_SHOT_N)
    assert acc >= ZERO_SHOT_FLOOR, f"zero-shot accuracy {acc:.3f} < floor {ZERO_SHOT_FLOOR}"


def test_tiny_clip_zero_shot_detects_broken_tokenizer():
    """The floor discriminates: the same model with shuffled token ids is near chance."""
    open_clip, torch, model, tokenizer = _load_fixture()
    rng = np.random.default_rng(0)
    perm = torch.from_numpy(rng.permutation(49406))

    def shuffled(texts):
        t = tokenizer(texts)
        body = (t > 0) & (t < 49406)
        t[body] = perm[t[body]]
        return t

    acc = _zero_shot(open_clip, torch, model, shuffled, ZERO_SHOT_N)
    assert acc < ZERO_SHOT_FLOOR
