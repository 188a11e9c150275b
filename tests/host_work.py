"""Host work in a step, found without a GPU: what keeps a step from being recorded as a CUDA graph."""
from __future__ import annotations

import os
import traceback
from typing import List

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import ovdense


class _HostWork(TorchDispatchMode):
    """Records every op of the step that reads a host (CPU) tensor or reads a value back to the host
    (``.item()``): on a CUDA graph the first is recorded once (or fails: a host-to-device copy) and
    the second cannot be recorded."""

    def __init__(self):
        super().__init__()
        self.found = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default or any(t.device.type == "cpu" for t in tensors):
            where = [f for f in traceback.extract_stack() if f"{os.sep}ovdense{os.sep}" in f.filename]
            self.found.add(f"{func} at {where[-1].filename.split('ovdense' + os.sep)[-1]}:{where[-1].lineno}"
                           if where else str(func))
        return func(*args, **kwargs)


def _on_meta(fast):
    """Move a FixedSizePredictor's segmenter and buffers to the meta device (shapes without data):
    every tensor the step makes from its inputs is then on meta, anything made on the host shows."""
    meta = torch.device("meta")
    seg = fast.segmenter
    for module in (seg.backbone, seg.head, seg.features, seg.refiners):
        module.to(meta)
    seg.device = meta
    fast._raw, fast._normalised = fast._raw.to(meta), fast._normalised.to(meta)
    fast._encoded = ovdense.EncodedVocabulary(fast._encoded.vocabulary, fast._encoded.text.to(meta))


def step_on_meta(fast):
    """``(labels, scores, host work found)`` of a FixedSizePredictor's step on the meta device, after
    one unwatched run (as before a recording: lazy set-up, e.g. CLIP-DINOiser's convolutions)."""
    _on_meta(fast)
    fast._step()
    with _HostWork() as watch:
        labels, scores = fast._step()
    found: List[str] = sorted(watch.found)
    return labels, scores, found
