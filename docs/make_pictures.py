"""Re-make the two README pictures: ``docs/overlay.png`` and ``docs/report.png``.

Both use the synthetic world (no weights needed); the "prediction" is the ground truth with
simulated errors (shifted borders and wrong-class blobs), so the pictures show the drawing,
not a model's quality. The report page is rendered with headless Chromium::

    python docs/make_pictures.py [--chromium chromium]
"""
import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def simulated_prediction(label_map, seed, n_blobs=5):
    """Ground truth shifted by up to 2 px with ``n_blobs`` discs of random classes."""
    from ovdense.synthetic.world_v2 import NUM_CLASSES

    rng = np.random.default_rng(seed)
    pred = np.roll(label_map, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    h, w = pred.shape
    for _ in range(n_blobs):
        disc = np.zeros((h, w), np.uint8)
        cv2.circle(disc, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(4, 18)), 1, -1)
        pred[disc > 0] = rng.integers(0, NUM_CLASSES)
    return pred


def overlay_picture(path):
    from ovdense.structures import SegmentationResult
    from ovdense.synthetic import WorldV2
    from ovdense.viz import side_by_side

    scene = WorldV2(seed=0).sample(1_000_005)
    big = lambda a: cv2.resize(a, (a.shape[1] * 2, a.shape[0] * 2), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    pred = big(simulated_prediction(scene.label_map, 5, 3).astype(np.uint8)).astype(np.int64)
    res = SegmentationResult(pred, list(WorldV2(seed=0).class_names))
    image = big(scene.image)
    pair = side_by_side([image, res.plot(image)], titles=["image", "prediction"])
    Image.fromarray(pair).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)


def report_picture(path, chromium):
    from ovdense.datasets import build_dataset
    from ovdense.evaluation.semantic_runner import evaluate_semantic
    from ovdense.synthetic import WorldV2

    tmp = tempfile.mkdtemp(prefix="ovdense-docs-")
    WorldV2(seed=0).write_semseg_benchmark(os.path.join(tmp, "bench"), n=24)
    ds = build_dataset("voc20", os.path.join(tmp, "bench"))
    gt_of = {str(s.image_path): s.gt_path for s in ds.samples}

    @dataclass
    class Result:
        label_map: np.ndarray
        class_names: list
        has_background: bool = False

    class Simulated:
        class_names = list(WorldV2(seed=0).class_names)

        def predict(self, image_path, return_scores=False):
            gt = ds.load_gt(gt_of[image_path]).astype(np.int64)
            k = int(os.path.basename(image_path).split(".")[0]) % 1000
            return Result(simulated_prediction(np.where(gt == 255, 0, gt), k, 2 + k % 8), self.class_names)

    out = os.path.join(tmp, "run")
    evaluate_semantic(Simulated(), ds, out_dir=out, progress=False, report=True, report_worst=4)
    shot = os.path.join(tmp, "shot.png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,1500",
                    "file://" + os.path.join(out, "report", "report.html")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    im = Image.open(shot).convert("RGB")
    im = im.resize((900, round(im.height * 900 / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args(argv)
    overlay_picture(os.path.join(args.out, "overlay.png"))
    report_picture(os.path.join(args.out, "report.png"), args.chromium)


if __name__ == "__main__":
    sys.exit(main())
