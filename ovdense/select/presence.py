"""``presence``: keep the classes that the whole image's CLIP embedding and the dense logits both support.

Two kinds of evidence per class ``c`` (S2C2Seg's "global similarity" and "local presence"):

* **global**: CLIP's own zero-shot reading of the whole image. The normalised canvas image
  (:attr:`ImageContext.guide`) is resized (bicubic, antialiased, aspect ratio not kept) to the
  model's native input size and encoded by CLIP's full image tower (class token through the
  last block, ``ln_post``, ``proj``: what ``open_clip``'s ``encode_image`` gives, and what the
  ``masked_crop`` region scorer does per crop). ``g = softmax(clip_scale x cos(image, text))``
  (``clip_scale``: the model's own learned logit scale by default, 100 for OpenAI CLIP)
  over the queries, max over each class's synonyms, divided by the best class's: ``g[c] = 1``
  for CLIP's top class. One extra forward pass at the native size per image, cached in the
  context (``context.shared``), so a context re-rendered with other vocabularies pays once.
* **local**: the dense logits on the canvas. ``area[c]``: the fraction of canvas pixels whose
  argmax class is ``c``; ``peak[c]``: the largest probability ``c`` reaches on any pixel
  (``softmax(logit_scale x logits)`` over the queries, synonym max).

A class is kept when ``g[c] >= global_threshold`` **and** (``area[c] >= area_threshold`` **or**
``peak[c] >= peak_threshold``). Then, ranking the candidate classes by ``g[c] + area[c] / max(area)``,
at least the top ``min_classes`` are kept and at most the top ``max_classes``. The background
class 0 of a vocabulary that has one is always kept and is not counted (nor ranked).

A class that never wins a pixel's argmax cannot change the labels, so what selection does is
drop classes that win some pixels while the whole-image reading (or their weak local
evidence) says they are not there; their pixels go to the next best kept class.

Defaults (measured on synthetic world v2 with the tiny CLIP v2 fixture, a tuning split apart
from the reported one; ``tools/class_selection_eval.py``): the local test on (a class must win
5 % of the canvas or reach probability 0.5 somewhere), at least 2 classes, and the global test
**off** (``global_threshold=0``: there the tiny CLIP's whole-image reading was too weak, every
threshold tried lowered mIoU). The whole-image embedding is still computed for the ranking
(one forward pass at the native size). With a real CLIP, try ``global_threshold`` 0.01-0.1.
Unlike SCLIP's area rule (``decode.area_threshold``), a small class survives when it is
confident somewhere (``peak_threshold``) and at least ``min_classes`` always stay.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

from ..decode import synonym_max
from ..registry import CLASS_SELECTORS
from ..structures import EncodedVocabulary, ImageContext
from .base import ClassSelector


@torch.no_grad()
def global_image_embedding(context: ImageContext, backbone: Any) -> torch.Tensor:
    """L2-normalised CLIP embedding ``[D]`` (float32) of the whole image resized to the
    model's native input size; cached in ``context`` per backbone."""

    def compute() -> torch.Tensor:
        size = backbone.visual.image_size
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        image = F.interpolate(context.guide[None].float(), size=size, mode="bicubic", align_corners=False,
                              antialias=True)
        return backbone.encode_image(image)[0]

    return context.shared(("global_image_embedding", id(backbone)), compute)


def global_scores(embedding: torch.Tensor, encoded: EncodedVocabulary, clip_scale: float) -> torch.Tensor:
    """``[C]`` softmax over the queries of ``clip_scale x cos``, synonym max (sums to <= 1)."""
    text = encoded.text.to(embedding.device, torch.float32)
    probs = torch.softmax(clip_scale * (text @ embedding), dim=0)
    return synonym_max(probs, encoded.query_to_class.to(embedding.device), encoded.vocabulary.num_classes)


def local_scores(logits: torch.Tensor, encoded: EncodedVocabulary, logit_scale: float
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(area [C], peak [C])`` of canvas logits ``[Q, h, w]``: the fraction of pixels each class
    wins the argmax of, and its largest probability on any pixel."""
    num_classes = encoded.vocabulary.num_classes
    probs = torch.softmax(logits.float() * logit_scale, dim=0)
    probs = synonym_max(probs, encoded.query_to_class.to(probs.device), num_classes)
    flat = probs.reshape(num_classes, -1)
    area = torch.bincount(flat.argmax(dim=0), minlength=num_classes).float() / max(1, flat.shape[1])
    return area, flat.amax(dim=1)


@CLASS_SELECTORS.register_module("presence")
class PresenceSelector(ClassSelector):
    """Keep the classes with global *and* local evidence (see :mod:`ovdense.select.presence`).

    Args:
        global_threshold: least ``g[c]``, the class's whole-image CLIP probability relative
            to the best class's (0 = no global test, the default; 1 = only CLIP's top class).
        area_threshold: least fraction of canvas pixels the class wins (argmax).
        peak_threshold: a class below ``area_threshold`` still passes the local test when its
            probability reaches this on some pixel (None = area alone).
        min_classes: at least this many top-ranked classes are kept (background not counted).
        max_classes: at most this many (None = no limit).
        clip_scale: temperature of the global softmax; None (default): the model's own learned
            logit scale (``exp(model.logit_scale)``, 100 for OpenAI CLIP), else 100.
        logit_scale: temperature of the local softmax (for ``peak``; the area does not
            depend on it); the decoder's default, 40.
    """

    def __init__(self, global_threshold: float = 0.0, area_threshold: float = 0.05,
                 peak_threshold: Optional[float] = 0.5, min_classes: int = 2, max_classes: Optional[int] = None,
                 clip_scale: Optional[float] = None, logit_scale: float = 40.0) -> None:
        if not 0.0 <= global_threshold <= 1.0:
            raise ValueError(f"presence: global_threshold must lie in [0, 1], got {global_threshold}")
        if not 0.0 <= area_threshold <= 1.0:
            raise ValueError(f"presence: area_threshold must lie in [0, 1], got {area_threshold}")
        if peak_threshold is not None and not 0.0 <= peak_threshold <= 1.0:
            raise ValueError(f"presence: peak_threshold must lie in [0, 1] or be None, got {peak_threshold}")
        if int(min_classes) < 1:
            raise ValueError(f"presence: min_classes must be >= 1, got {min_classes}")
        if max_classes is not None and int(max_classes) < int(min_classes):
            raise ValueError(f"presence: max_classes ({max_classes}) must be >= min_classes ({min_classes})")
        self.global_threshold = float(global_threshold)
        self.area_threshold = float(area_threshold)
        self.peak_threshold = None if peak_threshold is None else float(peak_threshold)
        self.min_classes = int(min_classes)
        self.max_classes = None if max_classes is None else int(max_classes)
        self.clip_scale = None if clip_scale is None else float(clip_scale)
        self.logit_scale = float(logit_scale)

    def scores(self, context: ImageContext, logits: torch.Tensor, encoded: EncodedVocabulary,
               backbone: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(g, area, peak)``, each ``[C]`` on the logits' device (``g`` relative to the top class)."""
        g = global_scores(global_image_embedding(context, backbone), encoded, self._clip_scale(backbone))
        g = g.to(logits.device)
        area, peak = local_scores(logits, encoded, self.logit_scale)
        if encoded.has_background:  # the background is neither a candidate nor the reference
            g = g.clone()
            g[0] = 0.0
        return g / g.max().clamp_min(1e-12), area, peak

    def _clip_scale(self, backbone: Any) -> float:
        if self.clip_scale is not None:
            return self.clip_scale
        scale = getattr(getattr(backbone, "model", None), "logit_scale", None)
        return float(scale.detach().float().exp()) if isinstance(scale, torch.Tensor) else 100.0

    def select(self, g: torch.Tensor, area: torch.Tensor, peak: torch.Tensor, has_background: bool) -> torch.Tensor:
        """The rule on precomputed scores: ``[C]`` float 0/1 keep weights."""
        local = area >= self.area_threshold
        if self.peak_threshold is not None:
            local = local | (peak >= self.peak_threshold)
        keep = (g >= self.global_threshold) & local
        rank = g + area / area.max().clamp_min(1e-12)
        start = 1 if has_background else 0
        if has_background:
            keep[0] = False
            rank = rank.clone()
            rank[0] = float("-inf")
        order = torch.argsort(rank, descending=True, stable=True)[: len(rank) - start]
        keep[order[: self.min_classes]] = True
        if self.max_classes is not None:
            keep[order[self.max_classes:]] = False
        keep = keep.float()
        if has_background:
            keep[0] = 1.0
        return keep

    def __call__(self, context: ImageContext, logits: torch.Tensor, encoded: EncodedVocabulary,
                 backbone: Any) -> torch.Tensor:
        g, area, peak = self.scores(context, logits, encoded, backbone)
        return self.select(g, area, peak, encoded.has_background)

    def __repr__(self) -> str:
        return (f"PresenceSelector(global_threshold={self.global_threshold}, area_threshold={self.area_threshold}, "
                f"peak_threshold={self.peak_threshold}, min_classes={self.min_classes}, "
                f"max_classes={self.max_classes})")
