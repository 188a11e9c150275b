"""One segmenter shared by threads.

The defects this guards against: ``set_classes`` called from several threads crashed the
disk text cache (``dictionary changed size during iteration`` in ``TextEmbedder._save_disk``),
and threads sharing a segmenter silently segmented with each other's vocabularies.

Six threads hammer one segmenter at once. Each repeatedly (a) replaces the shared default
with ``set_classes`` on a vocabulary holding a never-seen word, so that every call runs the
text encoder and rewrites the disk cache while the other threads do the same, and (b)
segments its own image with its own ``encode_vocabulary`` result passed per call. Every
result must equal the single-threaded one computed beforehand.
"""
from __future__ import annotations

import glob
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

import ovdense
from ovdense.text import TextEmbedder

THREADS = 6
ITERATIONS = 6
FILLERS = 500  # entries already in the disk cache
TIMEOUT_S = 120  # a deadlock fails the test instead of hanging it; a normal run takes a few seconds

# made-up words, so that nothing is in any cache before the test; thread t segments with
# OWN[t] (with synonyms, and with a background class for two of them)
OWN = [
    (["zorblat", "quenfish, quennish", "grommel"], None),
    (["plinket", "vadrosh", "snerve", "tuplow"], None),
    (["brazzle", "kimbow"], "skarn"),
    (["florrit, florret", "mabbock", "yendle"], None),
    (["drusket", "wempling", "ostravel"], "voomish, vumish"),
    (["crindle", "harbot", "pessel", "tirrow", "lumbril"], None),
]
# the vocabularies thrown at set_classes: one of these plus a word never seen before
SHARED = [["gorpling", "feldwick"], ["narbosk", "quillet", "tamsey"], ["ubbler"], ["wistrel", "yarrock"]]


def scene(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3))
    img[:] = rng.uniform(0, 255, 3)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(height / 6, height / 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _fresh_word(thread: int, iteration: int) -> str:
    return f"neverseen {thread} {iteration}"


def test_threads_sharing_a_segmenter_get_their_own_results(tiny_backbone, tmp_path):
    cache_dir = tmp_path / "text-cache"
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="sclip", preprocess=dict(short_side=None),
                              windows=dict(crop=64, stride=32),
                              refiners=[dict(type="pamr", steps=2, dilations=(1, 2))],
                              decode=dict(background_threshold=0.3),
                              text_encoder=dict(cache_dir=str(cache_dir), templates="simple"), device="cpu")
    images = [scene(64, 112, seed=t) for t in range(THREADS)]
    # a cache file left by earlier runs, big enough that writing it back takes a while
    fillers = {f"filler {i}": e for i, e in enumerate(F.normalize(
        torch.randn(FILLERS, tiny_backbone.embed_dim, generator=torch.Generator().manual_seed(0)), dim=-1))}
    os.makedirs(cache_dir / "text")
    torch.save(fillers, cache_dir / "text" / f"{seg.text.key}.pt")

    # single-threaded references (this also puts OWN's queries in the cache)
    expected = []
    for t, (classes, background) in enumerate(OWN):
        enc = seg.encode_vocabulary(classes, background=background)
        res = seg.predict(images[t], vocabulary=enc, return_scores=True)
        assert res.scores is not None and res.label_map.shape == images[t].shape[:2]
        expected.append(res)
    # the references differ from each other, so a thread given another's vocabulary is caught
    assert len({tuple(r.class_names) for r in expected}) == THREADS
    encoded_before = seg.text.encoded_queries

    barrier = threading.Barrier(THREADS)
    set_queries = []  # every vocabulary given to set_classes (list.append is atomic)

    def work(t: int) -> int:
        classes, background = OWN[t]
        barrier.wait(timeout=30)
        for k in range(ITERATIONS):
            shared = SHARED[(t + k) % len(SHARED)] + [_fresh_word(t, k)]
            vocab = seg.set_classes(shared)  # new word: the text encoder and the disk cache run
            assert list(vocab.class_names) == shared
            set_queries.append(shared)
            enc = seg.encode_vocabulary(classes, background=background)
            res = seg.predict(images[t], vocabulary=enc, return_scores=True)
            ref = expected[t]
            assert res.class_names == ref.class_names, f"thread {t} got classes {res.class_names}"
            assert res.has_background == ref.has_background
            assert np.array_equal(res.label_map, ref.label_map), \
                f"thread {t} iteration {k}: {(res.label_map != ref.label_map).mean():.1%} of the labels differ"
            assert res.scores.shape == ref.scores.shape
            diff = float(np.abs(res.scores - ref.scores).max())
            assert diff <= 1e-6, f"thread {t} iteration {k}: scores differ by {diff}"
        return t

    # switch threads far more often than every 5 ms, so that races show up in a short run
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    pool = ThreadPoolExecutor(max_workers=THREADS)
    errors = []
    try:
        futures = [pool.submit(work, t) for t in range(THREADS)]
        for t, fut in enumerate(futures):
            exc = fut.exception(timeout=TIMEOUT_S)  # a hung thread fails here instead of hanging the test
            if exc is not None:
                trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                errors.append(f"thread {t}: {trace}")
    finally:
        sys.setswitchinterval(interval)
        pool.shutdown(wait=False, cancel_futures=True)
    assert not errors, "\n".join(errors)
    assert len(set_queries) == THREADS * ITERATIONS

    # every fresh word went through the text encoder (nothing was lost to a race)
    fresh = {_fresh_word(t, k) for t in range(THREADS) for k in range(ITERATIONS)}
    assert seg.text.encoded_queries - encoded_before >= len(fresh)

    # the default is one whole vocabulary from set_classes, with its own embeddings
    default = seg.encoded_vocabulary
    assert list(default.class_names) in set_queries
    assert torch.equal(default.text, seg.text(default.vocabulary.queries))

    # the disk cache is one readable file (no temporary files left) holding every query
    files = sorted(glob.glob(os.path.join(cache_dir, "text", "*")))
    assert len(files) == 1 and files[0].endswith(".pt"), files
    stored = torch.load(files[0], map_location="cpu", weights_only=True)
    all_queries = {q for classes, background in OWN
                   for q in ovdense.build_vocabulary(classes, background).queries}
    all_queries |= {q for vocab in set_queries for q in vocab}
    all_queries |= set(fillers)
    missing = all_queries - set(stored)
    assert not missing, f"queries missing from the disk cache: {sorted(missing)[:10]}"
    for q in all_queries:
        assert torch.equal(stored[q], seg.text([q])[0]), q
    for q, e in fillers.items():
        assert torch.equal(stored[q], e), q

    # a new embedder on the same directory reads it and encodes nothing
    reader = TextEmbedder(tiny_backbone, templates="simple", cache_dir=str(cache_dir))
    assert all(reader.cached(sorted(all_queries)))
    reread = reader(sorted(all_queries))
    assert reader.encoded_queries == 0
    assert torch.equal(reread, seg.text(sorted(all_queries)))
