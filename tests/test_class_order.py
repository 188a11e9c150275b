"""Label maps do not depend on the order of the classes.

The defect this guards against: with a class list and *no* background class, the decoder's
``background_threshold`` and SCLIP's area rule fell back to class 0, i.e. the user's first
class, so swapping two lines of a class file changed up to 56% of the pixels. Now only a
vocabulary that has a background class lets low-confidence pixels fall back to class 0;
without one they are ``UNLABELLED`` (-1), whatever the order.

The text side is made exact under permutation by passing fixed random embeddings (one row
per class, permuted along with the names), so any difference comes from the decoding.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ovdense
from ovdense import UNLABELLED

NAMES = ["cat", "dog", "car", "tree", "boat"]
BACKGROUND = "background"
# fixed permutations of the 5 classes: a swap of the first two, the reversal, a rotation and
# two random ones; between them every class comes first in one of them
PERMS = [np.array(p) for p in ([1, 0, 2, 3, 4], [4, 3, 2, 1, 0], [2, 3, 4, 0, 1],
                               *[np.random.default_rng(s).permutation(5) for s in (0, 1)])]
THRESHOLD = 0.6
AREA = 0.2


def _embeddings(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(seed))


FG_EMB = _embeddings(len(NAMES), 1)
BG_EMB = _embeddings(1, 2)


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 RGB test image: flat discs of random colours on a random colour, light noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3))
    img[:] = rng.uniform(0, 255, 3)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(height / 8, height / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _segmenter(backbone, **decode):
    return ovdense.OVSegmenter(backbone=backbone, head="sclip", preprocess=dict(short_side=None),
                               windows=dict(crop=64, stride=32), decode=decode, device="cpu",
                               text_encoder=dict(cache_dir=""))


@pytest.fixture(scope="module")
def features(tiny_backbone):
    """The image's dense features (vocabulary-independent), encoded once for every decoder."""
    image = scene(192, 192, 0)
    return image, _segmenter(tiny_backbone).encode_image(image)


def _unpermute_labels(labels: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Labels under the permuted class list -> indices of the original list (-1 stays -1)."""
    return np.where(labels >= 0, perm[np.clip(labels, 0, None)], labels)


def _unpermute_scores(scores: np.ndarray, perm: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores)
    out[perm] = scores
    return out


def _check_permutations(seg, feats, names, emb, perms, background=None):
    """Predict with the original order and with every permutation; return the original result."""
    base = seg.predict(feats, vocabulary=seg.encode_vocabulary(names, background=background, embeddings=emb),
                       return_scores=True)
    assert base.class_names == ([BACKGROUND] if background else []) + list(names)
    for perm in perms:
        full = np.concatenate([[0], perm + 1]) if background else perm  # the background stays class 0
        enc = seg.encode_vocabulary([names[i] for i in perm], background=background,
                                    embeddings=emb[torch.as_tensor(full)])
        res = seg.predict(feats, vocabulary=enc, return_scores=True)
        assert res.class_names == [base.class_names[i] for i in full]
        mapped = _unpermute_labels(res.label_map, full)
        assert mapped.shape == base.label_map.shape
        changed = int((mapped != base.label_map).sum())
        assert changed == 0, f"permutation {perm.tolist()} changed {changed / mapped.size:.1%} of the pixels"
        assert np.array_equal(res.label_map == UNLABELLED, base.label_map == UNLABELLED)
        np.testing.assert_allclose(_unpermute_scores(res.scores, full), base.scores, rtol=0, atol=1e-6)
    return base


def test_without_background_the_threshold_leaves_pixels_unlabelled_whatever_the_order(tiny_backbone, features):
    image, feats = features
    seg = _segmenter(tiny_backbone, background_threshold=THRESHOLD)
    base = _check_permutations(seg, feats, NAMES, FG_EMB, PERMS)
    assert base.has_background is False
    low = base.scores.max(axis=0) < THRESHOLD
    # the threshold really acts: some, not all, pixels are below it, and exactly those are unlabelled
    assert 0 < low.sum() < low.size
    assert np.array_equal(base.label_map == UNLABELLED, low)
    assert base.unlabelled_pixels == int(low.sum())
    # ...and the confident pixels keep their argmax, class 0 included
    confident = base.scores.argmax(axis=0)
    assert np.array_equal(base.label_map[~low], confident[~low])
    assert (base.label_map == 0).any()
    # the same through the full image path (not only from pre-encoded features)
    full = seg.predict(image, vocabulary=seg.encode_vocabulary(NAMES, embeddings=FG_EMB))
    assert np.array_equal(full.label_map, base.label_map)


@pytest.mark.parametrize("threshold", [0.0, THRESHOLD])
def test_without_background_the_area_rule_ignores_the_order(tiny_backbone, features, threshold):
    _, feats = features
    seg = _segmenter(tiny_backbone, area_threshold=AREA, background_threshold=threshold)
    base = _check_permutations(seg, feats, NAMES, FG_EMB, PERMS)
    assert base.has_background is False
    plain = _segmenter(tiny_backbone, background_threshold=threshold).predict(
        feats, vocabulary=seg.encode_vocabulary(NAMES, embeddings=FG_EMB))
    before = set(np.unique(plain.label_map).tolist()) - {UNLABELLED}
    after = set(np.unique(base.label_map).tolist()) - {UNLABELLED}
    removed = before - after
    # the rule really acts: it removes some classes (class 0 among them here: no class is exempt
    # without a background class) and keeps others
    assert removed and after, (before, after)
    assert 0 in removed
    areas = np.bincount(plain.label_map[plain.label_map >= 0], minlength=len(NAMES))
    assert all(areas[c] <= AREA * plain.label_map.size for c in removed)
    if threshold:
        assert (base.label_map == UNLABELLED).any()
    else:  # nothing else may leave a pixel unlabelled while some class is kept
        assert not (base.label_map == UNLABELLED).any()


@pytest.mark.parametrize("decode", [dict(background_threshold=THRESHOLD),
                                    dict(background_threshold=THRESHOLD, area_threshold=AREA)])
def test_with_background_low_confidence_pixels_get_class_0_whatever_the_foreground_order(
        tiny_backbone, features, decode):
    _, feats = features
    seg = _segmenter(tiny_backbone, **decode)
    emb = torch.cat([BG_EMB, FG_EMB])
    base = _check_permutations(seg, feats, NAMES, emb, PERMS, background=BACKGROUND)
    assert base.has_background is True and base.class_names[0] == BACKGROUND
    assert not (base.label_map == UNLABELLED).any()
    low = base.scores.max(axis=0) < THRESHOLD
    assert low.any() and not low.all()
    assert (base.label_map[low] == 0).all()
    assert np.array_equal(base.label_map[~low], base.scores.argmax(axis=0)[~low])
    # background="first": the class list's own first line is the background; same result
    first = seg.predict(feats, vocabulary=seg.encode_vocabulary([BACKGROUND] + NAMES, background="first",
                                                                embeddings=emb), return_scores=True)
    assert first.has_background is True
    assert first.class_names == base.class_names
    assert np.array_equal(first.label_map, base.label_map)


def test_has_background_flag_follows_the_vocabulary(tiny_backbone, features):
    _, feats = features
    seg = _segmenter(tiny_backbone)
    seg.set_classes(NAMES, embeddings=FG_EMB)
    assert seg.predict(feats).has_background is False
    seg.set_classes(NAMES, background=BACKGROUND, embeddings=torch.cat([BG_EMB, FG_EMB]))
    res = seg.predict(feats)
    assert res.has_background is True and res.class_names[0] == BACKGROUND
    # a class merely *named* background, without background=..., is an ordinary class
    res = seg.predict(feats, vocabulary=seg.encode_vocabulary([BACKGROUND] + NAMES,
                                                              embeddings=torch.cat([BG_EMB, FG_EMB])))
    assert res.has_background is False


def test_duplicate_class_names_are_refused(tiny_backbone):
    seg = _segmenter(tiny_backbone)
    seg.set_classes(NAMES, embeddings=FG_EMB)
    with pytest.raises(ValueError, match="duplicate.*'cat'"):
        seg.set_classes(["cat", "dog", "cat"])
    with pytest.raises(ValueError, match="'cat'"):
        seg.encode_vocabulary(["cat", "dog", "cat"], embeddings=_embeddings(3, 3))
    with pytest.raises(ValueError, match="'background'"):
        seg.encode_vocabulary(["cat", BACKGROUND], background=BACKGROUND)
    assert seg.class_names == NAMES  # a refused vocabulary leaves the default as it was
