"""FixedSizePredictor: one static-shape step per frame equals ``predict`` (labels exactly,
probabilities to 1e-5) for every stage it holds; a CUDA graph's contract (replays read the
tensors it was recorded on) is checked with a stand-in graph, since CI has no GPU."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import ovdense
from ovdense.fixed_size import FixedSizePredictor
from ovdense.registry import HEADS, build
from host_work import step_on_meta
from test_contracts import NAMED_PROVIDERS, PROVIDER_FOR_TESTS, head_spec, tiny_segmenter

SIZE = (70, 45)


def _frames(n=3, size=SIZE):
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(n)]
    for f in frames:
        f[:, : size[1] // 3] = (30, 120, 60)  # a flat region: refiners and rules have something to do
    return frames


def _head(name, backbone):
    return build(HEADS, head_spec(name, backbone))


CASES = {
    "maskclip-windows": dict(),
    "sclip-whole": dict(head="sclip", windows=dict(crop=0)),
    "naclip-area-rule": dict(head="naclip", decode=dict(area_threshold=0.2, background_threshold=0.3,
                                                         renormalize=True)),
    "clearclip-pamr-input": dict(head="clearclip", refiners=[dict(type="pamr", steps=3, dilations=(1, 2))]),
    "maskclip-pamr-model": dict(refiners=[dict(type="pamr", steps=3, dilations=(1, 2))], refine_at="model"),
    "proxyclip-window-provider": dict(head="proxyclip", features=dict(vfm=PROVIDER_FOR_TESTS)),
    "constant-background-rule": dict(decode=dict(rules=[dict(type="constant_background", score=0.05)])),
    "resized-windows": dict(preprocess=dict(short_side=48), windows=dict(crop=32, stride=24)),
    "cass": dict(head="cass", features=dict(dino=PROVIDER_FOR_TESTS)),
    "dinoiser-found": dict(head="dinoiser", decode=dict(rules=[dict(type="found_background")])),
    "talk2dino": dict(head="talk2dino", features=dict(dino=PROVIDER_FOR_TESTS),
                      decode=dict(rules=[dict(type="constant_background", score=0.3)])),
}


def _segmenter(tiny_backbone, spec):
    spec = dict(spec)
    head = spec.pop("head", "maskclip")
    return tiny_segmenter(tiny_backbone, head=_head(head, tiny_backbone) if head != "maskclip" else head, **spec)


@pytest.mark.parametrize("resolution", ["model", "input"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_size_equals_predict(tiny_backbone, case, resolution):
    seg = _segmenter(tiny_backbone, CASES[case])
    torch.manual_seed(3)
    vocab = seg.encode_vocabulary(["a", "b", "c"], background="bg", embeddings=torch.randn(4, tiny_backbone.embed_dim))
    fast = FixedSizePredictor(seg, SIZE, vocabulary=vocab, resolution=resolution, return_scores=True)
    labels_seen = set()
    for frame in _frames():
        want = seg.predict(frame, vocabulary=vocab, resolution=resolution, return_scores=True)
        got = fast(frame)
        np.testing.assert_array_equal(got.label_map, want.label_map)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5, rtol=0)
        assert got.class_names == want.class_names and got.has_background
        assert set(got.timings) == {"load", "step", "output"}
        labels_seen |= set(np.unique(got.label_map).tolist())
    assert len(labels_seen) >= 2, "the case must exercise the decoder"


def test_vocabulary_changes_mid_stream(tiny_backbone):
    """Same structure: the rows are copied into the static text; another structure (synonyms, no
    background) prepares the step again. Each frame equals predict with the vocabulary of the time."""
    seg = tiny_segmenter(tiny_backbone)
    torch.manual_seed(4)
    dim = tiny_backbone.embed_dim
    first = seg.encode_vocabulary(["a", "b"], background="bg", embeddings=torch.randn(3, dim))
    same_shape = seg.encode_vocabulary(["x", "y"], background="floor", embeddings=torch.randn(3, dim))
    other = seg.encode_vocabulary(["p", "q, r", "s"], embeddings=torch.randn(4, dim))
    fast = FixedSizePredictor(seg, SIZE, vocabulary=first)
    static = fast._encoded.text
    frame = _frames(1)[0]
    for vocab in (first, same_shape, other, first):
        fast.set_vocabulary(vocab)
        got = fast(frame)
        want = seg.predict(frame, vocabulary=vocab, resolution="model")
        np.testing.assert_array_equal(got.label_map, want.label_map)
        assert got.class_names == list(vocab.class_names)
        if vocab is same_shape:
            assert fast._encoded.text is static  # copied in place, not re-made
    fast.set_vocabulary(["only"])  # a plain class list is encoded with the segmenter's text encoder
    assert fast.vocabulary.class_names == ("only",)


class _StandInGraph:
    """What a CUDA graph does, on the CPU: replay runs the recorded step on the very tensors it was
    recorded with and writes into the outputs recorded then (it cannot see new tensor objects)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.bound = (predictor._raw, predictor._normalised, predictor._encoded)
        predictor._outputs = tuple(None if t is None else t.clone() for t in predictor._step())
        self.outputs = predictor._outputs
        self.replays = 0

    def replay(self):
        p = self.predictor
        saved = (p._raw, p._normalised, p._encoded)
        p._raw, p._normalised, p._encoded = self.bound
        try:
            fresh = p._step()
        finally:
            p._raw, p._normalised, p._encoded = saved
        for out, value in zip(self.outputs, fresh):
            if out is not None:
                out.copy_(value)
        self.replays += 1


def test_graph_replays_read_the_static_buffers(tiny_backbone, monkeypatch):
    """With a graph, frames and same-structure vocabularies go through the static buffers, another
    structure records again, and results are copies (the next replay does not change them)."""
    seg = tiny_segmenter(tiny_backbone)
    torch.manual_seed(5)
    dim = tiny_backbone.embed_dim
    first = seg.encode_vocabulary(["a", "b", "c"], background="bg", embeddings=torch.randn(4, dim))
    second = seg.encode_vocabulary(["d", "e", "f"], background="bg", embeddings=torch.randn(4, dim))
    other = seg.encode_vocabulary(["g", "h"], embeddings=torch.randn(2, dim))
    recorded = []
    monkeypatch.setattr(FixedSizePredictor, "_record",
                        lambda self: (recorded.append(1), setattr(self, "_graph", _StandInGraph(self))))
    fast = FixedSizePredictor(seg, SIZE, vocabulary=first, return_scores=True)
    fast.cuda_graph = True  # the stand-in runs anywhere; a real graph needs CUDA (refused below)
    frames = _frames(3)
    results = []
    for frame, vocab in zip(frames + frames, (first, first, second, second, other, first)):
        fast.set_vocabulary(vocab)
        results.append((fast(frame), seg.predict(frame, vocabulary=vocab, resolution="model", return_scores=True)))
    assert len(recorded) == 3  # first; other (another structure); first again
    for got, want in results:  # checked after all frames: earlier results were not overwritten
        np.testing.assert_array_equal(got.label_map, want.label_map)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5, rtol=0)
    assert not np.array_equal(results[0][0].label_map, results[1][0].label_map)


def test_bad_use_is_refused_in_one_line(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone)
    fast = FixedSizePredictor(seg, SIZE)
    with pytest.raises(ValueError, match=r"takes 70x45 \(HxW\) frames, got 45x70"):
        fast(np.zeros((45, 70, 3), np.uint8))
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        FixedSizePredictor(seg, SIZE, cuda_graph=True)
    with pytest.raises(ValueError, match="resolution"):
        FixedSizePredictor(seg, SIZE, resolution="patch")
    with pytest.raises(ValueError, match="frame_size"):
        FixedSizePredictor(seg, (0, 10))
    selecting = tiny_segmenter(tiny_backbone, select_classes=dict(type="presence"))
    with pytest.raises(ValueError, match="class selection"):
        FixedSizePredictor(selecting, SIZE)
    with_sam = tiny_segmenter(tiny_backbone, features=dict(sam=NAMED_PROVIDERS["sam"]))
    with pytest.raises(ValueError, match=r"image-scope provider\(s\) \['sam'\]"):
        FixedSizePredictor(with_sam, SIZE)


def test_segmenter_entry_point(tiny_backbone):
    """``OVSegmenter.fixed_size`` builds one with the segmenter's classes."""
    seg = tiny_segmenter(tiny_backbone)
    fast = seg.fixed_size(SIZE)
    frame = _frames(1)[0]
    np.testing.assert_array_equal(fast(frame).label_map, seg.predict(frame, resolution="model").label_map)
    assert isinstance(fast, ovdense.FixedSizePredictor)


@pytest.mark.parametrize("resolution", ["model", "input"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_step_does_no_host_work(tiny_backbone, case, resolution):
    """What makes the step recordable as a CUDA graph, checked without a GPU: run on the meta device
    after one warm-up run, no op of the step reads a host tensor or a value back to the host."""
    seg = _segmenter(copy.deepcopy(tiny_backbone), CASES[case])
    fast = FixedSizePredictor(seg, SIZE, resolution=resolution, return_scores=True)
    if fast.segmenter.head.host_work:
        pytest.skip("the head declares host work (test_contracts checks the refusal)")
    labels, scores, found = step_on_meta(fast)
    want = tuple(fast._raw.shape[-2:]) if resolution == "model" else SIZE
    assert labels.device.type == "meta" and tuple(labels.shape) == want and tuple(scores.shape[1:]) == want
    assert not found, found
