"""Files shipped inside the package so that ``ovdense demo`` runs on a fresh machine offline.

* ``synth_clip/``: the tiny open_clip CLIP trained on the synthetic world (``synth-vit-tiny.json``
  model config, ``synth_clip.pt`` fp16 state dict, 7.4 MB; how it was trained:
  ``tests/fixtures/synth_clip/README.md`` in the repository, whose files these are copies of).
* ``synth_classes.txt``: that world's 9 class names with synonyms.
* ``images/``: four 192x192 held-out scenes of ``SyntheticWorld(192, seed=0)`` (indices
  1000004, 1000006, 1000012 and 1000017, never seen in training; picked among the first 30
  held-out scenes for showing several classes each).
"""
from __future__ import annotations

import os
from typing import List

ASSETS_DIR = os.path.dirname(os.path.abspath(__file__))


def asset_path(*parts: str) -> str:
    """Absolute path of a shipped file, e.g. ``asset_path("synth_clip", "synth_clip.pt")``."""
    path = os.path.join(ASSETS_DIR, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"shipped file missing from this installation: {path}")
    return path


def example_images() -> List[str]:
    """The shipped example images (sorted paths)."""
    folder = asset_path("images")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
