"""The package's registries: one mmengine ``Registry`` per kind of pluggable stage.

Every pluggable stage is a class registered under a short name and built from a config
section ``dict(type=name, **kwargs)``; the keyword arguments go to the class's
constructor, so an unknown key fails there (``TypeError`` naming the class and the key).

=============  ===========================  ==========================================
registry       what it holds                 built from
=============  ===========================  ==========================================
``HEADS``      dense heads (last CLIP block) ``head=dict(type='naclip', ...)``
``FEATURES``   auxiliary feature providers   ``features=dict(dino=dict(type=...))``
``REFINERS``   logit refiners                ``refiners=[dict(type='pamr', ...)]``
``PROPOSALS``  region / instance sources     ``dict(type='connected_components')``
=============  ===========================  ==========================================

Each registry knows the package that holds its entries (``locations``), so looking a name
up imports that package first: adding an entry is one file plus its ``@X.register_module``
line. mmengine's Runner can build these registries' entries as well (``scope='ovdense'``).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable, List, Mapping

from mmengine.registry import Registry

HEADS = Registry("head", scope="ovdense", locations=["ovdense.heads"])
FEATURES = Registry("feature provider", scope="ovdense", locations=["ovdense.features"])
REFINERS = Registry("refiner", scope="ovdense", locations=["ovdense.refine"])
PROPOSALS = Registry("proposal source", scope="ovdense", locations=["ovdense.proposals"])

ALL_REGISTRIES = (HEADS, FEATURES, REFINERS, PROPOSALS)


def names(registry: Registry) -> List[str]:
    """Sorted names registered in ``registry`` (its package imported first)."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def get(registry: Registry, name: str) -> Any:
    """The class registered as ``name``; a KeyError lists the available names."""
    registry.import_from_location()
    if name not in registry.module_dict:
        raise KeyError(f"unknown {registry.name} {name!r}; available: {', '.join(names(registry)) or 'none'}")
    return registry.module_dict[name]


def build(registry: Registry, spec: Any, **defaults: Any) -> Any:
    """Build from a name, a ``dict(type=name, **kwargs)``, or return a built object as is.

    ``defaults`` are keyword arguments the spec's own keys override.
    """
    if isinstance(spec, str):
        return get(registry, spec)(**defaults)
    if isinstance(spec, Mapping):
        kwargs = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in dict(spec).items()}
        if "type" not in kwargs:
            raise KeyError(f"a {registry.name} spec needs a 'type' key, got {sorted(kwargs)}")
        cls = get(registry, kwargs.pop("type"))
        try:
            return cls(**{**defaults, **kwargs})
        except TypeError as err:
            raise TypeError(f"{registry.name} {cls.__name__}: {err}") from None
    return spec


def import_modules(package: str, path: Iterable[str], skip: Iterable[str] = ("base",)) -> None:
    """Import every module of ``package`` (its ``__path__``) so their registrations run."""
    for mod in pkgutil.iter_modules(path):
        if mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")
