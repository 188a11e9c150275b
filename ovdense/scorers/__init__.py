"""Region scorers: one module per scorer, each registering itself in ``SCORERS``."""
from ..registry import SCORERS, import_modules
from .base import RegionScorer

import_modules(__name__, __path__)

__all__ = ["SCORERS", "RegionScorer"]
