"""Auxiliary feature providers (DINO-style backbones, ...): one module each, registered in ``FEATURES``."""
from ..registry import FEATURES, import_modules
from .base import FeatureProvider

import_modules(__name__, __path__)

__all__ = ["FEATURES", "FeatureProvider"]
