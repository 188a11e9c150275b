"""From per-query cosine logits to class probabilities and a label map, as the reference methods decode.

The :class:`Decoder` is the config's ``decode=dict(...)`` section. Its steps work on any band
of pixels, so the segmenter can decode a full-resolution image band by band:

1. :meth:`Decoder.probabilities`: ``softmax(logit_scale * logits)`` over all queries, synonyms
   included, then the max over each class's synonyms, then the config's decoder ``rules``
   (registry ``DECODE_RULES``; each reads the band of the image's context, e.g. a head's
   background map);
2. :meth:`Decoder.area_keep` (SCLIP's area rule, needs the whole image's argmax areas):
   classes whose area is at most ``area_threshold`` of the area it is measured against get
   probability 0;
3. :meth:`Decoder.labels`: argmax; pixels whose max probability is below
   ``background_threshold`` become the background class 0 when the vocabulary has one,
   else :data:`~ovdense.structures.UNLABELLED`; then the rules on the whole label map
   (:class:`~ovdense.rules.base.LabelRule`, e.g. CorrCLIP's ``region_mode``), once per image
   (:meth:`Decoder.relabel`); rules on the window scores
   (:class:`~ovdense.rules.base.WindowRule`, CLIP-DINOiser's FOUND background) run before the
   windows are stitched (``OVSegmenter.canvas_logits``), not here;
4. :meth:`Decoder.scores`: ``renormalize`` (NACLIP) divides the returned probabilities by
   their sum over classes, after the labels are decided.

Background semantics: only a vocabulary that *has* a background class (``has_background``)
lets the threshold and the area rule fall back to class 0. Without one, no class is
special, so the labels do not depend on the order of the classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple

import torch

from .registry import DECODE_RULES, build
from .rules.base import LabelRule, WindowRule
from .structures import UNLABELLED, ContextBand
from .text.vocabulary import Vocabulary


def synonym_max(probs: torch.Tensor, query_to_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Max over each class's queries: ``[Q, ...] -> [C, ...]``."""
    if probs.shape[0] == num_classes:
        return probs
    index = query_to_class.view(-1, *([1] * (probs.ndim - 1))).expand_as(probs)
    out = probs.new_full((num_classes,) + tuple(probs.shape[1:]), float("-inf"))
    return out.scatter_reduce(0, index, probs, reduce="amax", include_self=True)


@dataclass(frozen=True)
class Decoder:
    """Probabilities, thresholds and labels (config section ``decode``).

    Args:
        logit_scale: temperature of the softmax over queries.
        background_threshold: pixels whose max class probability is below it get the
            background class (with a background class) or UNLABELLED (without); 0 = off.
        area_threshold: SCLIP's area rule (None = off): a class whose argmax area is at most
            this fraction of the foreground area (all pixels, without a background class)
            is removed.
        renormalize: divide the returned probabilities by their sum (NACLIP).
        rules: decoder rules run in order after the synonym max (``dict(type=name, ...)``
            specs of ``DECODE_RULES``, or built rules); they read the image's context band.
    """

    logit_scale: float = 40.0
    background_threshold: float = 0.0
    area_threshold: Optional[float] = None
    renormalize: bool = False
    rules: Sequence[Any] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(build(DECODE_RULES, spec) for spec in self.rules))
        if not 0.0 <= self.background_threshold <= 1.0:
            raise ValueError(f"decode: background_threshold must lie in [0, 1], got {self.background_threshold}")
        if self.area_threshold is not None and not 0.0 <= self.area_threshold < 1.0:
            raise ValueError(f"decode: area_threshold must lie in [0, 1) or be None, got {self.area_threshold}")

    @property
    def pixel_rules(self) -> Tuple[Any, ...]:
        """The rules on probabilities, pixel by pixel (run band by band)."""
        return tuple(rule for rule in self.rules if not isinstance(rule, (LabelRule, WindowRule)))

    @property
    def window_rules(self) -> Tuple[WindowRule, ...]:
        """The rules on every window's scores before stitching (see :class:`WindowRule`)."""
        return tuple(rule for rule in self.rules if isinstance(rule, WindowRule))

    @property
    def label_rules(self) -> Tuple[LabelRule, ...]:
        """The rules on the whole label map (run once, after the labels; see :class:`LabelRule`)."""
        return tuple(rule for rule in self.rules if isinstance(rule, LabelRule))

    @property
    def requires(self) -> Tuple[str, ...]:
        """Provider outputs and head extras the rules read."""
        return tuple(sorted({name for rule in self.rules for name in rule.requires}))

    def probabilities(self, logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int,
                      band: Optional[ContextBand] = None, vocabulary: Optional[Vocabulary] = None) -> torch.Tensor:
        """Query cosines ``[Q, ...]`` -> class probabilities ``[C, ...]`` (float32), the rules
        applied (they need the ``band`` of the image's context and the ``vocabulary``)."""
        probs = torch.softmax(logits.float() * self.logit_scale, dim=0)
        probs = synonym_max(probs, query_to_class, num_classes)
        if self.pixel_rules:
            if band is None or vocabulary is None:
                raise ValueError("decoder rules need the band of the image's context and the vocabulary")
            for rule in self.pixel_rules:
                probs = rule(probs, band, vocabulary)
        return probs

    @staticmethod
    def argmax_areas(probs: torch.Tensor) -> torch.Tensor:
        """``[C]`` int64 pixel counts of each class's argmax over ``probs`` ``[C, ...]`` (what the area rule
        measures), with a size that does not depend on the data (a CUDA graph can hold it)."""
        index = probs.argmax(dim=0).flatten()
        return torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device).scatter_add_(
            0, index, torch.ones_like(index))

    def area_keep(self, areas: torch.Tensor, has_background: bool) -> Optional[torch.Tensor]:
        """``[C]`` 0/1 weights of the area rule from the whole image's argmax ``areas``; None when off."""
        if self.area_threshold is None:
            return None
        areas = areas.double()
        if has_background:
            areas = areas.clone()
            areas[0] = 0  # the background class is exempt and not part of the measure
        keep = (areas > self.area_threshold * areas.sum()).float()
        if has_background:
            keep[0] = 1
        return keep

    def labels(self, probs: torch.Tensor, has_background: bool,
               keep: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(probs, labels)``: probabilities after the area rule, and int64 labels.

        A pixel whose every class was removed by the area rule is UNLABELLED without a
        background class (with one, the background keeps its probability).
        """
        if keep is not None:
            probs = probs * keep.to(probs.device).view(-1, *([1] * (probs.ndim - 1)))
        labels = probs.argmax(dim=0)
        max_prob = probs.amax(dim=0)
        low = max_prob < self.background_threshold
        if has_background:
            labels = labels.masked_fill(low, 0)
        else:
            labels = labels.masked_fill(low | (max_prob <= 0), UNLABELLED)
        return probs, labels

    @property
    def label_rules_need_scores(self) -> bool:
        """A label rule reads (and may change) the whole image's probabilities."""
        return any(rule.needs_scores for rule in self.label_rules)

    def relabel(self, labels: torch.Tensor, context: Any, vocabulary: Vocabulary,
                scores: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(labels [H, W], scores [C, H, W] or None)`` of the whole image after the label rules
        (unchanged without any); ``scores`` are the returned probabilities, given to the rules
        that set ``needs_scores``."""
        for rule in self.label_rules:
            if rule.needs_scores:
                labels, scores = rule(labels, context, vocabulary, scores)
            else:
                labels = rule(labels, context, vocabulary)
        return labels, scores

    def scores(self, probs: torch.Tensor) -> torch.Tensor:
        """The returned probabilities: renormalised over classes when ``renormalize``."""
        if not self.renormalize:
            return probs
        total = probs.sum(dim=0, keepdim=True)
        return probs / torch.where(total > 0, total, torch.ones_like(total))

    def __call__(self, logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int,
                 has_background: bool, band: Optional[ContextBand] = None,
                 vocabulary: Optional[Vocabulary] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """All steps on one whole map ``[Q, H, W]``: ``(scores [C, H, W], labels [H, W])``."""
        probs = self.probabilities(logits, query_to_class, num_classes, band, vocabulary)
        keep = None
        if self.area_threshold is not None:
            areas = torch.bincount(probs.argmax(dim=0).flatten(), minlength=num_classes)
            keep = self.area_keep(areas, has_background)
        probs, labels = self.labels(probs, has_background, keep)
        return self.scores(probs), labels


def decode(logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int, logit_scale: float,
           background_threshold: float = 0.0, area_threshold: Optional[float] = None,
           renormalize: bool = False, *, has_background: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """One-shot :class:`Decoder` on ``[Q, H, W]`` logits: ``(probs [C, H, W], labels [H, W])``."""
    return Decoder(logit_scale, background_threshold, area_threshold, renormalize)(
        logits, query_to_class, num_classes, has_background)
