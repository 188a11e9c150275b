"""Run metadata for result files: library versions and the resolved config.

``write_json`` is :func:`ovdense.io.writers.write_json` (atomic), re-exported here.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import platform
from typing import Any

from ovdense.io.writers import write_json

__all__ = ["collect_versions", "config_to_dict", "write_json"]

#: Module -> the distributions that may install it (``mmengine-lite`` installs the ``mmengine``
#: module, which is what ovdense depends on).
_DISTRIBUTIONS = {
    "torch": ("torch",),
    "open_clip": ("open_clip_torch",),
    "numpy": ("numpy",),
    "pycocotools": ("pycocotools",),
    "mmengine": ("mmengine", "mmengine-lite"),
}


def _version(*dist_names: str) -> str | None:
    """The version of the first of ``dist_names`` that is installed (None: none is)."""
    for name in dist_names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def collect_versions() -> dict[str, str | None]:
    """Versions of ovdense, torch, open_clip, numpy, pycocotools, mmengine and Python."""
    out: dict[str, str | None] = {k: _version(*v) for k, v in _DISTRIBUTIONS.items()}
    try:
        import ovdense

        out["ovdense"] = getattr(ovdense, "__version__", None) or _version("ovdense")
    except Exception:  # noqa: BLE001 - the package may be half-written during development
        out["ovdense"] = _version("ovdense")
    out["python"] = platform.python_version()
    return out


def config_to_dict(config: Any) -> Any:
    """Plain-data view of a segmenter config (mmengine ``Config``, dataclass, dict or None)."""
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    return str(config)
