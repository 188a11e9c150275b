"""Memory of full-resolution output, and banded output equal to a single band.

Full-resolution logits are produced in horizontal bands bounded by ``max_chunk_mb``, each
refined with ``halo_rows`` rows of context (PAMR: ``steps * max(dilations)``), so the peak
memory of a prediction does not grow with the image, and the labels and scores equal those
of one band over the whole image.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ovdense
from ovdense import UNLABELLED

from conftest import TINY_CONFIG

REPO = Path(__file__).resolve().parents[1]

# Peak-RSS growth allowed for one 4000x3000 (12 MP) prediction with 20 classes and PAMR,
# max_chunk_mb=64, on the tiny model. Measured with this script on the 2-core development
# machine (the process's own peak RSS, VmHWM reset right before predict, minus the RSS before it;
# ru_maxrss was used before, but it is inherited from the parent: under a long pytest run it
# started at the runner's 2.8 GB peak and the growth read 1990 MiB):
#   banded code:                1007-1080 MiB (about 210-row bands with their PAMR
#                               intermediates, plus the 96 MB int64 label map); 97-131 s
#   before banding (03b006c):   9155 MiB at 12 MP (the whole [20, 3000, 4000] logits and PAMR
#                               at once; 2321 MiB at 3 MP, 4598 MiB at 6 MP: linear); 72 s
#   streamed PAMR affinity:     236-245 MiB; 8.5-15.6 s
# 768 MiB is about 3x the current code and a twelfth of what the code before banding needed.
MAX_GROWTH_MIB = 768

# PAMR in the 12 MP run: steps=1 instead of the usual 10 (dilations kept at (8, 16)), so the
# run takes ~2 minutes on 2 cores. With steps=10 the 160-row halos exceed the 64 MB band
# (209 rows at 20 classes x 4000 px), bands shrink to the 16-row minimum and each refines
# 336 rows: about 80 minutes of PAMR for 12 MP. Its peak would be about the same: one
# 336-row band grows the RSS by ~1.0 GiB (119 MiB logits and guide, 927 MiB in PAMR).
_SCRIPT = r"""
import re, resource, sys, time
import numpy as np, torch
import ovdense
from ovdense import CLIPBackbone

def status_kib(key):
    try:
        with open("/proc/self/status") as fh:
            return int(re.search(key + r":\s+(\d+)", fh.read()).group(1))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def reset_peak():
    # VmHWM is this process's own peak (ru_maxrss is inherited from the parent across fork and
    # exec, so under pytest it can start at the test runner's peak); "5" resets it (Linux)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass

torch.manual_seed(0)
bb = CLIPBackbone.load(sys.argv[1], None)
seg = ovdense.OVSegmenter(backbone=bb, head="naclip", preprocess=dict(short_side=64), windows=dict(crop=64, stride=32),
                          refiners=[dict(type="pamr", steps=1, dilations=(8, 16))], max_chunk_mb=64,
                          text_encoder=dict(cache_dir=""), device="cpu")
names = [f"class {i}" for i in range(20)]
emb = torch.randn(len(names), bb.embed_dim, generator=torch.Generator().manual_seed(1))
enc = seg.encode_vocabulary(names, embeddings=emb)
image = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
before_max = status_kib("VmHWM")
before_now = status_kib("VmRSS")
reset_peak()
t0 = time.perf_counter()
res = seg.predict(image, vocabulary=enc)
seconds = time.perf_counter() - t0
after_max = status_kib("VmHWM")
labels = res.label_map
print(f"RESULT before_max_kib={before_max} before_now_kib={before_now} after_max_kib={after_max} "
      f"seconds={seconds:.1f} shape={labels.shape[0]}x{labels.shape[1]} dtype={labels.dtype} "
      f"min={labels.min()} max={labels.max()} classes={len(np.unique(labels))}")
"""


def _segmenter(backbone, max_chunk_mb, head="naclip", decode=None, refiners=None):
    if refiners is None:
        refiners = [dict(type="pamr", steps=2, dilations=(4, 8))]  # halo 16 rows
    return ovdense.OVSegmenter(backbone=backbone, head=head, preprocess=dict(short_side=64),
                               windows=dict(crop=64, stride=32), refiners=refiners, decode=decode or {},
                               max_chunk_mb=max_chunk_mb, text_encoder=dict(cache_dir=""), device="cpu")


def _image(height=150, width=200, seed=0):
    """Smooth colour blobs plus noise: structure for PAMR to follow, at every row."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3))
    img[:] = rng.uniform(0, 255, 3)
    for _ in range(8):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(height / 10, height / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _record_band_rows(seg):
    """Rows of every refiner call (the band plus its halo)."""
    rows = []
    seg.refiners[0].register_forward_hook(lambda module, args, out: rows.append(int(args[0].shape[-2])))
    return rows


NAMES = ["cat", "dog, puppy", "car", "tree", "boat", "house"]


@pytest.mark.parametrize("case", ["pamr", "pamr+area+background"])
@pytest.mark.parametrize("resolution", [pytest.param("input", marks=pytest.mark.slow), "model"])
def test_many_bands_equal_one_band(tiny_backbone, case, resolution):
    # one row per query: "sky, wall" (background) and "dog, puppy" are two queries each
    emb = torch.randn(9, tiny_backbone.embed_dim, generator=torch.Generator().manual_seed(3))
    if case == "pamr":
        kw = dict(head="naclip", decode=dict(renormalize=True))
        vocab = dict(classes=NAMES, embeddings=emb[2:])
    else:  # SCLIP's protocol: area rule and threshold, with a background class
        kw = dict(head="sclip", decode=dict(area_threshold=0.1, background_threshold=0.1))
        vocab = dict(classes=NAMES, background="sky, wall", embeddings=emb)
    image = _image()
    one = _segmenter(tiny_backbone, max_chunk_mb=1e6, **kw)
    # bands of some 16-60 rows, each with up to 16 rows of halo on either side
    many = _segmenter(tiny_backbone, max_chunk_mb=0.3 if resolution == "input" else 0.05, **kw)
    one_rows, many_rows = _record_band_rows(one), _record_band_rows(many)
    ref = one.predict(image, vocabulary=one.encode_vocabulary(**vocab), return_scores=True, resolution=resolution)
    out = many.predict(image, vocabulary=many.encode_vocabulary(**vocab), return_scores=True, resolution=resolution)

    size = (150, 200) if resolution == "input" else (64, 85)  # short side 64: 200 * 64 / 150 = 85.3
    assert ref.label_map.shape == out.label_map.shape == size
    assert ref.scores.shape == out.scores.shape == (len(ref.class_names),) + size
    assert tuple(one.preprocess(image).shape[-2:]) == (64, 85)
    # one band over the whole image here; many bands there, each smaller than the image
    # with its halo (with several bands the area rule reads each twice: areas, then labels)
    passes = 2 if case != "pamr" else 1
    assert one_rows == [size[0]]
    assert len(many_rows) >= 3 * passes and max(many_rows) < size[0]

    assert out.class_names == ref.class_names and out.has_background == ref.has_background
    assert np.array_equal(out.label_map, ref.label_map), \
        f"{(out.label_map != ref.label_map).mean():.2%} of the labels differ between many bands and one"
    assert float(np.abs(out.scores - ref.scores).max()) <= 1e-6
    assert len(np.unique(ref.label_map)) >= 3  # not a degenerate map
    if case != "pamr":
        assert not (ref.label_map == UNLABELLED).any()
        # the area rule really removed a class, and the threshold really gave class 0 pixels
        plain = _segmenter(tiny_backbone, max_chunk_mb=1e6, head="sclip").predict(
            image, vocabulary=one.encode_vocabulary(**vocab), resolution=resolution)
        removed = set(np.unique(plain.label_map)) - set(np.unique(ref.label_map)) - {0}
        assert removed, "the area rule removed nothing: the test would not cover it"
        assert (ref.scores[sorted(removed)] == 0).all()
        assert (ref.label_map == 0).any()


def test_model_resolution_is_the_resized_image(tiny_backbone):
    seg = _segmenter(tiny_backbone, max_chunk_mb=0.05, refiners=[])
    seg.set_classes(NAMES, embeddings=torch.randn(7, tiny_backbone.embed_dim))
    image = _image(250, 130)
    assert seg.predict(image).label_map.shape == (250, 130)
    res = seg.predict(image, resolution="model", return_scores=True)
    assert res.label_map.shape == (123, 64)  # 250 * 64 / 130 = 123.1
    assert res.scores.shape == (6, 123, 64)
    with pytest.raises(ValueError, match="resolution"):
        seg.predict(image, resolution="full")


@pytest.mark.slow
def test_peak_memory_of_a_12_megapixel_prediction_is_bounded():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(TINY_CONFIG)], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(out_line for out_line in proc.stdout.splitlines() if out_line.startswith("RESULT "))
    values = dict(re.findall(r"(\w+)=(\S+)", line))
    assert values["shape"] == "3000x4000" and values["dtype"] == "int64"
    assert 0 <= int(values["min"]) and int(values["max"]) < 20 and int(values["classes"]) > 1
    # the process's peak during predict (VmHWM reset just before) over the RSS right before it
    growth_mib = (int(values["after_max_kib"]) - int(values["before_now_kib"])) / 1024
    print(f"\n12 MP prediction: peak RSS growth {growth_mib:.0f} MiB (bound {MAX_GROWTH_MIB}), "
          f"{values['seconds']} s")
    assert growth_mib < MAX_GROWTH_MIB, line
