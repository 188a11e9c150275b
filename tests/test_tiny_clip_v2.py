"""The tiny CLIP v2 fixture (``tests/fixtures/synth_clip_v2``), trained on synthetic world v2.

(a) The shipped fixture loads with open_clip alone (``add_model_config`` + ``create_model``,
    no download, no ovdense code) and, on held-out (evaluation-range) single-object crops
    (``WorldV2.sample_single``, 64 x 64), classifies the 12 seen thing classes and the 4
    background classes zero-shot well above floors that a random-init or broken model misses
    (the random-init model is checked to miss them). The 4 novel compositions (red triangle,
    yellow bar, purple circle, black square: never in a training image or caption) are
    checked separately: the fixture does NOT generalise to them (exact accuracy 0.20 over
    400 crops, 0.03 on this test's 32, chance 0.0625: it gets the colour right and guesses the
    shape), so the test asserts only what holds: their colour is read right
    (NOVEL_COLOUR_FLOOR). All figures SYNTHETIC; see the fixture README.
(b) ``tools/train_tiny_clip.py --world v2`` runs 2 steps into a tmp dir and its output loads
    the same way; v2 training captions never name a novel composition.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # noqa: E402

from ovdense.synthetic import world_v2 as wv2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "train_tiny_clip.py"
FIXTURE = ROOT / "tests" / "fixtures" / "synth_clip_v2"
CONFIG = FIXTURE / "synth-vit-tiny-v2.json"
WEIGHTS = FIXTURE / "synth_clip.pt"
MODEL = "synth-vit-tiny-v2"
PROMPT = "a photo of a {}."
PER_CLASS = 8  # held-out crops per thing class in the test (the README figures use 25)
N_BACKGROUND = 40

# floors: measured with the shipped fixture on this test's held-out sample (see the README),
# minus a margin; chance is 1/16 for things, 1/20 for backgrounds, 1/4 for a colour
SEEN_FLOOR = 0.40  # measured 0.510 (96 crops; 0.507 on 300); random init 0.052
NOVEL_COLOUR_FLOOR = 0.90  # measured 1.000 (32 crops; 1.000 on 100): predicted class has the right colour
BACKGROUND_FLOOR = 0.90  # measured 1.000 (40 images; 1.000 on 100); random init 0.0
# not asserted: exact accuracy on the novel compositions, 0.031 here (0.200 on 100 crops)


def _script():
    spec = importlib.util.spec_from_file_location("train_tiny_clip", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load(weights=None):
    open_clip.add_model_config(str(CONFIG))
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL, pretrained=str(weights) if weights else None)
    return model.eval(), open_clip.get_tokenizer(MODEL)


def _tensor(images):
    mean = np.array(OPENAI_DATASET_MEAN, np.float32) * 255
    std = np.array(OPENAI_DATASET_STD, np.float32) * 255
    x = (np.stack(images).astype(np.float32) - mean) / std
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _zero_shot(model, tokenizer):
    """(seen accuracy, novel accuracy, novel right-colour rate, background accuracy) on
    held-out world v2 images."""
    world = wv2.WorldV2(seed=0)
    start = wv2.EVAL_RANGE.start
    things = list(wv2.THING_IDS)
    tf = F.normalize(model.encode_text(tokenizer([PROMPT.format(n) for n in wv2.CLASS_NAMES])), dim=-1)
    imgs, gt = [], []
    for j in range(PER_CLASS):  # crop j of the t-th thing class: index start + 16 j + t
        for t, cid in enumerate(things):
            imgs.append(world.sample_single(start + len(things) * j + t, class_id=cid).image)
            gt.append(cid)
    gt = np.array(gt)
    f = F.normalize(model.encode_image(_tensor(imgs)), dim=-1)
    pred = np.array(things)[(f @ tf[things].T).argmax(1).numpy()]
    novel = np.isin(gt, wv2.NOVEL_IDS)
    ok = pred == gt
    bgs = [world.sample_background(start + j) for j in range(N_BACKGROUND)]
    f = F.normalize(model.encode_image(_tensor([s.image for s in bgs])), dim=-1)
    bpred = (f @ tf.T).argmax(1).numpy()
    bgt = np.array([s.stuff[0].class_id for s in bgs])
    colour = (pred - wv2.NUM_STUFF) // len(wv2.SHAPES) == (gt - wv2.NUM_STUFF) // len(wv2.SHAPES)
    return (float(ok[~novel].mean()), float(ok[novel].mean()), float(colour[novel].mean()),
            float((bpred == bgt).mean()))


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _zero_shot(*_load(WEIGHTS))
    finally:
        torch.set_num_threads(threads)


def test_fixture_files_and_size():
    for name in ("synth-vit-tiny-v2.json", "synth_clip.pt", "README.md", "train_log.txt"):
        assert (FIXTURE / name).is_file()
    assert WEIGHTS.stat().st_size < 10_000_000
    sd = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())


def test_loads_with_open_clip_alone():
    model, tokenizer = _load(WEIGHTS)
    assert model.visual.image_size == (64, 64) and model.visual.patch_size == (8, 8)
    assert tokenizer(["x"]).shape == (1, 32)
    with torch.no_grad():
        f = model.encode_image(torch.zeros(2, 3, 64, 64))
    assert f.shape == (2, 128) and torch.isfinite(f).all()


def test_zero_shot_seen_classes_held_out(trained):
    seen, _, _, _ = trained
    assert seen >= SEEN_FLOOR, seen


def test_zero_shot_novel_compositions_colour_held_out(trained):
    _, _, novel_colour, _ = trained
    assert novel_colour >= NOVEL_COLOUR_FLOOR, novel_colour


def test_zero_shot_backgrounds_held_out(trained):
    _, _, _, bg = trained
    assert bg >= BACKGROUND_FLOOR, bg


def test_random_init_misses_the_floors():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen, _, novel_colour, bg = _zero_shot(*_load(None))
    finally:
        torch.set_num_threads(threads)
    assert seen < SEEN_FLOOR and novel_colour < NOVEL_COLOUR_FLOOR and bg < BACKGROUND_FLOOR


def test_v2_training_captions_never_name_novel_compositions():
    t = _script()
    world = wv2.WorldV2(seed=0)
    mix = t.parse_mix(t.V2_MIX)
    novel_names = [wv2.CLASS_NAMES[c] for c in wv2.NOVEL_IDS]
    for step in (0, 123):
        images, captions, keys = t.make_batch_v2(world, step, 32, mix, seed=0)
        assert len(images) == 32 and all(im.shape == (64, 64, 3) for im in images)
        assert not any(n in c or n + "s" in c for c in captions for n in novel_names)
        assert not any(set(k) & set(wv2.NOVEL_IDS) for k in keys)


def test_train_script_v2_smoke(tmp_path):
    t = _script()
    threads = torch.get_num_threads()
    try:
        res = t.main(["--world", "v2", "--out", str(tmp_path), "--steps", "2", "--batch-size", "8",
                      "--warmup", "1", "--eval-per-class", "0", "--threads", "1", "--log-every", "1"])
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count; leave the session's as it was
    assert res["steps"] == 2
    for name in ("synth_clip.pt", "train_log.txt"):
        assert (tmp_path / name).is_file()
    assert "world v2" in (tmp_path / "train_log.txt").read_text()
    sd = torch.load(tmp_path / "synth_clip.pt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    model, _ = _load(tmp_path / "synth_clip.pt")
    assert torch.isfinite(model.encode_image(torch.zeros(1, 3, 64, 64))).all()


@pytest.mark.slow  # the v1 default path still runs (its final evaluation takes ~10-20 s)
def test_train_script_v1_smoke(tmp_path):
    t = _script()
    threads = torch.get_num_threads()
    try:
        res = t.main(["--out", str(tmp_path), "--steps", "2", "--batch-size", "8", "--warmup", "1",
                      "--threads", "1", "--log-every", "1"])
    finally:
        torch.set_num_threads(threads)
    assert res["steps"] == 2 and (tmp_path / "synth_clip.pt").is_file()
    assert "world v2" not in (tmp_path / "train_log.txt").read_text()
