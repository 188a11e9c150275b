"""A constant background score (``constant_background``): Talk2DINO's ``bg_thresh``.

On every window, each query of the background class (class 0 of a vocabulary that has one) gets
the score ``score`` instead of its text's, as the official ``DINOTextSegInference.encode_decode``
prepends a constant map ``bg_thresh`` to each crop's class scores (its class list has no
background entry). With ``decode.logit_scale=1`` the decoder's softmax over the stitched scores
is the official ``F.softmax(seg_logit)``; the argmax is ``argmax([bg_thresh, s_1, ..., s_N])``. It
is a window rule (:class:`~ovdense.rules.base.WindowRule`), so refiners see the constant too (PAMR
keeps a constant map constant). Without a background class in the vocabulary it changes nothing.

The official class list has no background entry, so a head that scores the queries of a window
jointly sees only the others (Talk2DINO's background cleaning normalises over the window's
queries): with a head that scores windows itself (``context.window_scorer``) the rule scores the
non-background queries again without the background ones (``rescore``, default). Put it first
among the window rules: it replaces the other queries' scores.
"""
from __future__ import annotations

import torch

from ..registry import DECODE_RULES
from .base import WindowRule


@DECODE_RULES.register_module("constant_background")
class ConstantBackgroundRule(WindowRule):
    """Args:
        score: the background class's score on every pixel (Talk2DINO ViT-B: 0.55 on VOC21,
            PC60 and COCO-Object).
        rescore: score the other queries again without the background ones when the head scores
            windows itself (see the module doc).
    """

    def __init__(self, score: float = 0.5, rescore: bool = True) -> None:
        self.score = float(score)
        self.rescore = bool(rescore)

    def __call__(self, scores: torch.Tensor, context, vocabulary) -> torch.Tensor:
        if not vocabulary.has_background:
            return scores
        first = vocabulary.query_to_class.to(scores.device) == 0
        scorer = getattr(context, "window_scorer", None)
        if self.rescore and scorer is not None and not bool(first.all()):
            text = vocabulary.text.to(scores.device, torch.float32)[~first]
            scores = scores.clone()
            scores[:, ~first] = scorer(context, text).to(scores.dtype)
        return scores.masked_fill(first.view(1, -1, 1, 1), self.score)

    def __repr__(self) -> str:
        return f"ConstantBackgroundRule(score={self.score}, rescore={self.rescore})"
