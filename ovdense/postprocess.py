"""From per-query cosine logits to class probabilities and a label map (methods.md section 1)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def synonym_max(probs: torch.Tensor, query_to_class: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Max over each class's queries: ``[Q, H, W] -> [C, H, W]``."""
    if probs.shape[0] == num_classes:
        return probs
    index = query_to_class.view(-1, 1, 1).expand_as(probs)
    out = probs.new_full((num_classes,) + tuple(probs.shape[1:]), float("-inf"))
    return out.scatter_reduce(0, index, probs, reduce="amax", include_self=True)


def decode(
    logits: torch.Tensor,
    query_to_class: torch.Tensor,
    num_classes: int,
    logit_scale: float,
    background_threshold: float = 0.0,
    area_threshold: Optional[float] = None,
    renormalize: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Post-process query logits ``[Q, H, W]`` (cosines) into ``(probs [C,H,W], labels [H,W])``.

    1. ``softmax(logit_scale * logits)`` over all queries, synonyms included;
    2. max over each class's synonyms;
    3. ``area_threshold`` (SCLIP): foreground classes whose argmax area is at most
       ``area_threshold`` times the foreground area get probability 0;
    4. argmax; pixels whose max probability is below ``background_threshold`` become class 0;
    5. ``renormalize`` (NACLIP) divides the returned probabilities by their sum over classes,
       after the labels are decided (the threshold sees the un-renormalised maximum).
    """
    probs = torch.softmax(logits.float() * logit_scale, dim=0)
    probs = synonym_max(probs, query_to_class, num_classes)
    if area_threshold is not None:
        labels = probs.argmax(dim=0)
        area = torch.bincount(labels.flatten(), minlength=num_classes).to(probs.dtype)
        area[0] = 0
        keep = (area > area_threshold * area.sum()).to(probs.dtype)
        keep[0] = 1
        probs = probs * keep.view(-1, 1, 1)
    labels = probs.argmax(dim=0)
    max_prob = probs.amax(dim=0)
    labels = torch.where(max_prob < background_threshold, torch.zeros_like(labels), labels)
    if renormalize:
        probs = probs / probs.sum(dim=0, keepdim=True)
    return probs, labels
