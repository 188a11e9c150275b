"""Region and instance proposal sources: one module each, registered in ``PROPOSALS``."""
from __future__ import annotations

from typing import Any

from ..registry import PROPOSALS, build, import_modules, names
from ..structures import Detections
from .base import ProposalSource

import_modules(__name__, __path__)


def list_proposal_sources():
    return names(PROPOSALS)


def build_instances(result: Any, strategy: str = "connected_components", **options: Any) -> Detections:
    """Instances of a semantic result with a proposal source that reads only the result
    (``strategy``, built with ``options``); the :class:`~ovdense.detector.Detector` runs any source."""
    return build(PROPOSALS, dict(type=strategy, **options))(None, None, result=result)


__all__ = ["PROPOSALS", "ProposalSource", "build_instances", "list_proposal_sources"]
