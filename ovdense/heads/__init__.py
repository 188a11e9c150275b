"""Dense heads: one module per method, each registering itself in ``HEADS``.

Adding a head is one file here with ``@HEADS.register_module("name")``: this package
imports every module in it, and the registry imports this package on first use.
"""
from ..registry import HEADS, build, import_modules, names
from .base import Head

import_modules(__name__, __path__)


def list_heads():
    """Names of the registered heads."""
    return names(HEADS)


def build_head(spec, **kwargs) -> Head:
    """Build a head from a name, ``dict(type=name, ...)`` or return a Head instance."""
    return build(HEADS, spec, **kwargs)


__all__ = ["Head", "HEADS", "list_heads", "build_head"]
