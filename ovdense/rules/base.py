"""The contract of a decoder rule (config ``decode=dict(rules=[dict(type=name, ...)])``).

A rule changes class probabilities pixel by pixel after the decoder's softmax and synonym
max, before the area rule, the threshold and the argmax. It gets the band's probabilities
``[C, h, W]``, the band of the image's context (:class:`~ovdense.structures.ContextBand`:
``band.map(name)`` reads a head extra such as a background map, or a provider's output) and
the vocabulary (to know whether class 0 is a background class), and returns
probabilities of the same shape. A rule must be local (its output at a pixel depends only on
that pixel), so banded decoding equals whole-image decoding. Names read with ``band.map``
are declared in :attr:`DecodeRule.requires`.
"""
from __future__ import annotations

from typing import Tuple

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
