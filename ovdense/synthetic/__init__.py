"""Synthetic world for offline end-to-end tests (see :mod:`ovdense.synthetic.world`)."""
from .world import CLASS_NAMES, STUFF_IDS, THING_IDS, Scene, SyntheticWorld, caption_for

__all__ = ["SyntheticWorld", "Scene", "CLASS_NAMES", "STUFF_IDS", "THING_IDS", "caption_for"]
