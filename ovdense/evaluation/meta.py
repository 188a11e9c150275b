"""Run metadata for result files: library versions, resolved config, atomic JSON writes."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["collect_versions", "config_to_dict", "write_json"]

_DISTRIBUTIONS = {
    "torch": "torch",
    "open_clip": "open_clip_torch",
    "numpy": "numpy",
    "pycocotools": "pycocotools",
    "mmengine": "mmengine",
}


def _version(dist_name: str) -> str | None:
    try:
        return md.version(dist_name)
    except md.PackageNotFoundError:
        return None


def collect_versions() -> dict[str, str | None]:
    """Versions of ovdense, torch, open_clip, numpy, pycocotools, mmengine and Python."""
    out: dict[str, str | None] = {k: _version(v) for k, v in _DISTRIBUTIONS.items()}
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


def _json_default(obj: Any) -> Any:
    """Fallback encoder: numpy scalars/arrays, paths, tuples; ``str`` for anything else."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path
