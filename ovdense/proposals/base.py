"""The contract of a proposal source (registry ``PROPOSALS``).

A proposal source finds regions of one image: ``source(context, vocabulary, result=None)
-> Detections``. It reads what it needs and nothing more:

* ``context``: the image's :class:`~ovdense.structures.ImageContext` (the uint8 image, the
  canvas features, providers' outputs such as a SAM image embedding via
  ``context.feature_map(name)``; names declared in :attr:`ProposalSource.requires`);
* ``vocabulary``: the :class:`~ovdense.structures.EncodedVocabulary` of the call (for
  sources that prompt with text);
* ``result``: the semantic :class:`~ovdense.structures.SegmentationResult` of the image, made
  only for sources that set :attr:`ProposalSource.needs_result` (connected components of
  the label map).

Its detections hold boolean masks at the output size (``result.label_map``'s size, else
the input image's), ``xyxy`` boxes that bound them, confidences, and class ids into the
vocabulary, or :data:`~ovdense.structures.UNLABELLED` for class-agnostic regions that a
region scorer (registry ``SCORERS``) classifies afterwards. A background class (when the
vocabulary has one) is never a detection.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..structures import Detections


class ProposalSource:
    """Base class of proposal sources.

    Attributes:
        needs_result: the source reads the semantic result (the caller makes one, with scores).
        requires: names of the feature providers the source reads from the context.
    """

    needs_result: bool = False
    requires: Tuple[str, ...] = ()

    def __call__(self, context: Any, vocabulary: Any = None, result: Optional[Any] = None) -> Detections:
        raise NotImplementedError
