"""Runs that stop hard can be resumed: ``segment`` killed with SIGKILL or stopped with SIGTERM
(what timeout, Slurm and docker stop send) continues with ``--resume`` to exactly a fresh run's
outputs; ``eval-semantic --resume`` refuses another config instead of reporting old numbers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovdense.assets import asset_path
from ovdense.cli import main
from ovdense.synthetic import SyntheticWorld

N_IMAGES = 8


def _synth_config(path: Path, head: str = "maskclip", short_side: int = 192, window: int = 64) -> str:
    """The shipped tiny CLIP (real weights: every process computes the same thing)."""
    path.write_text(
        f"backbone = dict(clip_model={asset_path('synth_clip', 'synth-vit-tiny.json')!r}, "
        f"pretrained={asset_path('synth_clip', 'synth_clip.pt')!r}, weights_format='open_clip')\n"
        f"head = dict(type={head!r})\npreprocess = dict(short_side={short_side})\n"
        f"windows = dict(crop={window}, stride={window // 2})\ndecode = dict(logit_scale=40.0)\n"
        "text_encoder = dict(templates=['a photo of a {}.'], cache_dir='')\n")
    return str(path)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """8 held-out 128 px scenes of the synthetic world and a config for the shipped tiny CLIP
    (9 windows per image: slow enough to be stopped midway)."""
    root = tmp_path_factory.mktemp("scenes")
    src = root / "images"
    src.mkdir()
    world = SyntheticWorld(image_size=128, seed=0)
    for i in range(N_IMAGES):
        Image.fromarray(world.sample(1_000_000 + i).image).save(src / f"scene{i}.png")
    return src, _synth_config(root / "synth.py", short_side=128)


def _command(src, config, out, *extra):
    return [sys.executable, "-m", "ovdense", "segment", str(src), "--config", config,
            "--classes-file", asset_path("synth_classes.txt"), "--out", str(out), "--device", "cpu",
            "--batch-size", "1", "--quiet", *extra]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def fresh(scenes, tmp_path_factory):
    """An uninterrupted run: what every resumed run must equal."""
    src, config = scenes
    out = tmp_path_factory.mktemp("fresh") / "out"
    proc = subprocess.run(_command(src, config, out), capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _finished(out: Path) -> int:
    """Images whose record is written (a record being written is a hidden ``.tmp-*`` file, which
    pathlib's glob would also match)."""
    if not (out / "preds").is_dir():
        return 0
    return sum(1 for p in (out / "preds").glob("*.json") if not p.name.startswith("."))


def _stop_midway(cmd, out: Path, sig: int, after: int = 3):
    """Start ``cmd``, wait until ``after`` images are finished (their records exist), send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 300
    try:
        while True:
            done = _finished(out)
            if done >= after:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended (code {proc.returncode}) before it could be stopped: "
                            f"{proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.01)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr


def _labels(out: Path):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "labels").rglob("*.png"))}


def _assert_equal_outputs(out: Path, fresh: Path):
    ours, ref = _labels(out), _labels(fresh)
    assert sorted(ours) == sorted(ref) and len(ref) == N_IMAGES
    for name in ref:  # byte for byte: the same label maps, the same PNG encoding
        assert ours[name] == ref[name], name
    for name in ref:
        rec = json.loads((out / "preds" / (name[len("labels/"):-len(".png")] + ".json")).read_text())
        want = json.loads((fresh / "preds" / (name[len("labels/"):-len(".png")] + ".json")).read_text())
        assert rec["class_areas"] == want["class_areas"]
    assert not list(out.rglob(".tmp-*"))


def test_what_resume_checks_is_on_disk_before_the_first_image(scenes, tmp_path, monkeypatch):
    """The invariant that makes any stop resumable, checked in-process (fast): when the first
    image is predicted, run.json already records the classes and the config, status running."""
    import ovdense

    src, config = scenes
    out = tmp_path / "out"
    seen = []
    original = ovdense.OVSegmenter.predict

    def predict(self, *args, **kwargs):
        if not seen:
            seen.append(json.loads((out / "run.json").read_text()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ovdense.OVSegmenter, "predict", predict)
    assert main(_command(src, config, out)[3:]) == 0
    record = seen[0]
    assert record["status"] == "running" and record["fingerprint"]["classes"]
    assert record["fingerprint"]["config"]["head"] == {"type": "maskclip"}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow  # three subprocess runs and a kill (the in-process test above checks the invariant)
def test_sigkill_then_resume_equals_a_fresh_run(scenes, fresh, tmp_path):
    src, config = scenes
    out = tmp_path / "out"
    code, _, _ = _stop_midway(_command(src, config, out), out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    finished = _finished(out)
    assert 3 <= finished < N_IMAGES
    # what resume checks was recorded before the first image: the killed run is resumable
    record = json.loads((out / "run.json").read_text())
    assert record["fingerprint"]["classes"] and record["fingerprint"]["config"]["head"] == {"type": "maskclip"}
    assert record["status"] == "running"
    # another config is still refused after a hard stop (what was recorded is checked)
    proc = subprocess.run(_command(src, config, out, "--resume", "--head", "sclip"), capture_output=True, text=True,
                          timeout=600, env=_env())
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: cannot resume")
    assert "head" in proc.stderr
    proc = subprocess.run(_command(src, config, out, "--resume"), capture_output=True, text=True, timeout=600,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["skipped_existing"] == finished and run["done"] == N_IMAGES - finished
    assert run["status"] == "complete" and not run["interrupted"]
    _assert_equal_outputs(out, fresh)


@pytest.mark.slow  # a second subprocess kill-and-resume
def test_sigterm_ends_like_ctrl_c_and_resumes(scenes, fresh, tmp_path):
    src, config = scenes
    out = tmp_path / "out"
    code, _, stderr = _stop_midway(_command(src, config, out), out, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "--resume" in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] and run["status"] == "interrupted"
    assert run["done"] == _finished(out) < N_IMAGES
    proc = subprocess.run(_command(src, config, out, "--resume"), capture_output=True, text=True, timeout=600,
                          env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_equal_outputs(out, fresh)


# ---------------------------------------------------------------------------------- eval-semantic
@pytest.fixture()
def synth_data(tmp_path):
    """4 synthetic scenes with exact labels as --img-dir/--ann-dir data, and a tiny-CLIP config."""
    world = SyntheticWorld(image_size=64, seed=0)
    for sub in ("img", "ann"):
        (tmp_path / sub).mkdir()
    for i in range(4):
        scene = world.sample(1_000_000 + i)
        Image.fromarray(scene.image).save(tmp_path / "img" / f"s{i}.jpg")
        Image.fromarray(scene.label_map.astype(np.uint8)).save(tmp_path / "ann" / f"s{i}.png")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(world.class_names) + "\n")
    config = _synth_config(tmp_path / "synth.py", head="naclip", short_side=64, window=64)
    return ["eval-semantic", "--img-dir", str(tmp_path / "img"), "--ann-dir", str(tmp_path / "ann"),
            "--classes-file", str(names), "--config", config, "--device", "cpu", "--quiet"]


def _error_line(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ") and not any("Traceback" in line for line in err), err
    return err[-1]


def test_eval_semantic_resume_refuses_another_config(synth_data, tmp_path, capsys):
    out = tmp_path / "out"
    base = synth_data + ["--out", str(out)]
    assert main(base) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed  # where the results went
    first = json.loads((out / "metrics.json").read_text())
    assert first["config"]["head"]["type"] == "naclip"
    written = (out / "metrics.json").read_bytes()

    # another head, another logit scale: refused, naming what differs; nothing rewritten
    msg = _error_line(capsys, main(base + ["--resume", "--head", "vanilla"]))
    assert "cannot resume" in msg and "head" in msg and "--overwrite" in msg, msg
    msg = _error_line(capsys, main(base + ["--resume", "--logit-scale", "10"]))
    assert "decode.logit_scale" in msg and "40" in msg and "10" in msg, msg
    assert (out / "metrics.json").read_bytes() == written
    # the same --out again without --resume/--overwrite: refused
    msg = _error_line(capsys, main(base))
    assert "already holds" in msg and "--resume" in msg and "--overwrite" in msg, msg
    assert (out / "metrics.json").read_bytes() == written

    # --overwrite starts over with the new config; --resume with that config is accepted
    assert main(base + ["--overwrite", "--head", "vanilla"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["config"]["head"]["type"] == "vanilla"
    assert main(base + ["--resume", "--head", "vanilla"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["mIoU"] == second["mIoU"] and again["config"]["head"]["type"] == "vanilla"


def test_eval_semantic_interrupted_run_resumes_to_the_same_numbers(synth_data, tmp_path, capsys, monkeypatch):
    """A run stopped after its first checkpoint resumes (same config) to a fresh run's numbers."""
    import ovdense.evaluation.semantic_runner as runner

    fresh = tmp_path / "fresh"
    assert main(synth_data + ["--out", str(fresh)]) == 0
    ref = json.loads((fresh / "metrics.json").read_text())
    out = tmp_path / "out"
    real_save = runner.save_state
    calls = []

    def stop_after_first_checkpoint(path, matrix, done, *a, **k):
        real_save(path, matrix, done, *a, **k)
        calls.append(len(done))
        if len(done) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_state", stop_after_first_checkpoint)
    assert main(synth_data + ["--out", str(out), "--checkpoint-every", "2"]) == 130
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(runner, "save_state", real_save)
    msg = _error_line(capsys, main(synth_data + ["--out", str(out), "--resume", "--head", "sclip"]))
    assert "head" in msg
    assert main(synth_data + ["--out", str(out), "--resume"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["mIoU"] == ref["mIoU"] and resumed["num_images"] == 4
