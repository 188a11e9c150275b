"""The contract of a per-image class selector (``OVSegmenter(select_classes=dict(type=name, ...))``).

A selector looks at one whole image and keeps the classes the image plausibly contains; the
others get probability 0 before decoding, so their pixels go to the next best kept class
(S2C2Seg, CVPR'26, and ActiveSAM's presence preview prune the vocabulary per image the same
way). It is off by default (``select_classes=None``) and works with any head: it reads only
what every head gives, the canvas logits, plus the image's context and the text.

When it runs: once per image, in :meth:`OVSegmenter._render <ovdense.predictor.OVSegmenter>`,
on the whole image's canvas logits ``[Q, h, w]`` (the model's resolution, *before*
refiners), before any band of the output is decoded. Its ``[C]`` 0/1 weights are multiplied
into the class probabilities of every band (with SCLIP's area rule, whose areas are then
measured on the selected classes), exactly like :meth:`Decoder.area_keep
<ovdense.decode.Decoder.area_keep>`'s weights.

What it must return: a float tensor ``[C]`` (one weight per *class*, not per query) of 0s and
1s on any device, with at least one 1. It must never drop the background class 0 of a
vocabulary that has one (``encoded.has_background``): the background is "no object", the
fallback of thresholds and rules, not a class to prune. Without a background class no class
is special.
"""
from __future__ import annotations

from typing import Any

import torch

from ..structures import EncodedVocabulary, ImageContext


class ClassSelector:
    """Base class of per-image class selectors (registry ``CLASS_SELECTORS``).

    Subclasses implement :meth:`__call__`; their constructor keywords are the config keys
    of ``select_classes=dict(type=name, **kwargs)``.
    """

    def __call__(self, context: ImageContext, logits: torch.Tensor, encoded: EncodedVocabulary,
                 backbone: Any) -> torch.Tensor:
        """``[C]`` float 0/1 keep weights of the classes of ``encoded`` for this image.

        Args:
            context: the image's :class:`~ovdense.structures.ImageContext` (``guide``: the
                normalised canvas image; ``resized_image``; ``shared`` for per-image caches).
            logits: the whole image's canvas logits ``[Q, h, w]`` (one map per query, synonyms
                included; ``encoded.query_to_class`` maps queries to classes), before refiners.
            encoded: the vocabulary of this call with its text embeddings ``[Q, D]``.
            backbone: the segmenter's :class:`~ovdense.backbones.clip.CLIPBackbone` (for a
                whole-image CLIP embedding, say).
        """
        raise NotImplementedError

    @staticmethod
    def finish(keep: torch.Tensor, encoded: EncodedVocabulary) -> torch.Tensor:
        """``keep`` as float 0/1 with the background class 0 kept (when the vocabulary has one)."""
        keep = (keep > 0).float()
        if encoded.has_background:
            keep[0] = 1.0
        return keep
