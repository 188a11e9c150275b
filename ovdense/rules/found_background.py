"""CLIP-DINOiser's FOUND background (``found_background``): uncertain pixels off the foreground become background.

On every window, with its class probabilities ``P`` (``[Q, h, w]``, the ``dinoiser`` head's
``softmax(100 cos)``) and the head's background map ``b`` (the extra ``background``, FOUND's
sigmoid saliency on the same patch grid)::

    P[class 0] = 1   where   max_q P < delta   and   b <= threshold

as the official ``CLIP_DINOiser.forward`` does when ``apply_found`` (``delta = 0.99``, foreground
when ``b > 0.5``; main_eval.py sets ``apply_found`` only for VOC and COCO-Object, whose class 0 is
'background'). It is a window rule (:class:`~ovdense.rules.base.WindowRule`): the official code
applies it to each window's probabilities on the patch grid, before the windows are resized and
averaged, which a pixel rule on the stitched probabilities cannot reproduce. Every query of class 0
is set (the official lists have one); without a background class in the vocabulary the rule
changes nothing. Off unless configured (``decode=dict(rules=[dict(type='found_background')])``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import DECODE_RULES
from .base import WindowRule


@DECODE_RULES.register_module("found_background")
class FoundBackgroundRule(WindowRule):
    """Args:
        delta: pixels whose max probability is below it are uncertain (official 0.99).
        threshold: background-map values at most this are background (official 0.5: foreground is ``b > 0.5``).
        source: the head extra holding the background map.
    """

    def __init__(self, delta: float = 0.99, threshold: float = 0.5, source: str = "background") -> None:
        self.delta, self.threshold = float(delta), float(threshold)
        self.source = source
        self.requires = (source,)

    def __call__(self, scores: torch.Tensor, context, vocabulary) -> torch.Tensor:
        if not vocabulary.has_background:
            return scores
        b = context.extras[self.source] if self.source in context.extras else context.aux[self.source]
        b = b.to(scores.device, torch.float32)
        if tuple(b.shape[-2:]) != tuple(scores.shape[-2:]):
            b = F.interpolate(b, size=tuple(scores.shape[-2:]), mode="bilinear", align_corners=False)
        background = (scores.amax(dim=1) < self.delta) & (b[:, 0] <= self.threshold)  # [n, h, w]
        first = (vocabulary.query_to_class.to(scores.device) == 0).view(1, -1, 1, 1)
        return scores.masked_fill(background[:, None] & first, 1.0)

    def __repr__(self) -> str:
        return f"FoundBackgroundRule(delta={self.delta}, threshold={self.threshold}, source={self.source!r})"
