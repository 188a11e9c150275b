"""The contract of a proposal source (registry ``PROPOSALS``).

A proposal source turns a semantic result (``label_map``, ``class_names``,
``has_background``, optional ``scores``) into :class:`~ovdense.structures.Detections`:
boolean masks, ``xyxy`` boxes that bound them, confidences and class ids. Sources that
need the image or its features (SAM masks scored against text) take them as extra
keyword arguments.
"""
from __future__ import annotations

from typing import Any

from ..structures import Detections


class ProposalSource:
    """Base class of proposal sources."""

    def __call__(self, result: Any) -> Detections:
        raise NotImplementedError
