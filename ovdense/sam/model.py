"""Building a segment-anything ``Sam`` from local weights (nothing is downloaded).

``build_sam("vit_b", "/path/sam_vit_b_01ec64.pth")`` builds segment-anything's registry model
(``sam_model_registry``: the released ViT-B/L/H at 1024 px) and loads the file;
``build_sam(model_config="tests/fixtures/synth_sam/model.json", checkpoint=...)`` builds a
small model from its sizes (the tiny SAM fixture's format). ``checkpoint=None`` gives random
weights (tests).
"""
from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Mapping, Optional, Union

import torch

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


def _import_modeling():
    try:
        from segment_anything import modeling
    except ImportError as err:  # pragma: no cover - segment-anything is a dependency
        raise ImportError("SAM stages need segment-anything: pip install segment-anything") from err
    return modeling


def _from_config(cfg: Mapping[str, Any]) -> torch.nn.Module:
    """A ``Sam`` of the sizes in ``cfg`` (keys of the tiny SAM fixture's ``model.json``)."""
    m = _import_modeling()
    emb, dim = cfg["img_size"] // cfg["patch_size"], cfg["prompt_embed_dim"]
    return m.Sam(
        image_encoder=m.ImageEncoderViT(
            img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["encoder_embed_dim"],
            depth=cfg["encoder_depth"], num_heads=cfg["encoder_num_heads"], mlp_ratio=4.0,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=cfg["use_rel_pos"],
            rel_pos_zero_init=True, window_size=cfg["encoder_window_size"],
            global_attn_indexes=tuple(cfg["encoder_global_attn_indexes"]), out_chans=dim),
        prompt_encoder=m.PromptEncoder(
            embed_dim=dim, image_embedding_size=(emb, emb), input_image_size=(cfg["img_size"], cfg["img_size"]),
            mask_in_chans=cfg.get("mask_in_chans", 16)),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=cfg["decoder_depth"], embedding_dim=dim,
                                            mlp_dim=cfg["decoder_mlp_dim"], num_heads=cfg["decoder_num_heads"]),
            transformer_dim=dim, iou_head_depth=cfg["iou_head_depth"], iou_head_hidden_dim=cfg["iou_head_hidden_dim"]),
        pixel_mean=list(cfg.get("pixel_mean", (123.675, 116.28, 103.53))),
        pixel_std=list(cfg.get("pixel_std", (58.395, 57.12, 57.375))))


def _read_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SAM weights not found: {path}")
    from ..backbones.diagnose import check_weights_file

    check_weights_file(path)  # one line for HTML pages, LFS pointers, empty files
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one line
        raise ValueError(f"{path}: not a readable SAM checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # training checkpoints (SAM 2 style)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: not a SAM state dict (holds a {type(state).__name__})")
    return {k: v.float() for k, v in state.items()}


def build_sam(model_type: Optional[str] = "vit_b", checkpoint: Optional[Union[str, os.PathLike]] = None,
              model_config: Union[str, os.PathLike, Mapping[str, Any], None] = None,
              device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """A segment-anything ``Sam`` in eval mode with frozen weights.

    Args:
        model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"`` (segment-anything's registry;
            ignored when ``model_config`` is given).
        checkpoint: a local state dict (the released ``sam_vit_*.pth`` files, or the tiny
            fixture's); None: random weights.
        model_config: sizes of a small model: a dict or a JSON file (the tiny SAM fixture's
            ``model.json``).
        device: where the model lives.
    """
    if model_config is not None:
        cfg = model_config
        if not isinstance(cfg, Mapping):
            with open(os.fspath(cfg)) as f:
                cfg = json.load(f)
        sam = _from_config(cfg)
        what = f"SAM of {os.fspath(model_config) if not isinstance(model_config, Mapping) else 'the given sizes'}"
    else:
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"SAM model_type must be one of {list(SAM_MODEL_TYPES)}, got {model_type!r}")
        from segment_anything import sam_model_registry

        sam = sam_model_registry[model_type](checkpoint=None)
        what = f"SAM {model_type}"
    if checkpoint is not None:
        path = os.fspath(checkpoint)
        state = _read_state(path)
        try:
            missing, unexpected = sam.load_state_dict(state, strict=False)
        except RuntimeError as err:
            detail = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), str(err).strip())
            raise ValueError(f"{path}: does not fit {what} ({detail})") from None
        if missing or unexpected:
            raise ValueError(f"{path}: does not fit {what} (missing {list(missing)[:3]}, "
                             f"unexpected {list(unexpected)[:3]})")
    return sam.to(device).eval().requires_grad_(False)
