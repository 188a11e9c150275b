"""Synthetic worlds for offline end-to-end tests.

* :mod:`ovdense.synthetic.world`: v1, small square scenes (the tiny CLIP fixture's world).
* :mod:`ovdense.synthetic.world_v2`: v2, 160 x 224 scenes with occlusion, repeated classes,
  thin and small objects, four stuff classes and held-out novel compositions.
"""
from .world import CLASS_NAMES, STUFF_IDS, THING_IDS, Scene, SyntheticWorld, caption_for
from .world_v2 import InstanceV2, SceneV2, WorldV2, caption_for_v2

__all__ = ["SyntheticWorld", "Scene", "CLASS_NAMES", "STUFF_IDS", "THING_IDS", "caption_for",
           "WorldV2", "SceneV2", "InstanceV2", "caption_for_v2"]
