"""The tiny self-supervised DINO fixture (``tests/fixtures/synth_dino``) and its training script.

(a) ``tools/train_tiny_dino.py`` runs a few steps and its output loads through
    ``TimmViTFeatures`` by timm name + local weights, like a real DINO backbone.
(b) The shipped fixture's patch features separate instances on held-out world v2 scenes:
    patch-affinity ROC AUC (cosine similarity of patch features; positives: two patches of
    the same thing instance; negatives: a thing-instance patch and a patch of any other
    segment, stuff included), pooled over the first 10 held-out (evaluation-range) scenes at
    full 160 x 224 size. Measured (synthetic): 0.978 for the fixture, 0.955 for the seed-0
    random-init model of the same architecture (0.950-0.958 over init seeds 0-3). The issue's
    floor of 0.85 is met, but it is met by the random-init model too: on this world the
    metric is dominated by colour, which random patch embeddings already carry. Training
    halves the error (1 - AUC 0.045 -> 0.022); the test asserts >= 0.96 and >= 0.01 above
    the random-init model.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("timm")

from ovdense.features.timm_vit import TimmViTFeatures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "train_tiny_dino.py"
FIXTURE = ROOT / "tests" / "fixtures" / "synth_dino"
TRAINED_FLOOR = 0.96  # measured 0.978 (10 scenes)
MARGIN = 0.01  # measured 0.978 - 0.955 = 0.023


def _script():
    spec = importlib.util.spec_from_file_location("train_tiny_dino", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _provider(folder: Path) -> TimmViTFeatures:
    cfg = json.loads((folder / "model.json").read_text())
    return TimmViTFeatures(model_name=cfg["model_name"], weights=str(folder / cfg["weights"]),
                           model_kwargs=cfg["model_kwargs"])


def test_roc_auc_matches_pairwise_definition():
    t = _script()
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=200), 1)  # ties on purpose
    y = rng.random(200) < 0.3
    pos, neg = s[y], s[~y]
    ref = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert t.roc_auc(s, y) == pytest.approx(ref)


def test_train_script_smoke(tmp_path):
    t = _script()
    out = tmp_path / "dino"
    threads = torch.get_num_threads()
    try:
        res = t.main(["--out", str(out), "--steps", "2", "--minutes", "0", "--batch", "2", "--pool", "4",
                      "--refresh", "1", "--local-crops", "2", "--prototypes", "64", "--hidden", "64",
                      "--bottleneck", "32", "--threads", "1", "--eval", "0", "--eval-every", "0", "--log-every", "1"])
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count; leave the session's as it was
    assert res["steps"] == 2
    for name in ("synth_dino.pt", "model.json", "train_log.txt"):
        assert (out / name).is_file()
    state = torch.load(out / "synth_dino.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert not any(k.startswith(("head", "mlp", "last_layer")) for k in state)  # backbone only
    prov = _provider(out)
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    f = prov(img)
    assert f.shape == (1, 96, 8, 8) and torch.isfinite(f).all()
    f2 = prov(torch.randint(0, 256, (1, 3, 160, 224), dtype=torch.uint8))  # dynamic image size
    assert f2.shape == (1, 96, 20, 28)
    log = (out / "train_log.txt").read_text()
    assert "trained 2 steps" in log


@pytest.mark.skipif(not (FIXTURE / "synth_dino.pt").is_file(), reason="no tiny DINO fixture")
def test_fixture_patch_affinity_auc():
    t = _script()
    prov = _provider(FIXTURE)
    assert (FIXTURE / "synth_dino.pt").stat().st_size < 3e6
    trained = t.patch_affinity_auc(prov, n_scenes=10)["auc"]
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the training run's own initialisation
        rand = TimmViTFeatures(prov.model_name, weights=None, model_kwargs=json.loads(
            (FIXTURE / "model.json").read_text())["model_kwargs"])
    random_init = t.patch_affinity_auc(rand, n_scenes=10)["auc"]
    assert trained >= TRAINED_FLOOR, (trained, random_init)
    assert trained >= random_init + MARGIN, (trained, random_init)
