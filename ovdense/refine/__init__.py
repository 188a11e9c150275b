"""Logit refiners: one module per method, each registering itself in ``REFINERS``."""
from ..registry import import_modules
from .base import Refiner
from .pamr import pamr, pamr_stacked

import_modules(__name__, __path__)

__all__ = ["Refiner", "pamr", "pamr_stacked"]
