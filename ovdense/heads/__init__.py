"""Dense heads; every module in this package registers itself in ``HEADS``."""
import importlib
import pkgutil

from ..registry import HEADS
from .base import Head

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")


def list_heads():
    """Names of the registered heads."""
    return HEADS.names()


def build_head(spec, **kwargs) -> Head:
    """Build a head from a name, ``dict(type=name, ...)`` or return a Head instance."""
    return HEADS.build(spec, **kwargs)


__all__ = ["Head", "HEADS", "list_heads", "build_head"]
