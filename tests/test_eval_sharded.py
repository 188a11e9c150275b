"""Semantic runner: sharded (2 gloo processes) == single process, resume, outputs, CLI."""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from fakes import dataset_segmenter, free_port, make_layout, run_ranks, sharded_worker  # noqa: E402

from ovdense.datasets import build_dataset  # noqa: E402
from ovdense.cli import evaluate as eval_cli  # noqa: E402
from ovdense.evaluation.semantic_runner import evaluate_semantic, state_path  # noqa: E402


@pytest.fixture
def voc(tmp_path):
    make_layout("voc21", tmp_path / "data", n_images=7, seed=5)
    return build_dataset("voc21", tmp_path / "data")


@pytest.mark.slow
def test_two_process_gloo_equals_single(voc, tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single = evaluate_semantic(dataset_segmenter(voc, noise=0.2, seed=3), voc,
                               out_dir=tmp_path / "single", progress=False)
    out = tmp_path / "sharded"
    run_ranks(sharded_worker, str(tmp_path / "data"), str(out), "voc21")
    np.testing.assert_array_equal(np.load(out / "confusion.npy"),
                                  np.load(tmp_path / "single" / "confusion.npy"))
    report = json.loads((out / "metrics.json").read_text())
    assert report["world_size"] == 2 and report["num_images"] == 7
    assert report["mIoU"] == single.mIoU and report["aAcc"] == single.aAcc
    done = [list(np.load(state_path(out, r))["done"]) for r in (0, 1)]
    assert len(done[0]) == 4 and len(done[1]) == 3 and not set(done[0]) & set(done[1])


class _Crash(Exception):
    pass


def test_resume_continues_where_it_stopped(voc, tmp_path):
    full = evaluate_semantic(dataset_segmenter(voc), voc, progress=False)
    broken = dataset_segmenter(voc)
    real = broken.predict

    def predict(image, return_scores=False):
        if len(broken.calls) == 4:
            raise _Crash
        return real(image, return_scores)

    broken.predict = predict
    out = tmp_path / "run"
    with pytest.raises(_Crash):
        evaluate_semantic(broken, voc, out_dir=out, progress=False, checkpoint_every=2)
    assert len(np.load(state_path(out, 0))["done"]) == 4
    again = dataset_segmenter(voc)
    resumed = evaluate_semantic(again, voc, out_dir=out, progress=False, resume=True)
    assert len(again.calls) == 3
    np.testing.assert_array_equal(resumed.iou, full.iou)
    assert resumed.mIoU == full.mIoU


def test_outputs_and_checks(voc, tmp_path, capsys):
    seg = dataset_segmenter(voc)
    m = evaluate_semantic(seg, voc, limit=3, out_dir=tmp_path, save_predictions=True)
    assert "mIoU" in capsys.readouterr().out
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["num_images"] == 3 and report["dataset"] == "voc21" and report["unit"] == "percent"
    assert report["config"]["type"] == "FakeSegmenter" and report["versions"]["torch"]
    assert report["per_class"][5]["name"] == "class5" and report["mIoU"] == m.mIoU
    sample = voc.samples[0]
    pred = np.array(Image.open(tmp_path / "preds" / f"{sample.image_id}.png"))
    np.testing.assert_array_equal(pred, seg.predict(str(sample.image_path)).label_map)
    seg.set_classes(["a", "b"])
    with pytest.raises(ValueError, match="predicts 2 classes"):
        evaluate_semantic(seg, voc, progress=False)


def test_cli_end_to_end(voc, tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    eval_cli.register_cli(parser.add_subparsers(dest="cmd"))
    cfg = tmp_path / "cfg.py"
    cfg.write_text("dataset_type = 'PascalVOCDataset'\nmodel = dict(prob_thd=0.0)\n")
    (tmp_path / "cls_voc21.txt").write_text("\n".join(f"name{i}" for i in range(21)) + "\n")
    built = {}

    def fake_build(a):
        built["args"] = a
        seg = dataset_segmenter(voc)
        seg.class_names = []
        seg.config = {"dataset_type": "PascalVOCDataset"}
        return seg

    monkeypatch.setattr(eval_cli, "_build_segmenter", fake_build)
    out = tmp_path / "out"
    args = parser.parse_args(["eval-semantic", "--config", str(cfg), "--data-root",
                              str(tmp_path / "data"), "--limit", "2", "--out", str(out),
                              "--quiet", "--cfg-options", "model.prob_thd=0.3", "--device", "cpu"])
    assert args.func(args) == 0
    assert built["args"].cfg_options == ["model.prob_thd=0.3"] and built["args"].device == "cpu"
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 2 and report["per_class"][3]["name"] == "name3"
    coco_args = parser.parse_args(["eval-coco", "--config", "c.py", "--gt", "g.json",
                                   "--images", "d"])
    assert coco_args.func is eval_cli.run_coco and coco_args.iou_type == "bbox,segm"


def test_eval_semantic_cli_with_a_real_segmenter(tmp_path, capsys):
    """`ovdense eval-semantic` end to end: tiny random CLIP, the repo's VOC21 config and name file."""
    from ovdense.cli import main

    from conftest import TINY_CONFIG

    make_layout("voc21", tmp_path / "data", n_images=3, seed=1, size=(40, 56))
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    code = main(["eval-semantic", "--config", str(repo / "configs/sclip/sclip_voc21.py"),
                 "--clip-model", str(TINY_CONFIG), "--device", "cpu",
                 "--cfg-options", "backbone.pretrained=None", "preprocess.short_side=64",
                 "text_encoder.templates=simple",
                 "--data-root", str(tmp_path / "data"), "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 3 and len(report["per_class"]) == 21
    assert report["per_class"][0]["name"] == "sky" and "voc21: mIoU" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_coco_sharded_with_torchrun_equals_single_process(tmp_path):
    """`ovdense eval-coco` under torchrun (2 gloo processes) reports exactly the single-process metrics."""
    import subprocess

    from ovdense.cli import main
    from ovdense.synthetic import SyntheticWorld

    fixture = Path(__file__).parent / "fixtures" / "synth_clip"
    world = SyntheticWorld(image_size=64, seed=0)
    ann = world.write_coco(str(tmp_path / "coco"), 10, 2_000_000)
    config = tmp_path / "synth.py"
    config.write_text(
        f"backbone = dict(clip_model={str(fixture / 'synth-vit-tiny.json')!r}, "
        f"pretrained={str(fixture / 'synth_clip.pt')!r})\nhead = dict(type='sclip')\n"
        "preprocess = dict(short_side=None)\nwindows = dict(crop=0)\n"
        "text_encoder = dict(templates=['a photo of a {}.'])\n")
    args = ["eval-coco", "--config", str(config), "--gt", ann, "--images", str(tmp_path / "coco" / "images"),
            "--classes-file", str(tmp_path / "coco" / "names.txt"), "--no-background", "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "single")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "ovdense",
                           *args, "--out", str(tmp_path / "sharded")], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "metrics_coco.json").read_text())
    sharded = json.loads((tmp_path / "sharded" / "metrics_coco.json").read_text())
    for key in ("bbox", "segm", "semantic", "num_images", "num_predictions"):
        assert sharded[key] == single[key], key
    assert single["num_predictions"] > 0
    assert json.loads((tmp_path / "sharded" / "coco_results.json").read_text()) == \
        json.loads((tmp_path / "single" / "coco_results.json").read_text())


def test_unlabelled_pixels_are_counted_as_misses(voc, tmp_path):
    """A config that leaves pixels unclaimed (-1) is evaluated (not refused): those pixels are
    misses of their GT class, reported as num_unlabelled; confusion.npy stays (C, C)."""
    from ovdense.evaluation import SemanticEvaluator

    seg = dataset_segmenter(voc)
    plain_predict = seg.predict

    def predict(image, return_scores=False):
        res = plain_predict(image, return_scores)
        res.label_map[::3, ::2] = -1
        return res

    seg.predict = predict
    m = evaluate_semantic(seg, voc, limit=3, out_dir=tmp_path, save_predictions=True, progress=False)
    expected = SemanticEvaluator(voc.num_classes)
    for sample in voc.samples[:3]:
        expected.update(predict(str(sample.image_path)).label_map, voc.load_gt(sample.gt_path))
    ref = expected.compute()
    assert ref.num_unlabelled > 0 and m.num_unlabelled == ref.num_unlabelled
    assert m.mIoU == pytest.approx(ref.mIoU) and m.aAcc == pytest.approx(ref.aAcc)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["num_unlabelled"] == ref.num_unlabelled
    conf = np.load(tmp_path / "confusion.npy")
    assert conf.shape == (voc.num_classes, voc.num_classes)
    assert conf.sum() + ref.num_unlabelled == ref.num_pixels
