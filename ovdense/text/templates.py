"""Prompt-template sets.

``openai80`` is the list of 80 ImageNet prompt templates released with CLIP, taken from
open_clip's own copy (``open_clip.zero_shot_metadata``) so the two never drift apart.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

TemplateSpec = Union[str, Sequence[str], None]


def _from_open_clip(attr: str) -> Tuple[str, ...]:
    from open_clip import zero_shot_metadata

    return tuple(t("{}") for t in getattr(zero_shot_metadata, attr))


def resolve_templates(spec: TemplateSpec) -> Tuple[str, ...]:
    """Turn a template spec into a tuple of ``str.format`` patterns with one ``{}``.

    ``"openai80"`` (default of the reference methods), ``"simple"`` (open_clip's 7), ``None``
    or ``"none"`` (the bare class name), or an explicit list of patterns.
    """
    if spec is None or spec == "none":
        return ("{}",)
    if isinstance(spec, str):
        if spec == "openai80":
            return _from_open_clip("OPENAI_IMAGENET_TEMPLATES")
        if spec == "simple":
            return _from_open_clip("SIMPLE_IMAGENET_TEMPLATES")
        if "{}" in spec:
            return (spec,)
        raise ValueError(f"unknown template set {spec!r}; use 'openai80', 'simple', 'none' or a list of patterns")
    patterns: List[str] = list(spec)
    if not patterns:
        raise ValueError("template list is empty")
    bad = [p for p in patterns if p.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' placeholder; bad: {bad[:3]}")
    return tuple(patterns)
