"""``ovdense detect``: a folder in, per-image JSON (RLE), overlays, COCO results out; bad images
skipped by name; resume; one-line errors (tiny CLIP v2 + tiny SAM, SYNTHETIC)."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

pytest.importorskip("segment_anything")

from ovdense.cli.main import main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "sam_detect_world_v2.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    from ovdense.synthetic import WorldV2

    root = tmp_path_factory.mktemp("scenes")
    w = WorldV2(seed=0)
    for k, index in enumerate(w.indices("eval", 2, 0)):
        Image.fromarray(w.sample(index).image).save(root / f"scene{k}.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def run(*argv):
    return main(["detect", *map(str, argv), "--quiet", "--points-per-side", "6", "--max-detections", "20"])


def test_detect_folder_outputs_resume_and_errors(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(folder, "--config", CONFIG, "--out", out) == 0
    printed = capsys.readouterr()
    assert "2 detected, 0 already done, 1 failed" in printed.out and "broken.png" in printed.err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["failed"][0]["path"].endswith("broken.png")
    assert record["config"]["detector"]["proposals"] == dict(type="sam_automatic", points_per_side=6,
                                                             pred_iou_thresh=0.0, stability_score_thresh=0.0)
    pred = json.loads((out / "preds" / "scene0.png.json").read_text())
    assert pred["height"] == 160 and pred["width"] == 224 and 0 < len(pred["detections"]) <= 20
    det = pred["detections"][0]
    assert {"class_id", "class_name", "confidence", "xyxy", "segmentation", "predicted_iou"} <= set(det)
    assert (out / "overlays" / "scene0.png.jpg").is_file()
    # results.json + images.json + categories.json load in pycocotools as a COCO results file
    from pycocotools.coco import COCO

    images = json.loads((out / "images.json").read_text())
    cats = json.loads((out / "categories.json").read_text())
    gt = COCO()
    gt.dataset = {"images": images, "categories": cats, "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        res = gt.loadRes(str(out / "results.json"))
    assert len(res.getAnnIds()) == sum(len(json.loads((out / "preds" / f).read_text())["detections"])
                                       for f in ("scene0.png.json", "scene1.png.json"))
    first = json.loads((out / "results.json").read_text())[0]
    from pycocotools import mask as mask_utils

    m = mask_utils.decode(dict(first["segmentation"], counts=first["segmentation"]["counts"].encode()))
    assert m.shape == (160, 224) and m.sum() == first["area"] > 0
    x, y, w, h = first["bbox"]  # COCO XYWH, the tight box of the mask
    ys, xs = np.nonzero(m)
    assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    # resume: nothing to redo; another class list is refused in one line
    assert run(folder, "--config", CONFIG, "--out", out, "--resume") == 0
    assert "0 detected, 2 already done" in capsys.readouterr().out
    assert run(folder, "--config", CONFIG, "--out", out, "--resume", "--classes", "cat", "dog") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot resume" in err[0] and "classes" in err[0]
    assert run(folder, "--config", CONFIG, "--out", out) == 2  # neither --resume nor --overwrite
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--proposals", "nope"], "nope"),
    (["--proposals", "connected_components", "--pred-iou-thresh", "0.5"], "sets SAM's automatic masks"),
    (["--sam-checkpoint", "missing.pth"], "missing.pth"),
])
def test_detect_refuses_bad_options_in_one_line(folder, tmp_path, capsys, extra, message):
    assert run(folder, "--config", CONFIG, "--out", tmp_path / "x", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_detect_refuses_a_video_in_one_line(tmp_path, capsys):
    video = tmp_path / "drive.avi"
    video.write_bytes(b"\0" * 64)
    assert run(video, "--config", CONFIG, "--out", tmp_path / "x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {video} is a video"), err


def test_detect_without_sam_needs_sam_for_sam_proposals(folder, tmp_path, capsys):
    code = main(["detect", str(folder), "--method", "maskclip", "--proposals", "sam_automatic",
                 "--out", str(tmp_path / "y"), "--quiet"])
    assert code == 2 and "need SAM" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_coco_scores_sam_proposals(tmp_path, capsys):
    """eval-coco with the synthetic SAM config: the Detector of its `detector` section (SAM
    proposals ranked by probability x predicted IoU), bbox and segm AP in metrics_coco.json."""
    from ovdense.synthetic import WorldV2

    w = WorldV2(seed=0)
    ann = w.write_coco(str(tmp_path / "coco"), 2, "eval", 0)
    out = tmp_path / "eval"
    code = main(["eval-coco", "--config", CONFIG, "--gt", ann, "--images", str(tmp_path / "coco" / "images"),
                 "--classes-file", str(tmp_path / "coco" / "names.txt"), "--no-background", "--points-per-side", "6",
                 "--max-detections", "30", "--out", str(out), "--quiet", "--no-semantic"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics_coco.json").read_text())
    assert metrics["strategy"] == "sam_automatic" and metrics["strategy_options"]["points_per_side"] == 6
    assert metrics["scorer"] == dict(type="mask_pooling", confidence="probability_x_proposal")
    assert metrics["detector_options"] == {"max_detections": 30}
    assert "bbox" in json.dumps(metrics) and "segm" in json.dumps(metrics)
    results = json.loads((out / "coco_results.json").read_text())
    assert 0 < len(results) <= 60 and all("segmentation" in r for r in results)
