"""Why a CLIP weights file does not build the model asked for, in one line.

Before anything is built, :func:`check_weights_file` reads a file's first bytes and refuses
what cannot be a checkpoint (an empty file, an HTML page saved in place of the weights, a Git
LFS pointer, a cut-short zip archive, ...), then :func:`check_state_dict` reads its tensor
shapes and refuses what is not a state dict, not a CLIP ViT, or a CLIP ViT of another width,
depth or patch size than the one asked for. When a builder fails all the same,
:func:`explain_failures` says what in the file it failed on. Each raises
:class:`WeightsFormatError`, whose one-line message names the file.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import zipfile
from contextlib import contextmanager
from typing import Dict, Iterator, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn

from .weights_format import OPENAI_EXTRA_KEYS, is_torchscript, torch_load_lazily


class WeightsFormatError(ValueError):
    """Raised when a local weights file is not a checkpoint of the CLIP asked for: not a
    checkpoint at all (an HTML page, an empty file, ...), not a CLIP, or a CLIP of another
    architecture. The message is one line that names the file and says what it is."""


# ------------------------------------------------------------------ architectures
def _describe_image_size(size: Union[int, Tuple[int, int], list]) -> str:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return f"{h} px" if h == w else f"{h}x{w} px"


class _ViT(NamedTuple):
    """A ViT vision tower's shape, as a config names it or a state dict's tensors hold it."""

    width: int
    layers: int
    patch: int
    image_size: Union[Tuple[int, int], str]  # (h, w) px, or a description of a non-square grid

    @classmethod
    def of(cls, width: int, layers: int, patch: int, image_size: Union[int, Tuple[int, int], list]) -> "_ViT":
        size = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
        return cls(int(width), int(layers), int(patch), size)

    def __str__(self) -> str:
        size = self.image_size if isinstance(self.image_size, str) else _describe_image_size(self.image_size)
        return f"ViT width {self.width}, {self.layers} layers, patch {self.patch}, {size}"

    def same_tower(self, other: "_ViT") -> bool:
        """Equal but for the image size (open_clip resizes the positional embedding)."""
        return self[:3] == other[:3]


def _model_vision_architecture(model: nn.Module) -> str:
    """``"ViT width W, L layers, patch P, S px"`` of a built model's vision tower."""
    v = model.visual
    if not hasattr(v, "transformer") or not hasattr(v, "conv1"):
        return f"non-ViT vision tower ({type(v).__name__})"
    return str(_ViT.of(v.conv1.out_channels, len(v.transformer.resblocks), v.conv1.kernel_size[0], v.image_size))


def _config_vision(model_name: str) -> Union[_ViT, str, None]:
    """The vision tower an open_clip model config names: a :class:`_ViT`, a description of
    another kind of tower, or None for names open_clip lacks."""
    import open_clip
    from open_clip.model import CLIPVisionCfg

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        return None
    vision = CLIPVisionCfg(**cfg.get("vision_cfg", {}))
    if vision.timm_model_name:
        return f"timm vision tower {vision.timm_model_name!r}"
    if not isinstance(vision.layers, int):
        return f"ResNet vision tower {tuple(vision.layers)}"
    return _ViT.of(vision.width, vision.layers, vision.patch_size, vision.image_size)


def _config_vision_architecture(model_name: str) -> Optional[str]:
    """:func:`_model_vision_architecture` for an open_clip model config; None for names open_clip lacks."""
    vision = _config_vision(model_name)
    return None if vision is None else str(vision)


def _state_dict_vision(shapes: Dict[str, Tuple[int, ...]]) -> Union[_ViT, str, None]:
    """The vision tower a CLIP state dict holds, read from its tensor shapes: a :class:`_ViT`,
    a description of another kind of CLIP tower, or None when it is no CLIP vision tower."""
    conv1 = shapes.get("visual.conv1.weight")
    pos = shapes.get("visual.positional_embedding")
    if "visual.layer1.0.conv1.weight" in shapes:
        return "ResNet vision tower (the dense heads need a ViT)"
    if conv1 is None or pos is None or len(conv1) != 4 or len(pos) != 2:
        return None
    blocks = {int(m.group(1)) for k in shapes for m in [re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k)] if m}
    layers = max(blocks) + 1 if blocks else 0
    patch, positions = conv1[-1], pos[0] - 1
    side = int(round(positions ** 0.5))
    if side * side != positions:
        return _ViT(int(conv1[0]), layers, int(patch), f"{positions} positions (not a square grid)")
    return _ViT.of(conv1[0], layers, patch, side * patch)


def check_state_dict(path: str, model_name: Optional[str]) -> None:
    """Before anything is built: raise when the file, read as a state dict, cannot build a CLIP
    ViT, or not ``model_name``'s: not a state dict, no CLIP ViT in it, or a ViT of another
    width, depth or patch size (open_clip would fail on each, on float16 weights of another
    patch size with an unrelated interpolation error). The image size is not compared:
    open_clip resizes the positional embedding. ``model_name`` None (OpenAI's builder, which
    reads the architecture from the file) and files with OpenAI's entries are compared with the
    name once built (:func:`check_openai_architecture`). Left to the builder, whose failure
    :func:`explain_failures` explains: TorchScript archives, files torch cannot read, and
    names of other vision towers (timm, ResNet)."""
    expected = _config_vision(model_name) if model_name not in (None, "openai") else None
    if (model_name not in (None, "openai") and not isinstance(expected, _ViT)) or is_torchscript(path):
        return
    try:
        tensors = _tensor_shapes(path)
    except Exception:  # noqa: BLE001 - torch.load fails with many exception types
        return
    if not isinstance(tensors, str) and tensors.keys() & set(OPENAI_EXTRA_KEYS):
        expected = None
    message = _state_dict_problem(path, tensors, model_name, expected)
    if message is not None:
        raise WeightsFormatError(message)


def _state_dict_problem(path: str, tensors: Union[Dict[str, Tuple[Tuple[int, ...], str]], str],
                        model_name: Optional[str], expected: Union[_ViT, str, None]) -> Optional[str]:
    """Why the tensors read from ``path`` (:func:`_tensor_shapes`) are not a CLIP ViT, or not
    the one ``expected``; None when nothing here says so."""
    if isinstance(tensors, str):
        return f"{path} is not a CLIP checkpoint: {tensors}"
    found = _state_dict_vision({k: shape for k, (shape, _) in tensors.items()})
    if found is None:
        keys = ", ".join(repr(k) for k in list(tensors)[:3]) + (", ..." if len(tensors) > 3 else "")
        return (f"{path} is not a CLIP ViT checkpoint: a state dict of {len(tensors)} entries without CLIP's "
                f"vision-tower tensors (visual.conv1.weight, visual.positional_embedding); its keys: {keys}")
    if isinstance(found, str):
        return f"{path} holds a CLIP with a {found}"
    if expected is not None and (isinstance(expected, str) or not found.same_tower(expected)):
        return (f"{path} holds a CLIP state dict ({found}) but clip_model={model_name!r} is a {expected}; "
                f"pass the model name or config .json of the file's architecture")
    return None


def check_openai_architecture(path: str, model_name: str, model: nn.Module) -> None:
    """Raise when ``model_name`` names another architecture than the OpenAI file holds."""
    expected = _config_vision_architecture(model_name)
    found = _model_vision_architecture(model)
    if expected is not None and expected != found:
        raise WeightsFormatError(
            f"{path} holds an OpenAI-format CLIP ({found}) but clip_model={model_name!r} is a {expected}; "
            f"pass the matching model name, or clip_model=None to take the architecture from the file"
        )


# ------------------------------------------------------------------ files that are no checkpoint
_HEAD_BYTES = 4096


def check_weights_file(path: str) -> None:
    """Raise :class:`WeightsFormatError` when the file cannot be a checkpoint at all, judged from
    its size and first bytes (and a zip archive's table of contents); nothing is unpickled."""
    what = _not_a_checkpoint(path)
    if what is not None:
        raise WeightsFormatError(f"{path} is not a CLIP checkpoint: {what}")


def _not_a_checkpoint(path: str) -> Optional[str]:
    size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".npz", ".npy"):  # big_vision weights, which open_clip reads with numpy
        return None
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file (unpack it first)"
    if suffix == ".safetensors":
        return None if _safetensors_header_ok(path, head, size) else "not a safetensors file (no valid header)"
    if head.startswith(b"PK"):
        return _zip_problem(path)
    if not head.startswith(b"\x80"):  # every pickle torch.save writes opens with the PROTO opcode
        if _safetensors_header_ok(path, head, size):
            return "a safetensors file under another name (open_clip reads safetensors by the .safetensors suffix)"
        return (f"neither a zip archive nor a pickle, the formats torch.save writes "
                f"(it starts with bytes {head[:8].hex(' ')})")
    return None


def _as_text(head: bytes) -> Optional[str]:
    """The start of the file as text, or None for binary data."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff")
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    return text


def _describe_text(text: str) -> str:
    start = text.lstrip()
    lowered = start[:2048].lower()
    if (lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered or "<head" in lowered
            or "<body" in lowered):
        return ("it looks like an HTML page (a web page saved in place of the file it links to; "
                "download the file itself)")
    if start.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the weights it stands for (fetch them: git lfs pull)"
    if start.startswith("<"):
        return "it looks like an XML document (a server's error reply?)"
    if start.startswith(("{", "[")):
        hint = (" (a model config? pass it as clip_model, --clip-model on the command line)"
                if "vision_cfg" in start else "")
        return f"a JSON file{hint}"
    if not start:
        return "a text file of blank space"
    first = start.splitlines()[0][:40]
    return f"a text file (it starts {first!r})"


def _safetensors_header_ok(path: str, head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian length, then that many bytes of JSON object."""
    if size < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    if length < 2 or 8 + length > size or length > 100 << 20:
        return False
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(length)
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _zip_problem(path: str) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a damaged or cut short zip archive (an interrupted download?)"
    if any(name.endswith(("data.pkl", "constants.pkl")) for name in names):
        return None  # torch.save's format, or a TorchScript archive
    return "a zip archive that is not a torch checkpoint (no data.pkl inside)"


# ------------------------------------------------------------------ torch files that do not fit
@contextmanager
def explain_failures(path: str, model_name: Optional[str], openai_builder: bool) -> Iterator[None]:
    """Turn a builder's failure on ``path`` into a :class:`WeightsFormatError` where the file
    explains it (:func:`explain_load_failure`); other failures propagate unchanged."""
    try:
        yield
    except Exception as err:  # builders fail with many exception types
        message = explain_load_failure(path, model_name, openai_builder, err)
        if message is None:
            raise
        raise WeightsFormatError(message) from err


def explain_load_failure(path: str, model_name: Optional[str], openai_builder: bool,
                         err: BaseException) -> Optional[str]:
    """One line saying why ``path`` did not build ``model_name`` (with OpenAI's builder when
    ``openai_builder``), read from the file; None when the file does not explain ``err``."""
    try:
        return _explain(path, model_name, openai_builder, err)
    except Exception:  # the explanation is a courtesy: never hide the builder's own error
        return None


def _explain(path: str, model_name: Optional[str], openai_builder: bool, err: BaseException) -> Optional[str]:
    if isinstance(err, MemoryError) or "memory" in str(err).lower():  # the machine's limits, not the file
        return None
    try:
        tensors = _tensor_shapes(path)
    except Exception as read_err:  # noqa: BLE001 - torch.load fails with many exception types
        return f"{path} is not a CLIP checkpoint: {_torch_read_reason(read_err)}"
    expected = None if openai_builder or not model_name else _config_vision(model_name)
    problem = _state_dict_problem(path, tensors, model_name, expected)
    if problem is not None:
        return problem
    found = _state_dict_vision({k: shape for k, (shape, _) in tensors.items()})
    if openai_builder:
        return (f"{path} holds a CLIP state dict ({found}) that OpenAI's builder cannot build "
                f"({_short(err)}); name its open_clip architecture: clip_model='<model name or config .json>' "
                f"(--clip-model on the command line)")
    if expected is None:
        return None
    dtype = tensors["visual.positional_embedding"][1]
    if found != expected and dtype in ("torch.float16", "torch.bfloat16"):
        return (f"{path} holds a CLIP state dict ({found}) for clip_model={model_name!r} ({expected}): the same "
                f"tower at another image size, whose {dtype[6:]} positional embedding open_clip cannot resize "
                f"on CPU; pass a model config with the file's image size, or save the weights in float32")
    if not isinstance(err, (AssertionError, KeyError)) and "state_dict" not in str(err):
        return None  # not a failure to load the tensors
    return (f"{path} holds a CLIP state dict whose vision tower fits clip_model={model_name!r} ({found}) but whose "
            f"other tensors do not: {_short(err)}")


def _tensor_shapes(path: str) -> Union[Dict[str, Tuple[Tuple[int, ...], str]], str]:
    """``{key: (shape, dtype)}`` of the state dict in ``path`` (unwrapped as open_clip does:
    a ``"state_dict"`` entry, a ``"module."`` prefix; plain numbers, like OpenAI's
    ``input_resolution``, as shape ``()``), or a sentence saying why it holds none."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            entries = {k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys()}
        return {k: (shape, _safetensors_dtype(dtype)) for k, (shape, dtype) in entries.items()}
    if is_torchscript(path):
        ckpt = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        ckpt = torch_load_lazily(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        return f"not a state dict (the torch file holds a {type(ckpt).__name__})"
    if not any(isinstance(v, torch.Tensor) for v in ckpt.values()):
        keys = ", ".join(repr(k) for k in list(ckpt)[:3])
        return f"not a state dict (a dict without tensors; its keys: {keys or 'none'})"
    entries = {k: (tuple(v.shape), str(v.dtype)) if isinstance(v, torch.Tensor) else ((), type(v).__name__)
               for k, v in ckpt.items() if isinstance(k, str) and isinstance(v, (torch.Tensor, int, float))}
    if entries and next(iter(entries)).startswith("module."):
        entries = {k[len("module."):]: v for k, v in entries.items()}
    return entries


def _safetensors_dtype(name: str) -> str:
    return {"F16": "torch.float16", "BF16": "torch.bfloat16", "F32": "torch.float32"}.get(name, name)


def _torch_read_reason(err: BaseException) -> str:
    """Why torch.load failed, without torch's advice (which for ``weights_only`` is to load
    the file unsafely)."""
    if isinstance(err, EOFError):
        return "torch cannot read it: it ends too early (cut short?)"
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n")[0]
    reason = _short(text.split(". ")[0])
    if reason.startswith("Unsupported global"):
        return (f"it holds pickled objects besides tensors, which torch will not load safely ({reason}); "
                f"if it is a training checkpoint, save its model's state_dict() alone")
    if "EOF" in reason:
        reason += ": cut short?"
    return f"torch cannot read it ({reason})"


def _short(err: Union[BaseException, str], limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
