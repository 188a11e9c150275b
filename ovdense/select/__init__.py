"""Per-image class selectors: one module per selector, each registering itself in ``CLASS_SELECTORS``.

A selector (``OVSegmenter(select_classes=dict(type=name, ...))``, off by default) keeps the
classes an image plausibly contains before decoding; see :mod:`ovdense.select.base`.
"""
from ..registry import CLASS_SELECTORS, import_modules
from .base import ClassSelector

import_modules(__name__, __path__)

__all__ = ["CLASS_SELECTORS", "ClassSelector"]
