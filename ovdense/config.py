"""mmengine Python configs -> :class:`OVSegmenter`.

A config is the segmenter's constructor, one section per stage (see ``configs/``)::

    backbone = dict(clip_model='ViT-B-16', pretrained='openai', pos_interp='scale_factor')
    head = dict(type='naclip', gaussian_std=5.0)
    preprocess = dict(short_side=336)
    windows = dict(crop=224, stride=112, pad_to=0)
    text_encoder = dict(templates='openai80')
    refiners = [dict(type='pamr', steps=10, dilations=(8, 16))]
    decode = dict(logit_scale=40.0, background_threshold=0.0, renormalize=True)
    select_classes = dict(type='presence')                           # optional, off when absent
    runtime = dict(batch_size=16)                                    # OVSegmenter's own options
    classes = dict(names='../names/cls_voc21.txt', background='first')  # relative to the config
    dataset_type = 'voc21'                                           # optional, for evaluation

Every section except ``classes``/``dataset_type``/``dataset`` is a keyword argument of
:class:`OVSegmenter` and goes to one stage's constructor, which rejects unknown keys.
mmengine is used to parse, merge (``_base_``) and dump configs.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Union

#: Top-level entries that describe data, not the segmenter.
DATA_SECTIONS = ("classes", "dataset_type", "dataset", "detector")
_OLD_SECTIONS = ("model", "protocol")


def configs_dir() -> str:
    """The shipped configs: ``ovdense/configs`` in an installed wheel, the repository's
    top-level ``configs/`` in a source checkout (the wheel maps that folder into the package)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(os.path.join(candidate, "_base_")):
            return candidate
    raise FileNotFoundError("the shipped configs folder is missing from this installation")


def list_configs() -> list:
    """Names of the shipped configs (``naclip_voc21``, ...; ``_base_/naclip`` for the bases)."""
    root = configs_dir()
    names = []
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py") and not f.startswith("__"):
                rel = os.path.relpath(os.path.join(folder, f), root)[:-3].replace(os.sep, "/")
                names.append(rel if rel.startswith("_base_/") else os.path.basename(rel))
    return sorted(names)


def find_config(name: str) -> str:
    """Path of a shipped config given by name: ``naclip_voc21``, ``naclip/naclip_voc21(.py)``,
    ``configs/naclip/naclip_voc21.py`` (the repository path, valid in any folder), ``_base_/naclip``
    or a method name alone (``naclip``: its base protocol)."""
    root = configs_dir()
    stem = name.replace(os.sep, "/")
    stem = stem[:-3] if stem.endswith(".py") else stem
    stem = stem[len("configs/"):] if stem.startswith("configs/") else stem
    candidates = [os.path.join(root, stem + ".py")]
    if "/" not in stem:
        candidates += [os.path.join(root, stem.split("_")[0], stem + ".py"),
                       os.path.join(root, "_base_", stem + ".py")]
    for cand in candidates:
        if os.path.isfile(cand):
            return cand
    methods = [n[len("_base_/"):] for n in list_configs() if n.startswith("_base_/")]
    datasets = sorted({n.split("_", 1)[1] for n in list_configs() if "/" not in n and "_" in n})
    raise FileNotFoundError(f"config file not found: {name} (neither a file nor a shipped config; shipped configs "
                            f"are METHOD_DATASET or METHOD alone, methods: {', '.join(methods)}; "
                            f"datasets: {', '.join(datasets)})")


def load_config(config: Union[str, os.PathLike, Mapping[str, Any]]):
    """Read a config file, or a shipped config by name (``naclip_voc21``, see :func:`find_config`),
    or wrap a dict, as an ``mmengine.Config``."""
    from mmengine.config import Config

    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config(dict(config))
    path = os.fspath(config)
    if not os.path.isfile(path):
        path = find_config(path)
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


def _plain(value: Any) -> Any:
    """mmengine ConfigDicts -> dicts, recursively (lists of dicts too)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


#: Config sections, one per stage: each is the keyword arguments of that stage's constructor.
STAGE_SECTIONS = ("backbone", "head", "preprocess", "windows", "features", "refiners", "decode", "text_encoder",
                  "select_classes")
#: OVSegmenter's own options, given in the ``runtime`` section (or at the top level).
RUNTIME_OPTIONS = ("batch_size", "max_chunk_mb", "refine_at", "compile", "device", "dtype")


def segmenter_kwargs(cfg) -> Dict[str, Any]:
    """The OVSegmenter keyword arguments a config describes (``runtime`` flattened in).

    The accepted names are :data:`STAGE_SECTIONS` and :data:`RUNTIME_OPTIONS`, which are
    exactly OVSegmenter's keyword arguments (a test keeps them equal).
    """
    params = set(STAGE_SECTIONS) | set(RUNTIME_OPTIONS)
    kwargs: Dict[str, Any] = {}
    where = getattr(cfg, "filename", None) or "config"
    for key in cfg.keys():
        if key.startswith("_") or key in DATA_SECTIONS:
            continue
        value = _plain(cfg[key])
        if key in _OLD_SECTIONS:
            raise KeyError(f"{where}: section {key!r} is the 0.1 config layout; configs now have one section per "
                           f"stage (backbone, head, preprocess, windows, refiners, decode, text_encoder, runtime): see "
                           f"configs/README.md")
        if key == "runtime":
            unknown = set(value) - params
            if unknown:
                raise KeyError(f"{where}: unknown keys in section 'runtime': {sorted(unknown)}")
            kwargs.update(value)
        elif key in params:
            kwargs[key] = value
        else:
            raise KeyError(f"{where}: unknown config section {key!r}; sections are "
                           f"{sorted(params | {'runtime'} | set(DATA_SECTIONS))}")
    return kwargs
