"""Streams for robots and services: cheap set_classes, predict_iter, warmup, dense_embeddings."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import ovdense
from ovdense.io import ImageLoadError
from test_contracts import tiny_segmenter


class CountingText:
    """Wraps seg.text and counts the calls to the text encoder."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.fixture()
def seg(tiny_backbone):
    return tiny_segmenter(tiny_backbone)


def _images(n, shape=(40, 56), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for _ in range(n)]


def _same(results, expected):
    assert len(results) == len(expected)
    for r, e in zip(results, expected):
        assert np.array_equal(r.label_map, e.label_map)


# ---------------------------------------------------------------------------------- set_classes
def test_set_classes_unchanged_skips_the_text_encoder(seg):
    seg.text = counter = CountingText(seg.text)
    seg.set_classes(["cat", "dog, puppy"], background="sky")
    first = seg.encoded_vocabulary
    assert counter.calls == 1
    seg.set_classes(["cat", "dog, puppy"], background="sky")
    seg.set_classes(("cat", ["dog", "puppy"]), background="sky")  # the same vocabulary, spelled otherwise
    assert counter.calls == 1 and seg.encoded_vocabulary is first
    seg.set_classes(["cat", "dog, puppy"])  # no background: another vocabulary
    assert counter.calls == 2 and seg.class_names == ["cat", "dog"]
    seg.set_classes(["cat", "dog, puppy"], background="sky")
    assert counter.calls == 3
    # explicit embeddings always replace, and text-encoded classes after them are encoded again
    emb = torch.randn(3, seg.backbone.embed_dim)
    seg.set_classes(["sky", "cat", "dog"], embeddings=emb)
    assert torch.allclose(seg.encoded_vocabulary.text, torch.nn.functional.normalize(emb, dim=-1))
    seg.set_classes(["sky", "cat", "dog"])
    assert counter.calls == 4
    seg.set_classes(["sky", "cat", "dog"])
    assert counter.calls == 4


# ---------------------------------------------------------------------------------- predict_iter
def test_predict_iter_folder_and_glob_in_order(seg, tmp_path):
    images = _images(3)
    names = ["a.png", "b.png", "c.png"]
    for name, image in zip(reversed(names), images):  # written in another order than sorted
        Image.fromarray(image).save(tmp_path / name)
    expected = seg.predict([str(tmp_path / n) for n in names])
    for source in (tmp_path, str(tmp_path / "*.png")):
        results = list(seg.predict_iter(source, batch_size=2))
        _same(results, expected)
        assert [r.path for r in results] == [str(tmp_path / n) for n in names]


def test_predict_iter_unreadable_file_raises_naming_it(seg, tmp_path):
    Image.fromarray(_images(1)[0]).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    stream = seg.predict_iter(tmp_path)
    assert next(stream).path == str(tmp_path / "a.png")
    with pytest.raises(ImageLoadError, match="b.png"):
        next(stream)
    with pytest.raises(FileNotFoundError):
        seg.predict_iter(tmp_path / "missing")


def test_predict_iter_video_frames_are_rgb_and_in_order(seg, tmp_path):
    path = str(tmp_path / "clip.avi")
    h, w = 48, 64
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    assert writer.isOpened()
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 40)]  # BGR
    rng = np.random.default_rng(0)
    for colour in colours:
        frame = np.full((h, w, 3), colour, np.uint8)
        frame[8:24, 8:40] = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        writer.write(frame)
    writer.release()
    capture, decoded = cv2.VideoCapture(path), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(decoded) == 4
    assert decoded[0][40, 60, 2] > 200  # a blue BGR frame is blue in RGB
    results = list(seg.predict_iter(path, batch_size=3))
    _same(results, seg.predict(decoded))
    assert [r.path for r in results] == [f"{path}#{i}" for i in range(4)]


def test_predict_iter_iterable_of_arrays_and_bgr(seg):
    images = _images(3, seed=1)
    expected = seg.predict(images)
    results = list(seg.predict_iter(iter(images)))
    _same(results, expected)
    assert all(r.path is None for r in results)
    _same(list(seg.predict_iter([i[:, :, ::-1] for i in images], bgr=True, batch_size=2)), expected)
    _same(list(seg.predict_iter(images[0])), expected[:1])  # one array is one image
    scored = next(seg.predict_iter(images, return_scores=True, resolution="model"))
    assert scored.scores is not None


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_predict_iter_is_lazy(seg, batch_size):
    images, pulled = _images(10, shape=(32, 32)), []

    def camera():
        for image in images:
            pulled.append(1)
            yield image

    stream = seg.predict_iter(camera(), batch_size=batch_size)
    assert len(pulled) == 0  # nothing is read before the first result is asked for
    next(stream)
    assert len(pulled) <= batch_size + 1
    assert len(list(stream)) == 9 and len(pulled) == 10


def test_warmup(seg, tiny_backbone):
    assert seg.warmup((40, 50)) > 0
    bare = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu",
                               preprocess=dict(short_side=None), windows=dict(crop=32, stride=16),
                               text_encoder=dict(cache_dir=""))
    bare.text = counter = CountingText(bare.text)
    assert bare.warmup((30, 30)) > 0 and counter.calls == 0 and bare.encoded_vocabulary is None


# ---------------------------------------------------------------------------------- dense embeddings
def test_dense_embeddings_match_the_logits(seg, tiny_backbone):
    image = _images(1, shape=(40, 70), seed=3)[0]
    ctx = seg.encode_image(image)
    text = seg.encoded_vocabulary.text.cpu().numpy()
    emb = seg.dense_embeddings(ctx)
    assert emb.dtype == np.float32 and emb.shape == (tiny_backbone.embed_dim, *ctx.resized_size)
    logits = np.einsum("dhw,qd->qhw", emb, text)
    np.testing.assert_allclose(logits, seg.canvas_logits(ctx, seg.encoded_vocabulary).cpu().numpy(), atol=1e-5)
    inp = seg.dense_embeddings(ctx, resolution="input")
    assert inp.shape[1:] == (40, 70)
    np.testing.assert_allclose(np.einsum("dhw,qd->qhw", inp, text),
                               seg.query_logits(ctx, resolution="input").numpy(), atol=1e-5)
    patch = seg.dense_embeddings(ctx, resolution="patch")
    assert patch.shape[1:] == (3, 5)  # ceil(40/16) x ceil(70/16)
    np.testing.assert_allclose(patch[:, 0, 0], emb[:, :16, :16].mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(patch[:, 2, 4], emb[:, 32:, 64:].mean(axis=(1, 2)), atol=1e-6)  # partial cell
    half = seg.dense_embeddings(image, dtype=torch.float16)
    assert half.dtype == np.float16 and np.abs(half.astype(np.float32) - emb).max() < 1e-2
    unit = seg.dense_embeddings(ctx, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=0), 1.0, atol=1e-5)
    assert np.array_equal(np.einsum("dhw,qd->qhw", unit, text).argmax(0), logits.argmax(0))
    with pytest.raises(ValueError):
        seg.dense_embeddings(ctx, resolution="grid")


def test_dense_embeddings_whole_image_pass(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone, windows=dict(crop=0))
    ctx = seg.encode_image(_images(1, shape=(48, 64), seed=4)[0])
    assert ctx.whole
    patch = seg.dense_embeddings(ctx, resolution="patch")
    np.testing.assert_allclose(patch, ctx.features[0].numpy(), atol=0)
    np.testing.assert_allclose(np.linalg.norm(patch, axis=0), 1.0, atol=1e-5)
    model = seg.dense_embeddings(ctx)
    assert model.shape[1:] == (48, 64)
    text = seg.encoded_vocabulary.text.numpy()
    np.testing.assert_allclose(np.einsum("dhw,qd->qhw", model, text),
                               seg.query_logits(ctx, resolution="model").numpy(), atol=1e-5)
