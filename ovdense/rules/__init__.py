"""Decoder rules: one module per rule, each registering itself in ``DECODE_RULES``."""
from ..registry import DECODE_RULES, import_modules
from .base import DecodeRule, LabelRule, WindowRule

import_modules(__name__, __path__)

__all__ = ["DECODE_RULES", "DecodeRule", "LabelRule", "WindowRule"]
