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


#: The tiny CLIP of the golden (tools/make_corrclip_golden.py VISION / TEXT / EMBED_DIM).
TINY_CLIP = {"embed_dim": 64, "quick_gelu": True,
             "vision_cfg": {"image_size": 112, "layers": 12, "width": 32, "patch_size": 16, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="session")
def corrclip_backbone(tmp_path_factory):
    """The CorrCLIP golden's tiny 12-block CLIP (QuickGELU), shared by the OV-Stitcher golden."""
    import json

    from ovdense import CLIPBackbone

    config = tmp_path_factory.mktemp("corrclip") / "tiny.json"
    config.write_text(json.dumps(TINY_CLIP))
    backbone = CLIPBackbone.load(str(config), None)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in np.load(GOLDENS / "corrclip_tiny_clip.npz").items()}
    backbone.model.visual.load_state_dict(state)
    return backbone
