"""A segmenter's prediction for camera frames of one fixed size, with static shapes.

A robot's camera sends frames of one size, so everything after loading has the same shapes on
every frame: :class:`FixedSizePredictor` allocates the model's input (the uint8 and normalised
canvas) and the text embeddings once, as static buffers, and runs one *step* from them to the
label map and the probabilities: windows, CLIP and the head, the cosines and the decoder's window
rules, stitching, refiners, the decoder (area rule included), all on the device, without a copy to
the host or a Python decision that depends on the data. That step is what ``predict`` computes
(equal labels and probabilities: ``tests/test_fixed_size.py``), without its per-band bookkeeping.

On CUDA the step can be recorded once as a CUDA graph (``cuda_graph=True``) and replayed per
frame: one launch for every kernel of the frame, no allocator traffic, no Python between
kernels. A new frame is copied into the static input, a new vocabulary into the static text
(a vocabulary of another structure, i.e. other synonym groups or background, records the step
again). Outputs are copied out before the next frame overwrites them.

What the step cannot hold is refused when it is built (``ValueError`` naming the stage): stages
that read image-scope providers (SAM, region maps, a DINO run on the whole image), heads that
finish their context on the whole image (Trident), label rules on the whole label map (CorrCLIP's
``region_mode``), per-image class selection. Use ``predict`` for those.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .io.images import image_path, load_image
from .ops.bilinear import resize_rows
from .runtime import synchronize
from .structures import EncodedVocabulary, SegmentationResult

RESOLUTIONS = ("model", "input")


class FixedSizePredictor:
    """Predict frames of one size ``(H, W)`` with one static-shape step (optionally a CUDA graph).

    Args:
        segmenter: an :class:`~ovdense.OVSegmenter` (its device, dtype and every stage are used).
        frame_size: ``(height, width)`` of every frame; another size is refused.
        vocabulary: the classes (an EncodedVocabulary, or anything ``encode_vocabulary`` takes);
            default: the segmenter's. Change it with :meth:`set_vocabulary`.
        resolution: ``"model"`` (the label map at the size the model saw: the cheap one) or
            ``"input"`` (at the frame's size; the probabilities of the whole frame are held at
            once, ``C*H*W*4`` bytes).
        return_scores: also return the ``(C, H, W)`` probabilities.
        cuda_graph: record the step as a CUDA graph and replay it per frame (CUDA devices only).
        graph_warmup: eager runs of the step before it is recorded (CUDA graphs need the
            libraries' lazy initialisation done first).
    """

    def __init__(self, segmenter: Any, frame_size: Tuple[int, int],
                 vocabulary: Union[EncodedVocabulary, Any, None] = None, resolution: str = "model",
                 return_scores: bool = False, cuda_graph: bool = False, graph_warmup: int = 3) -> None:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
        height, width = (int(v) for v in frame_size)
        if height < 1 or width < 1:
            raise ValueError(f"frame_size must be (height, width) with positive sides, got {tuple(frame_size)}")
        self.segmenter = segmenter
        self.frame_size = (height, width)
        self.resolution = resolution
        self.return_scores = bool(return_scores)
        self.device = segmenter.device
        if cuda_graph and getattr(segmenter.head, "host_work", False):
            raise ValueError(f"cuda_graph=True: the {type(segmenter.head).__name__} head reads values back to the host "
                             f"between its kernels, which a CUDA graph cannot record; use cuda_graph=False")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device; this segmenter runs on {self.device}")
        self.cuda_graph = bool(cuda_graph)
        self.graph_warmup = max(1, int(graph_warmup))
        _refuse_unsupported(segmenter)
        blank = np.zeros((height, width, 3), dtype=np.uint8)
        raw, normalised = segmenter.preprocessor(blank, self.device, "frame")
        self._raw = torch.empty_like(raw)                 # static inputs: the canvas, uint8 and normalised
        self._normalised = torch.empty_like(normalised)
        self._encoded: Optional[EncodedVocabulary] = None   # static text (its rows are copied per vocabulary)
        self._vocabulary = None                             # the vocabulary the results are named with
        self._graph = None
        self._outputs: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self._lock = threading.Lock()  # the buffers are shared: calls from several threads take turns
        self.set_vocabulary(vocabulary)

    # ------------------------------------------------------------------ vocabulary
    def set_vocabulary(self, vocabulary: Union[EncodedVocabulary, Any, None]) -> None:
        """Classes for the next frames. Embeddings of the same structure (same queries per class,
        same background) are copied into the static text; another structure prepares the step again
        (a new recording with ``cuda_graph``)."""
        encoded = self.segmenter.resolve_vocabulary(vocabulary)
        with self._lock:
            self._use(encoded)

    def _use(self, encoded: EncodedVocabulary) -> None:
        text = encoded.text.to(self.device, torch.float32)
        vocab = encoded.vocabulary
        current = self._encoded
        same = (current is not None and current.text.shape == text.shape
                and current.vocabulary.query_to_class == vocab.query_to_class
                and current.vocabulary.has_background == vocab.has_background)
        if same:
            current.text.copy_(text)
        else:
            self._encoded = EncodedVocabulary(vocab, text.clone())
            self._graph = None
            self._outputs = None
        self._vocabulary = vocab

    @property
    def vocabulary(self):
        return self._vocabulary

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def _step(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Static inputs -> ``(labels [H, W] int64, probabilities [C, H, W] or None)`` on the device."""
        seg, encoded = self.segmenter, self._encoded
        vocab = encoded.vocabulary
        num_classes = vocab.num_classes
        ctx = seg.encode_normalized([self._normalised], [self.frame_size], raw=[self._raw])[0]
        source = ctx.vocabulary_logits(encoded)  # with the decoder's window rules, as the context carries them
        refiners: Sequence[Any] = seg.refiners
        if len(refiners) and seg.refine_at == "model":
            source = seg._refined_canvas(ctx, source)
            refiners = ()
        size = ctx.output_size(self.resolution)
        logits = resize_rows(source, size, 0, size[0])
        whole = ctx.band((0, size[0]), size)
        for refiner in refiners:  # a band that is the whole output: every refiner's contract
            logits = refiner(logits, whole)
        probs = seg.decoder.probabilities(logits, encoded.query_to_class, num_classes,
                                          whole if seg.decoder.rules else None, vocab)
        keep = None
        if seg.decoder.area_threshold is not None:
            keep = seg.decoder.area_keep(seg.decoder.argmax_areas(probs), vocab.has_background)
        probs, labels = seg.decoder.labels(probs, vocab.has_background, keep)
        return labels, (seg.decoder.scores(probs) if self.return_scores else None)

    def _record(self) -> None:
        """Record the step as a CUDA graph after ``graph_warmup`` eager runs on a side stream."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(self.graph_warmup):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._outputs = self._step()
        except RuntimeError as err:
            raise RuntimeError(f"this segmenter's step cannot be recorded as a CUDA graph ({err}); "
                               f"use cuda_graph=False (the same static-shape step, run eagerly)") from err
        self._graph = graph

    # ------------------------------------------------------------------ frames
    def __call__(self, frame: Any, bgr: bool = False) -> SegmentationResult:
        """Segment one frame (anything ``load_image`` takes) of size :attr:`frame_size`."""
        with self._lock:
            return self._predict(frame, bgr)

    def _predict(self, frame: Any, bgr: bool) -> SegmentationResult:
        t0 = time.perf_counter()
        rgb = load_image(frame, bgr=bgr)
        if tuple(rgb.shape[:2]) != self.frame_size:
            raise ValueError(f"this FixedSizePredictor takes {self.frame_size[0]}x{self.frame_size[1]} (HxW) frames, "
                             f"got {rgb.shape[0]}x{rgb.shape[1]}: build one per frame size")
        raw, normalised = self.segmenter.preprocessor(rgb, self.device, "frame")
        self._raw.copy_(raw)
        self._normalised.copy_(normalised)
        timings: Dict[str, float] = {"load": (time.perf_counter() - t0) * 1e3}
        t0 = time.perf_counter()
        if self.cuda_graph:
            if self._graph is None:
                self._record()
            self._graph.replay()
            labels, scores = self._outputs
        else:
            labels, scores = self._step()
        synchronize(self.device)
        timings["step"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        # copies: the next frame overwrites the static outputs (on the CPU .cpu() would not copy)
        label_map = labels.to("cpu", torch.int64, copy=True).numpy()
        scores_np = None if scores is None else scores.to("cpu", torch.float32, copy=True).numpy()
        timings["output"] = (time.perf_counter() - t0) * 1e3
        vocab = self._vocabulary
        path = image_path(frame)
        return SegmentationResult(label_map=label_map, class_names=list(vocab.class_names),
                                  has_background=vocab.has_background, scores=scores_np, path=path, timings=timings)

    def __repr__(self) -> str:
        return (f"FixedSizePredictor(frame_size={self.frame_size}, resolution={self.resolution!r}, "
                f"cuda_graph={self.cuda_graph}, classes={len(self._vocabulary.class_names)})")


def _refuse_unsupported(segmenter: Any) -> None:
    """One ``ValueError`` naming the first stage a static step cannot hold."""
    head = segmenter.head
    image_scope = sorted(n for n, p in segmenter.features.items() if getattr(p, "scope", "window") != "window")
    if image_scope:
        raise ValueError(f"FixedSizePredictor: the image-scope provider(s) {image_scope} run on the whole image "
                         f"outside the windows; use predict")
    if getattr(head, "context_requires", ()) or getattr(head, "finish_context", None) is not None:
        raise ValueError(f"FixedSizePredictor: the {type(head).__name__} head works on the whole image after its "
                         f"windows; use predict")
    if segmenter.decoder.label_rules:
        names = [type(rule).__name__ for rule in segmenter.decoder.label_rules]
        raise ValueError(f"FixedSizePredictor: label rules {names} work on the whole label map; use predict")
    if segmenter.class_selector is not None:
        raise ValueError("FixedSizePredictor: per-image class selection decides on the data; use predict")
