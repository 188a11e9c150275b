"""mmengine Python configs -> :class:`OVSegmenter`.

A config has three parts (see ``configs/``)::

    model = dict(clip_model='ViT-B-16', pretrained='openai', head=dict(type='naclip'))
    protocol = dict(short_side=336, slide_crop=224, slide_stride=112, logit_scale=40.0, ...)
    classes = dict(names='names/cls_voc21.txt', background='first')  # relative to the config
    dataset_type = 'voc21'                                           # optional, for evaluation

mmengine is used only to parse, merge (``_base_``) and dump configs.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

MODEL_KEYS = ("clip_model", "pretrained", "head", "weights_format", "pos_interp")
PROTOCOL_KEYS = ("short_side", "image_scale", "slide_crop", "slide_stride", "pad_to", "logit_scale",
                 "background_threshold", "area_threshold", "renormalize", "pamr_steps", "pamr_dilations",
                 "templates", "mean", "std")
RUNTIME_KEYS = ("device", "dtype", "batch_size", "text_cache_dir", "backbone")


def load_config(config: Union[str, os.PathLike, Mapping[str, Any]]):
    """Read a config file (or wrap a dict) as an ``mmengine.Config``."""
    from mmengine.config import Config

    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config(dict(config))
    path = os.fspath(config)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    return Config.fromfile(path)


def resolve_names_path(names: Any, cfg) -> Any:
    """Name-file paths in a config are relative to the config file's folder."""
    if not isinstance(names, str) or os.path.isabs(names) or not names.endswith(".txt"):
        return names
    filename = getattr(cfg, "filename", None)
    if filename:
        candidate = os.path.join(os.path.dirname(os.path.abspath(filename)), names)
        if os.path.isfile(candidate):
            return candidate
    return names


def segmenter_kwargs(cfg) -> Dict[str, Any]:
    """The OVSegmenter keyword arguments a config describes."""
    kwargs: Dict[str, Any] = {}
    for section, keys in (("model", MODEL_KEYS), ("protocol", PROTOCOL_KEYS), ("runtime", RUNTIME_KEYS)):
        part = cfg.get(section) or {}
        unknown = set(part) - set(keys)
        if unknown:
            raise KeyError(f"unknown keys in config section {section!r}: {sorted(unknown)}")
        for key, value in part.items():
            kwargs[key] = value.to_dict() if hasattr(value, "to_dict") else value
    for key in ("pamr_dilations", "image_scale", "mean", "std"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def segmenter_from_config(config, classes: Optional[Any] = None, background: Optional[Any] = None,
                          **overrides: Any):
    """Build an OVSegmenter from a config, apply keyword overrides, and set the config's classes.

    ``classes``/``background`` override the config's ``classes`` section.
    """
    from .predictor import OVSegmenter

    cfg = load_config(config)
    kwargs = segmenter_kwargs(cfg)
    kwargs.update(overrides)
    seg = OVSegmenter(**kwargs)
    spec = cfg.get("classes") or {}
    names = classes if classes is not None else resolve_names_path(spec.get("names"), cfg)
    if classes is None:
        background = spec.get("background") if background is None else background
    if names is not None:
        seg.set_classes(names, background=background)
    seg.config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return seg
