"""Shared fixtures: tiny CLIP models built offline, golden outputs of the official code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
GOLDENS = FIXTURES / "goldens"
TINY_CONFIG = FIXTURES / "ovdense-tiny.json"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's text-embedding cache."""
    monkeypatch.setenv("OVDENSE_CACHE_DIR", str(tmp_path / "ovdense-cache"))


@pytest.fixture(scope="session")
def golden_inputs():
    return dict(np.load(GOLDENS / "inputs.npz"))


def golden(name: str):
    return dict(np.load(GOLDENS / f"{name}.npz"))


@pytest.fixture(scope="session")
def golden_backbone():
    """The official goldens' tiny OpenAI-format CLIP (QuickGELU), loaded like pretrained='openai'."""
    from ovdense import CLIPBackbone

    return CLIPBackbone.load(None, str(GOLDENS / "tiny_openai_clip.pt"))


@pytest.fixture(scope="session")
def tiny_backbone():
    """A random tiny open_clip model (64 px, patch 16, 3 layers) with the real BPE tokenizer."""
    from ovdense import CLIPBackbone

    torch.manual_seed(0)
    return CLIPBackbone.load(str(TINY_CONFIG), None)


def golden_names():
    return [["sky", "wall"], ["cat"], ["dog", "puppy"], ["car"], ["bird"]]
