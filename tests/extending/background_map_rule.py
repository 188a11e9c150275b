"""Exercise 3: a decoder rule that reads a head's extra map.

Where the head's ``background`` map (``band.map("background")``, in [0, 1]) exceeds
``threshold``, every class probability is set to 0 and, with a background class, class 0's to
1: those pixels become background (or UNLABELLED without a background class).
"""
from __future__ import annotations

import torch

from ovdense.registry import DECODE_RULES
from ovdense.rules.base import DecodeRule


@DECODE_RULES.register_module("test_background_map")
class BackgroundMapRule(DecodeRule):
    requires = ("background",)

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def __call__(self, probs: torch.Tensor, band, vocabulary) -> torch.Tensor:
        is_background = band.map("background")[0] > self.threshold
        out = probs.masked_fill(is_background[None], 0.0)
        if vocabulary.has_background:
            out[0] = torch.where(is_background, torch.ones_like(out[0]), out[0])
        return out
