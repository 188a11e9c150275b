"""CLIP-DINOiser (Wysoczańska et al., ECCV 2024): MaskCLIP features pooled with learned, DINO-like affinities.

On each window, with ``g`` the output of ``ln_2`` of CLIP block ``feats_idx`` (-3: the 10th of 12,
the normalised MLP input, patch tokens ``[B, C, h, w]``):

    f  = ln_post(z) @ proj, z = x + out_proj(v); z = z + MLP(ln_2 z)   MaskCLIP's value path with
                                                                          the last block's residual and
                                                                          MLP kept, projected, not normalised
    e  = normalise(Conv3x3(C -> 256, replicate padding)(g))            ``obj_proj``
    A  = e^T e;  A[A < gamma] = 0                                       gamma = 0.2
    f' = (sum_j A_ij f_j) / (sum_j A_ij + 1e-6)
    features = normalise(f');  background = sigmoid(Conv1x1(C -> 1)(normalise(g)))   ``bkg_decoder``

as the official ``CLIP_DINOiser.forward`` computes it (wysoczanska/clip_dinoiser,
``models/clip_dinoiser/clip_dinoiser.py`` and ``models/maskclip/maskclip.py``). The background map
is the extra ``background`` (``[B, 1, h, w]``, FOUND's ``b``); the decoder rule
``found_background`` (:mod:`ovdense.rules.found_background`) applies the official threshold.

How the official protocol is reproduced, and its quirks (README's heads table says the same):

* **Value path.** The official ``extract_v`` keeps the last block's residual and MLP
  (``v = x + out_proj(v); v += MLP(ln_2 v)``); so does this head (``keep_residual`` and
  ``keep_ffn`` True).
* **Window scores are probabilities.** The official model returns ``softmax(100 cos)`` per window
  and mmseg-0.x slide inference averages those *probabilities* (each resized bilinearly to its
  window) and applies a softmax to the average. With ``window_scores="probabilities"`` (default)
  the head scores every window itself (``window_logits``: ``softmax(prob_scale * cos)`` over the
  queries), ovdense stitches these, and a decoder ``logit_scale`` of 1 gives the official
  ``softmax`` of the average (the configs do both). ``"cosine"`` gives plain cosines (ovdense's
  usual averaging of logits; use a decoder scale such as 100 then).
* **Padding before normalisation.** The official model pads each window to a multiple of 16 with
  black pixels at the bottom and right *before* CLIP normalisation (``make_input_divisible``) and
  its output over the padded window is resized onto the unpadded one. The configs reproduce it
  with ``windows=dict(pad_to=16, pad_mode="end")``. (With the published 448 px windows on images
  resized to a 448 px short side no window is padded.)
* **Intermediate features.** ``g`` is read inside block ``feats_idx``: the head takes the block's
  input as a tap (block ``feats_idx - 1``) and recomputes the block's attention half
  (``x + ls_1(attn(ln_1 x))``, then ``ln_2``), the tokens the official forward hook sees.
* **Batch coupling.** The official FOUND step writes through ``output.reshape(1, C, -1)``, which is
  only right for a batch of one window (the published slide inference runs one window at a
  time); the rule here works on each window, whatever the batch. No switch: a batched official
  call writes class 0 of the wrong image and channels.
* **Checkpoint.** ``checkpoint`` is the official ``checkpoints/last.pt`` (``{"model_state_dict":
  {"obj_proj.weight", "obj_proj.bias", "bkg_decoder.weight", "bkg_decoder.bias"}}``, also accepted
  bare), read from a local file. Without one the two convolutions get random weights (seeded,
  built for the backbone's width on first use) and a warning is logged: for tests only.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.clip import _split_qkv
from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head

logger = logging.getLogger(__name__)

#: The official checkpoint's keys (``train.py`` ``get_model_dict``).
CHECKPOINT_KEYS = ("obj_proj.weight", "obj_proj.bias", "bkg_decoder.weight", "bkg_decoder.bias")
WINDOW_SCORES = ("probabilities", "cosine")


def load_dinoiser_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The two convolutions' weights from an official ``last.pt`` (or a bare state dict)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dinoiser checkpoint {path}: no such file (the official checkpoints/last.pt)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"dinoiser checkpoint {path}: not a readable torch file ({type(err).__name__})") from None
    state = data.get("model_state_dict", data) if isinstance(data, dict) else None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"dinoiser checkpoint {path}: lacks {', '.join(missing)} (expected CLIP-DINOiser's "
                         f"last.pt with model_state_dict obj_proj.* and bkg_decoder.*)")
    state = {k: state[k].float() for k in CHECKPOINT_KEYS}
    w, b = state["obj_proj.weight"], state["bkg_decoder.weight"]
    if w.ndim != 4 or b.shape != (1, w.shape[1], 1, 1) or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"dinoiser checkpoint {path}: obj_proj.weight {tuple(w.shape)} and bkg_decoder.weight "
                         f"{tuple(b.shape)} are not a k x k conv and a 1 x 1 conv on the same width")
    return state


@HEADS.register_module("dinoiser")
class DINOiserHead(Head):
    """Args:
        checkpoint: local path of the official ``last.pt`` (None: random convolutions, tests only).
        gamma: affinity threshold (official 0.2); None or 0 keeps every affinity (as the official
            ``if self.gamma:``).
        feats_idx: the CLIP block whose ``ln_2`` output feeds the convolutions (official -3).
        in_dim, conv_kernel: ``obj_proj``'s output width and kernel (official 256 and 3) when no
            checkpoint gives them.
        width: CLIP's width for random convolutions (None: the backbone's, on first use).
        window_scores: ``"probabilities"`` (``softmax(prob_scale * cos)`` per window, the official
            slide averaging) or ``"cosine"`` (see the module doc).
        prob_scale: the official ``cls_seg`` temperature (100).
        seed: seed of the random convolutions.
    """

    keep_residual = True
    keep_ffn = True
    extras = ("background",)

    def __init__(self, checkpoint: Optional[str] = None, gamma: Optional[float] = 0.2, feats_idx: int = -3,
                 in_dim: int = 256, conv_kernel: int = 3, width: Optional[int] = None,
                 window_scores: str = "probabilities", prob_scale: float = 100.0, seed: int = 0) -> None:
        super().__init__()
        if window_scores not in WINDOW_SCORES:
            raise ValueError(f"dinoiser: window_scores must be one of {WINDOW_SCORES}, got {window_scores!r}")
        if int(feats_idx) >= 0:
            raise ValueError(f"dinoiser: feats_idx counts from the end (official -3), got {feats_idx}")
        self.checkpoint = checkpoint
        self.gamma = None if gamma is None else float(gamma)
        self.feats_idx = int(feats_idx)
        self.taps = (self.feats_idx - 1,)  # the input of block feats_idx
        self.in_dim, self.conv_kernel = int(in_dim), int(conv_kernel)
        self.window_scores = window_scores
        self.prob_scale = float(prob_scale)
        self.seed = int(seed)
        self.obj_proj: Optional[nn.Conv2d] = None
        self.bkg_decoder: Optional[nn.Conv2d] = None
        if checkpoint is not None:
            state = load_dinoiser_checkpoint(str(checkpoint))
            w = state["obj_proj.weight"]
            self.in_dim, self.conv_kernel = int(w.shape[0]), int(w.shape[-1])
            self._build(int(w.shape[1]))
            self.load_state_dict(state)
        elif width is not None:
            self._build(int(width))

    def _build(self, width: int, device: Optional[torch.device] = None) -> None:
        """The official layers: ``obj_proj`` (k x k, replicate padding) and ``bkg_decoder`` (1 x 1);
        without a checkpoint their weights are random (torch's default init under ``seed``)."""
        if self.checkpoint is None:
            logger.warning("dinoiser: no checkpoint given, the two convolutions have random weights (tests only; "
                           "pass head=dict(type='dinoiser', checkpoint='checkpoints/clip_dinoiser_last.pt'))")
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            self.obj_proj = nn.Conv2d(width, self.in_dim, self.conv_kernel, padding=self.conv_kernel // 2,
                                      padding_mode="replicate")
            self.bkg_decoder = nn.Conv2d(width, 1, 1)
        finally:
            torch.random.set_rng_state(state)
        if device is not None:
            self.to(device)

    def intermediate(self, view, backbone) -> torch.Tensor:
        """``ln_2`` output of block ``feats_idx`` on the patch tokens: ``[B, C, h, w]`` float32."""
        blocks = backbone.visual.transformer.resblocks
        index = self.feats_idx % len(blocks)
        tap = (self.feats_idx - 1) % len(blocks)
        if index == 0 or tap not in view.taps:
            raise ValueError(f"dinoiser reads the input of block {self.feats_idx} of {len(blocks)} as tap "
                             f"{self.feats_idx - 1}: run the prefix with taps=head.taps (a tower of at least "
                             f"{1 - self.feats_idx} blocks)")
        blk = blocks[index]
        x = view.taps[tap]
        q, k, v = _split_qkv(blk.attn, blk.ln_1(x))
        b, h, n, d = q.shape
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, h * d)
        y = x + blk.ls_1(blk.attn.out_proj(mixed))
        g = blk.ln_2(y)[:, 1:].float()
        return g.transpose(1, 2).reshape(b, -1, *view.grid)

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        # MaskCLIP: the value path with the last block's residual and MLP, projected, not normalised
        f = backbone.project(self.finish(view, backbone, view.v))[:, 1:].float()  # [B, hw, D]
        g = self.intermediate(view, backbone)  # [B, C, h, w]
        if self.obj_proj is None:
            self._build(g.shape[1], g.device)
        if self.obj_proj.in_channels != g.shape[1]:
            raise ValueError(f"dinoiser: the convolutions take {self.obj_proj.in_channels} channels, the backbone's "
                             f"block {self.feats_idx} gives {g.shape[1]} (a checkpoint for another CLIP?)")
        b, _, h, w = g.shape
        e = self.obj_proj(g.to(self.obj_proj.weight.dtype)).float().reshape(b, self.in_dim, h * w)
        e = e / e.norm(dim=1, keepdim=True)
        corrs = e.transpose(1, 2) @ e  # [B, hw, hw]
        if self.gamma:
            corrs = corrs.masked_fill(corrs < self.gamma, 0.0)
        pooled = (corrs @ f) / (corrs.sum(dim=-1, keepdim=True) + 1e-6)
        background = torch.sigmoid(self.bkg_decoder((g / g.norm(dim=1, keepdim=True)).to(
            self.bkg_decoder.weight.dtype)).float())
        return DenseFeatures.from_tokens(pooled, (h, w), background=background)

    def window_logits(self, context, text: torch.Tensor, backbone=None) -> torch.Tensor:
        """Every window's scores ``[n, Q, h, w]``: ``softmax(prob_scale * cos)`` over the queries
        (the official per-window probabilities), or the cosines."""
        cos = torch.einsum("ndhw,qd->nqhw", context.features, text.to(context.features))
        if self.window_scores == "cosine":
            return cos
        return torch.softmax(cos * self.prob_scale, dim=1)

    def extra_repr(self) -> str:
        return (f"checkpoint={self.checkpoint!r}, gamma={self.gamma}, feats_idx={self.feats_idx}, "
                f"window_scores={self.window_scores!r}, prob_scale={self.prob_scale}")
