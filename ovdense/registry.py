"""The package's registries: one mmengine ``Registry`` per kind of pluggable stage.

Every pluggable stage is a class registered under a short name and built from a config
section ``dict(type=name, **kwargs)``; the keyword arguments go to the class's
constructor, so an unknown key fails there (``TypeError`` naming the class and the key).

===================  ===============================  ===========================================
registry             what it holds                    built from
===================  ===============================  ===========================================
``HEADS``            dense heads (last CLIP block)    ``head=dict(type='naclip', ...)``
``FEATURES``         auxiliary feature providers      ``features=dict(dino=dict(type=...))``
``REFINERS``         logit refiners                   ``refiners=[dict(type='pamr', ...)]``
``DECODE_RULES``     decoder rules (pixels, labels)   ``decode=dict(rules=[dict(type=...)])``
``PROPOSALS``        region / instance sources        ``Detector(seg, proposals=dict(type=...))``
``SCORERS``          region scorers (text vs region)  ``Detector(seg, scorer=dict(type=...))``
``CLASS_SELECTORS``  per-image class subsets          ``select_classes=dict(type='presence')``
===================  ===============================  ===========================================

Each registry knows the package that holds its entries (``locations``), so looking a name
up imports that package first: adding an entry is one file plus its ``@X.register_module``
line.

The registries hang under mmengine's root ``MODELS`` as mmseg's do: :data:`MODELS` is
ovdense's node there (scope ``ovdense``) and the seven kind registries are its children. A
name is unique across the kinds, so mmengine's ``MODELS.build(dict(type='ovdense.pamr'))``
(or ``type='pamr'`` under ``default_scope='ovdense'``, as a ``Runner`` config sets it)
builds the same class as ``build(REFINERS, 'pamr')``.

Training (``tools/train_head.py``, mmengine's ``Runner`` with ``default_scope='ovdense'``) adds four
nodes whose entries live in the application package ``ovdense.train`` (imported on first look-up,
never by the library): ``TRAINING_MODELS`` (a child of :data:`MODELS`: ``model=dict(type=
'DINOiserTrainer')``), ``DATASETS``, ``HOOKS`` and ``MODEL_WRAPPERS`` (children, scope ``ovdense``, of
mmengine's registries of those names; a name they lack falls back to mmengine's own, so
``CheckpointHook`` or ``default_collate`` still resolve).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable, List, Mapping, Optional

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry


class _OvdenseModels(Registry):
    """ovdense's node under mmengine's ``MODELS``: a name it does not hold itself is looked up
    in its kind registries (names are unique across them), so mmengine can build every entry."""

    def get(self, key: str) -> Optional[Any]:
        found = super().get(key)
        if found is not None:
            return found
        scope, name = self.split_scope_key(key)
        if scope not in (None, self.scope):
            return None
        for child in self.children.values():
            child.import_from_location()
            if name in child.module_dict:
                return child.module_dict[name]
        return None


MODELS = _OvdenseModels("model", parent=MMENGINE_MODELS, scope="ovdense")
HEADS = Registry("head", parent=MODELS, scope="ovdense_heads", locations=["ovdense.heads"])
FEATURES = Registry("feature provider", parent=MODELS, scope="ovdense_features", locations=["ovdense.features"])
REFINERS = Registry("refiner", parent=MODELS, scope="ovdense_refiners", locations=["ovdense.refine"])
DECODE_RULES = Registry("decode rule", parent=MODELS, scope="ovdense_rules", locations=["ovdense.rules"])
PROPOSALS = Registry("proposal source", parent=MODELS, scope="ovdense_proposals", locations=["ovdense.proposals"])
SCORERS = Registry("region scorer", parent=MODELS, scope="ovdense_scorers", locations=["ovdense.scorers"])
CLASS_SELECTORS = Registry("class selector", parent=MODELS, scope="ovdense_select", locations=["ovdense.select"])

# Training (``tools/train_head.py``): entries live in the application package ``ovdense.train``, which the
# library never imports; mmengine's Runner (``default_scope='ovdense'``) reaches them through these nodes.
TRAINING_MODELS = Registry("training model", parent=MODELS, scope="ovdense_training", locations=["ovdense.train"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="ovdense", locations=["ovdense.train"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="ovdense", locations=["ovdense.train"])
MODEL_WRAPPERS = Registry("model wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope="ovdense", locations=["ovdense.train"])

ALL_REGISTRIES = (HEADS, FEATURES, REFINERS, DECODE_RULES, PROPOSALS, SCORERS, CLASS_SELECTORS)


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
