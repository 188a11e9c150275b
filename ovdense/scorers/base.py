"""The contract of a region scorer (registry ``SCORERS``).

A scorer classifies regions against the text of a vocabulary:
``scorer(detections, context, vocabulary, result=None) -> Detections``. It gets proposals
(class-agnostic, ``class_id == UNLABELLED``, or already classified), the image's
:class:`~ovdense.structures.ImageContext`, the call's
:class:`~ovdense.structures.EncodedVocabulary` and, when it sets
:attr:`RegionScorer.needs_result`, the semantic result. It returns the detections it keeps,
masks and boxes unchanged, with ``class_id``, ``class_name`` and ``confidence`` set; regions
whose best class is the background class (when the vocabulary has one) are dropped.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..structures import Detections


class RegionScorer:
    """Base class of region scorers.

    Attributes:
        needs_result: the scorer reads the semantic result (the caller makes one, with scores).
        requires: names of the feature providers the scorer reads from the context.
    """

    needs_result: bool = False
    requires: Tuple[str, ...] = ()

    def __call__(self, detections: Detections, context: Any, vocabulary: Any,
                 result: Optional[Any] = None) -> Detections:
        raise NotImplementedError
