"""The contract of a decoder rule (config ``decode=dict(rules=[dict(type=name, ...)])``).

A rule changes class probabilities pixel by pixel after the decoder's softmax and synonym
max, before the area rule, the threshold and the argmax. It gets the band's probabilities
``[C, h, W]``, the band of the image's context (:class:`~ovdense.structures.ContextBand`:
``band.map(name)`` reads a head extra such as a background map, or a provider's output) and
the vocabulary (to know whether class 0 is a background class), and returns
probabilities of the same shape. A rule must be local (its output at a pixel depends only on
that pixel), so banded decoding equals whole-image decoding. Names read with ``band.map``
are declared in :attr:`DecodeRule.requires`.

A :class:`LabelRule` instead works on the finished label map of the whole image, once, after
the argmax and the threshold (CorrCLIP's map correction: each region takes its most frequent
label); it reads the image's :class:`~ovdense.structures.ImageContext`. Both kinds sit in the
decoder's ``rules`` list; pixel rules run first, band by band, label rules at the end.

A :class:`WindowRule` works on every window's class scores before the windows are stitched
(CLIP-DINOiser's FOUND background, which the official code applies to each window's
probabilities on the patch grid): it gets the scores ``[n_windows, Q, h, w]`` the head made
(the cosines, or the head's own ``window_logits``), the image's context (``context.extras[name]``
are the head's per-window maps, ``[n_windows, C, h', w']``) and the encoded vocabulary, and
returns scores of the same shape. It runs wherever the segmenter stitches logits for decoding
(``OVSegmenter.canvas_logits``).
"""
from __future__ import annotations

from typing import Any, Tuple

import torch

from ..structures import ContextBand
from ..text.vocabulary import Vocabulary


class DecodeRule:
    """Base class of decoder rules.

    Attributes:
        requires: names of provider outputs or head extras read with ``band.map(name)``.
    """

    requires: Tuple[str, ...] = ()

    def __call__(self, probs: torch.Tensor, band: ContextBand, vocabulary: Vocabulary) -> torch.Tensor:
        """``[C, h, W]`` probabilities of ``band`` -> ``[C, h, W]``."""
        raise NotImplementedError


class LabelRule:
    """Base class of rules on the whole label map (see the module doc).

    Attributes:
        requires: names of the providers the rule reads from the context.
        needs_scores: the rule also reads the whole image's class probabilities ``[C, H, W]``
            (the decoder's returned scores) and returns ``(labels, scores)``; the segmenter then
            keeps them for the whole image (Trident's SAM refinement rewrites both).
    """

    requires: Tuple[str, ...] = ()
    needs_scores: bool = False

    def __call__(self, labels: torch.Tensor, context: Any, vocabulary: Vocabulary, scores: Any = None) -> Any:
        """int64 labels ``[H, W]`` of the whole output of ``context`` -> ``[H, W]`` (with
        ``needs_scores``: also the probabilities ``scores`` -> ``(labels, scores)``)."""
        raise NotImplementedError


class WindowRule:
    """Base class of rules on the window scores, before stitching (see the module doc).

    Attributes:
        requires: names of the head extras (or window-scope provider outputs) the rule reads.
    """

    requires: Tuple[str, ...] = ()

    def __call__(self, scores: torch.Tensor, context: Any, vocabulary: Any) -> torch.Tensor:
        """``[n, Q, h, w]`` window scores of ``context`` -> ``[n, Q, h, w]`` (``vocabulary``: the
        :class:`~ovdense.structures.EncodedVocabulary` scored)."""
        raise NotImplementedError
