"""What a local CLIP weights file is, and so how to build it.

A file's format decides the builder and the activation, which the file itself often says:
a TorchScript archive or a state dict with OpenAI's extra entries is OpenAI's release
(QuickGELU, architecture from the file); a file whose SHA256 is that of a release open_clip
knows gets that release's activation; a plain state dict in CLIP's key layout is ambiguous
(OpenAI's QuickGELU weights and open_clip's GELU ones share key names) and builds the named
config, with one warning. :func:`weights_file_format` decides; ``weights_format=`` forces.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional

import torch

WEIGHTS_FORMATS = ("auto", "openai", "open_clip")

logger = logging.getLogger(__name__)

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
"""Entries of OpenAI's CLIP state dicts (TorchScript attributes) that open_clip models lack."""

_CLIP_LAYOUT_KEYS = ("visual.conv1.weight", "token_embedding.weight", "positional_embedding", "text_projection")
"""Keys of OpenAI CLIP's layout, which open_clip's built-in CLIP models share key for key."""


def is_torchscript(path: str) -> bool:
    """True for a TorchScript archive, the format of OpenAI's CLIP release files."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())


def torch_load_lazily(path: str) -> object:
    """``torch.load`` without reading the tensors where the file allows it (memory-mapped)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _checkpoint_keys(path: str) -> FrozenSet[str]:
    """The state-dict keys of a checkpoint file, unwrapped as open_clip's ``load_state_dict``
    does (a ``"state_dict"`` entry, a ``"module."`` prefix).

    Only the keys are read where the format allows (safetensors header, memory-mapped zip
    checkpoints). Empty for anything that is not a state dict loadable with
    ``weights_only=True``: the loader that runs next reports that problem in its own words.
    """
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                keys = [str(k) for k in f.keys()]
        else:
            ckpt = torch_load_lazily(path)
            if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
                ckpt = ckpt["state_dict"]
            keys = [k for k in ckpt if isinstance(k, str)] if isinstance(ckpt, dict) else []
    except Exception:  # unreadable or not a plain state dict: many exception types
        return frozenset()
    if keys and keys[0].startswith("module"):
        keys = [k[7:] for k in keys]
    return frozenset(keys)


def _sha256(path: str) -> str:
    """Hex SHA256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class _Release:
    """Published weights that open_clip knows by the SHA256 in their download URL."""

    model: str
    tag: str
    quick_gelu: bool
    openai: bool  # one of OpenAI's own files


def _url_sha256(url: str) -> str:
    """The SHA256 (or its prefix) a release URL carries, as open_clip's downloader reads it:
    the full hash as the parent folder of OpenAI's files, an 8-digit prefix ending the
    file name of open_clip's GitHub releases; empty when the URL carries none."""
    if "openaipublic" in url:
        digest = url.split("/")[-2]
    elif "mlfoundations" in url:
        digest = os.path.splitext(os.path.basename(url))[0].split("-")[-1]
    else:
        return ""
    digest = digest.lower()
    return digest if len(digest) >= 8 and all(c in "0123456789abcdef" for c in digest) else ""


@functools.lru_cache(maxsize=1)
def _known_releases() -> Dict[str, _Release]:
    """open_clip's pretrained weights whose URL carries their SHA256, keyed by that hash."""
    import open_clip

    table: Dict[str, _Release] = {}
    for model in open_clip.list_models():
        for tag in open_clip.list_pretrained_tags_by_model(model):
            cfg = open_clip.get_pretrained_cfg(model, tag)
            url = cfg.get("url", "") or ""
            digest = _url_sha256(url)
            if digest and digest not in table:
                table[digest] = _Release(model, tag, bool(cfg.get("quick_gelu", False)), "openaipublic" in url)
    return table


def _identify_release(path: str) -> Optional[_Release]:
    """The published release whose SHA256 the file has, if open_clip knows one."""
    releases = _known_releases()
    if not releases:
        return None
    digest = _sha256(path)
    return next((rel for prefix, rel in releases.items() if digest.startswith(prefix)), None)


@dataclass(frozen=True)
class WeightsFileFormat:
    """How a local weights file is built, and why.

    Attributes:
        openai: build with ``open_clip.load_openai_model`` (architecture read from the file,
            QuickGELU), otherwise with ``open_clip.create_model`` for the named architecture.
        quick_gelu: QuickGELU activation (always with ``openai``).
        reason: what decided it, for logs.
    """

    openai: bool
    quick_gelu: bool
    reason: str


def _config_quick_gelu(model_name: Optional[str]) -> bool:
    """True when the named open_clip config asks for QuickGELU (``-quickgelu`` names)."""
    import open_clip

    cfg = open_clip.get_model_config(model_name) if model_name else None
    return bool(cfg and cfg.get("quick_gelu", False))


def _ambiguous_activation_message(path: str, model_name: str) -> str:
    import open_clip

    quick_name = f"{model_name}-quickgelu"
    hint = f"clip_model={quick_name!r}" if quick_name in open_clip.list_models() else "a '-quickgelu' model config"
    return (
        f"{path}: CLIP state dict whose keys fit both OpenAI weights (QuickGELU) and open_clip weights (GELU); "
        f"building {model_name!r} with GELU as its open_clip config says. For OpenAI CLIP weights pass "
        f"weights_format='openai' or {hint}; pass weights_format='open_clip' to confirm GELU and silence this."
    )


def weights_file_format(path: str, model_name: Optional[str], weights_format: str) -> WeightsFileFormat:
    """Decide how to build a local weights file, from the file first.

    With ``weights_format="auto"``, in order:

    1. a TorchScript archive (OpenAI's release format), or a state dict carrying OpenAI's
       ``input_resolution`` / ``context_length`` / ``vocab_size`` entries, is OpenAI's:
       QuickGELU, architecture read from the file, whatever ``model_name`` says;
    2. ``model_name`` None (or ``"openai"``) states an OpenAI-format file: the same;
    3. a model config asking for QuickGELU (``ViT-B-16-quickgelu``) gets it;
    4. a file without CLIP's key layout cannot be OpenAI's: the named config as is;
    5. a file whose SHA256 is that of a release open_clip knows (the hashes in its
       ``openai`` and GitHub-release URLs) gets that release's activation;
    6. otherwise nothing in the file tells QuickGELU from GELU (open_clip's own GELU
       checkpoints use OpenAI's key names): the named config's activation, GELU for the
       plain names, with one warning that says how to force the other.
    """
    if weights_format == "openai":
        return WeightsFileFormat(True, True, "weights_format='openai'")
    if weights_format == "open_clip":
        return WeightsFileFormat(False, _config_quick_gelu(model_name), "weights_format='open_clip'")
    if is_torchscript(path):
        return WeightsFileFormat(True, True, "TorchScript archive, the format of OpenAI's releases")
    keys = _checkpoint_keys(path)
    if keys.intersection(OPENAI_EXTRA_KEYS):
        return WeightsFileFormat(True, True, "state dict with OpenAI's input_resolution/context_length/vocab_size")
    if model_name in (None, "openai"):
        return WeightsFileFormat(True, True, "clip_model=None: an OpenAI-format file")
    if _config_quick_gelu(model_name):
        return WeightsFileFormat(False, True, f"model config {model_name!r} asks for QuickGELU")
    if not keys.issuperset(_CLIP_LAYOUT_KEYS):
        return WeightsFileFormat(False, False, "not in OpenAI CLIP's key layout: the named config")
    release = _identify_release(path)
    if release is not None:
        return WeightsFileFormat(release.openai, release.quick_gelu,
                                  f"SHA256 of the published weights {release.model}/{release.tag}")
    logger.warning(_ambiguous_activation_message(path, model_name))
    return WeightsFileFormat(False, False, "undecidable from the file: the named config (GELU)")
