"""Building the open_clip model behind a :class:`~ovdense.backbones.clip.CLIPBackbone`.

``pretrained`` is an open_clip tag (downloaded, or read from the local open_clip cache, with
the hub put offline for the load when it cannot be reached) or a local file (built as
:func:`~ovdense.backbones.weights_format.weights_file_format` decides). Weights that cannot
be had raise :class:`WeightsNotFoundError`.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch.nn as nn

from .diagnose import check_openai_architecture, check_state_dict, check_weights_file, explain_failures
from .weights_format import weights_file_format

logger = logging.getLogger(__name__)


class WeightsNotFoundError(FileNotFoundError):
    """Raised when CLIP weights are neither a local file nor obtainable offline."""


def _missing_weights_message(model_name: str, pretrained: str) -> str:
    return (
        f"could not load CLIP weights {pretrained!r} for model {model_name!r}: it is neither a local "
        f"file nor a tag whose weights are already in the local open_clip cache, and downloading "
        f"failed or is disabled (offline). Supply a local file instead: on the command line "
        f"--pretrained /path/to/{model_name}.pt, in Python pretrained='/path/to/{model_name}.pt' "
        f"(an OpenAI state dict or TorchScript archive loads exactly like pretrained='openai'; an "
        f"open_clip checkpoint loads with the named architecture), or run once with network access "
        f"to fill the cache (HF_HOME sets where it lives)."
    )


def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """One DNS lookup and TCP connect to the weights hub (``timeout`` seconds at most)."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _offline_unless_reachable() -> Iterator[None]:
    """Put huggingface_hub offline for one load when the hub cannot be reached.

    Cached weights still load; uncached ones fail at once instead of after about a minute of
    retries. A user's own ``HF_HUB_OFFLINE`` setting is left alone.
    """
    if "HF_HUB_OFFLINE" in os.environ or _hub_reachable():
        yield
        return
    import huggingface_hub.constants as hub_constants

    previous = hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        os.environ.pop("HF_HUB_OFFLINE", None)
        hub_constants.HF_HUB_OFFLINE = previous


def _load_local_weights(model_name: Optional[str], path: str, weights_format: str) -> Tuple[nn.Module, str]:
    """Build a local weights file as :func:`weights_file_format` decides; a file that is not a
    checkpoint of that model raises :class:`~ovdense.backbones.diagnose.WeightsFormatError`."""
    import open_clip

    check_weights_file(path)
    check_state_dict(path, None if weights_format == "openai" else model_name)
    fmt = weights_file_format(path, model_name, weights_format)
    logger.info("%s: %s; %s", path, fmt.reason, "QuickGELU" if fmt.quick_gelu else "GELU")
    if fmt.openai:
        # Same builder as open_clip's `openai` tag: architecture read from the weights,
        # QuickGELU, LayerNorm eps 1e-5. Like OpenAI's own `build_model` it rounds the
        # linear/attention weights to float16 (OpenAI's releases are float16 already).
        with explain_failures(path, model_name, openai_builder=True):
            model = open_clip.load_openai_model(path, precision="fp32", device="cpu")
        if model_name not in (None, "openai"):
            check_openai_architecture(path, model_name, model)
        return model, model_name or os.path.basename(path)
    if model_name is None:
        raise ValueError("clip_model is required for an open_clip-format checkpoint")
    with explain_failures(path, model_name, openai_builder=False):
        model = open_clip.create_model(model_name, pretrained=path, precision="fp32", device="cpu",
                                       force_quick_gelu=fmt.quick_gelu)
    return model, model_name


def load_open_clip_model(
    model_name: Optional[str],
    pretrained: Optional[str],
    weights_format: str,
) -> Tuple[nn.Module, str]:
    """Return ``(model, display_name)``, built in fp32 on CPU."""
    import open_clip

    if model_name is not None and model_name.endswith(".json"):
        if not os.path.isfile(model_name):
            raise FileNotFoundError(f"model config file not found: {model_name}")
        open_clip.add_model_config(model_name)
        model_name = os.path.splitext(os.path.basename(model_name))[0]
    if model_name is not None:
        model_name = model_name.replace("/", "-")

    if pretrained is not None and os.path.isfile(pretrained):
        return _load_local_weights(model_name, pretrained, weights_format)

    if pretrained is not None and (os.sep in pretrained
                                   or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
        raise WeightsNotFoundError(f"CLIP weights file not found: {pretrained}")
    if model_name is None:
        raise ValueError("clip_model is required unless pretrained is a local OpenAI-format file")
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r}; pass a built-in name (open_clip.list_models()) "
            f"or the path to a model-config .json"
        )
    if pretrained is None:
        return open_clip.create_model(model_name, pretrained=None, precision="fp32", device="cpu"), model_name

    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        raise WeightsNotFoundError(
            f"{pretrained!r} is neither a file nor a known open_clip tag for {model_name!r} "
            f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(model_name)) or 'none'})"
        )
    # open_clip 3.x builds the named architecture as is and only warns when the tag was
    # trained with QuickGELU (every `openai` tag); the reference methods load those weights
    # through the OpenAI builder, i.e. with QuickGELU. Follow the tag.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    try:
        with _offline_unless_reachable():
            model = open_clip.create_model(
                model_name, pretrained=pretrained, precision="fp32", device="cpu", force_quick_gelu=quick_gelu
            )
    except Exception as err:  # download failures surface as many exception types
        raise WeightsNotFoundError(_missing_weights_message(model_name, pretrained)) from err
    return model, model_name
