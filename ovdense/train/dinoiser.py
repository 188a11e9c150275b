"""CLIP-DINOiser's training (``train.py`` of wysoczanska/clip_dinoiser) as an mmengine ``BaseModel``.

Only the head's two convolutions learn; CLIP and the DINO teacher are frozen and kept *outside* the
module tree (not in ``state_dict``, not handed to the optimiser or to DDP, moved along by ``.to()``), so
mmengine's checkpoints hold the two convolutions (plus the optimiser and the schedulers) only.

One step on a batch of uint8 images ``[B, 3, S, S]``, as the official ``do_train``:

* ``g``: the ``ln_2`` output of CLIP block ``feats_idx`` (:meth:`DINOiserHead.intermediate`, blocks after
  it are not run); ``e = normalise(obj_proj(g))``, predicted correlations ``P = e^T e``, negatives set to 0;
* the teacher's correlations ``D``: cosines of the DINO last block's ``v`` (official config
  ``enc_type_feats: "v"``; ``corr_feats='k'`` for keys) between patches, ``< gamma`` set to 0;
  ``loss_corr = BCEWithLogits(P, D > 0)`` (mean over ``B x hw x hw``);
* ``loss_bkg = BCEWithLogits(bkg_decoder(normalise(g)), F)`` with ``F`` a hard foreground map.

**FOUND substitution.** The official ``F`` is ``sigmoid(FOUND) > 0.5``, FOUND (Siméoni et al., CVPR
2023) being a *trained* 1x1 decoder on DINO ViT-S/8 features whose weights ship with the official repo
(``models/FOUND/data/weights/decoder_weights.pt``, not available here). This trainer uses FOUND's
training-free *background discovery* on the teacher instead: the seed is the patch the teacher's CLS
attends least (last block, softmax attention averaged over heads), the background is every patch whose
key cosine to the seed exceeds ``bkg_tau`` (FOUND's 0.3), and ``F = 1 - background``. So
``loss_bkg`` is not the published one (no self-training, one teacher for both targets).

The teacher runs on the same images resized so its patch grid equals CLIP's (no resize when both have
the same patch size, as DINO ViT-B/16 and CLIP ViT-B/16 at 448 px).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from ..backbones.clip import CLIPBackbone
from ..heads.dinoiser import CHECKPOINT_KEYS, DINOiserHead
from ..registry import FEATURES, HEADS, TRAINING_MODELS, build

#: OpenAI's mean/std x 255 (configs/_base_/dinoiser.py).
CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.3231630)
CORR_FEATS = ("q", "k", "v")


@TRAINING_MODELS.register_module("DINOiserTrainer")
class DINOiserTrainer(BaseModel):
    """Args:
        backbone: :meth:`CLIPBackbone.load` keyword arguments (or a built backbone).
        teacher: a ``timm_vit`` feature-provider spec (its model, weights and normalisation; the last
            block is read whatever its ``layer`` / ``output``), or a built provider.
        head: ``dinoiser`` head keyword arguments (``gamma``, ``feats_idx``, ``in_dim``, ``conv_kernel``,
            ``seed``, ``checkpoint`` to start from trained convolutions).
        mean, std: CLIP's normalisation of the 0-255 images.
        corr_feats: the teacher's features for the correlations (official ``"v"``).
        corr_gamma: threshold of the teacher's correlations (official: the head's gamma, 0.2).
        bkg_tau: FOUND's background-discovery threshold on key cosines to the seed (0.3).
    """

    def __init__(self, backbone, teacher, head: Optional[Mapping] = None, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, corr_feats: str = "v", corr_gamma: Optional[float] = None,
                 bkg_tau: float = 0.3, data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if corr_feats not in CORR_FEATS:
            raise ValueError(f"DINOiserTrainer: corr_feats must be one of {CORR_FEATS}, got {corr_feats!r}")
        clip = backbone if isinstance(backbone, CLIPBackbone) else CLIPBackbone.load(**dict(backbone))
        provider = build(FEATURES, dict(teacher) if isinstance(teacher, Mapping) else teacher)
        if not hasattr(provider, "_block_qkv") or not hasattr(provider, "model"):
            raise TypeError(f"DINOiserTrainer: the teacher must be a timm_vit provider, got {type(provider).__name__}")
        clip.requires_grad_(False).eval()
        provider.requires_grad_(False).eval()
        # frozen and outside the module tree: not saved, not optimised, not wrapped by DDP
        self.frozen = {"clip": clip, "teacher": provider}
        spec = dict(head or {})
        spec.setdefault("type", "dinoiser")
        width = clip.visual.transformer.resblocks[0].ln_2.normalized_shape[0]
        if spec.get("checkpoint") is None:
            spec["width"] = width
        self.head: DINOiserHead = build(HEADS, spec)
        if self.head.obj_proj.in_channels != width:
            raise ValueError(f"DINOiserTrainer: head convolutions take {self.head.obj_proj.in_channels} channels, "
                             f"the CLIP has width {width}")
        self.head.train()
        self.corr_feats = corr_feats
        self.corr_gamma = self.head.gamma if corr_gamma is None else float(corr_gamma)
        self.bkg_tau = float(bkg_tau)
        self.register_buffer("clip_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ plumbing
    @property
    def clip(self) -> CLIPBackbone:
        return self.frozen["clip"]

    @property
    def teacher(self):
        return self.frozen["teacher"]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for module in self.frozen.values():
            module._apply(fn, *args, **kwargs)
        return self

    def export_state(self) -> Dict[str, torch.Tensor]:
        """The two convolutions in the official ``last.pt`` layout (``model_state_dict`` entries, CPU float32)."""
        state = self.head.state_dict()
        return {k: state[k].detach().float().cpu().clone() for k in CHECKPOINT_KEYS}

    # ------------------------------------------------------------------ the two sides
    def clip_intermediate(self, images: torch.Tensor) -> torch.Tensor:
        """``g`` ``[B, C, h, w]``: the ``ln_2`` output of block ``feats_idx`` (no gradient)."""
        clip = self.clip
        ph, pw = clip.patch_size
        images = images[..., : images.shape[-2] // ph * ph, : images.shape[-1] // pw * pw]
        x = (images.float() - self.clip_mean) / self.clip_std
        depth = len(clip.visual.transformer.resblocks)
        with torch.no_grad():
            view = clip.prefix(x, num_blocks=depth + self.head.feats_idx, taps=self.head.taps)
            return self.head.intermediate(view, clip)

    @torch.no_grad()
    def teacher_targets(self, images: torch.Tensor, grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(D [B, hw, hw], foreground [B, 1, h, w])`` from the teacher's last block on ``grid``."""
        t = self.teacher
        x = (images.float() - t.mean) / t.std
        ph, pw = t.patch_size
        size = (grid[0] * ph, grid[1] * pw)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        dtype = next(t.model.parameters()).dtype
        index = len(t.model.blocks) - 1
        _, (q, k, v) = t._block_qkv(x.to(dtype), index, size[0] == size[1])
        attn = t.model.blocks[index].attn
        q, k = attn.q_norm(q).float(), attn.k_norm(k).float()
        prefix = t.model.num_prefix_tokens
        feats = {"q": q, "k": k, "v": v.float()}[self.corr_feats][:, :, prefix:]  # [B, heads, n, d]
        feats = F.normalize(feats.transpose(1, 2).flatten(2), dim=-1)  # [B, n, heads * d]
        corrs = feats @ feats.transpose(1, 2)
        if self.corr_gamma:
            corrs = corrs.masked_fill(corrs < self.corr_gamma, 0.0)
        # FOUND's background discovery: seed = least attended patch, background = keys similar to it
        cls_attn = torch.softmax((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1), dim=-1)[:, :, 0, prefix:]
        seed = cls_attn.mean(dim=1).argmin(dim=-1)  # [B]
        keys = F.normalize(k[:, :, prefix:].transpose(1, 2).flatten(2), dim=-1)  # [B, n, C]
        sim = (keys @ keys[torch.arange(keys.shape[0], device=keys.device), seed].unsqueeze(-1)).squeeze(-1)
        foreground = (sim <= self.bkg_tau).float().reshape(-1, 1, *grid)
        return corrs, foreground

    def predictions(self, g: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(P [B, hw, hw] with negatives 0, background logits [B, 1, h, w])`` of the trainable convolutions."""
        head = self.head
        b, _, h, w = g.shape
        e = head.obj_proj(g).reshape(b, head.obj_proj.out_channels, h * w)
        e = e / e.norm(dim=1, keepdim=True)
        corrs = (e.transpose(1, 2) @ e).clamp(min=0.0)  # official: pred_corrs[pred_corrs < 0] = 0
        bkg = head.bkg_decoder(g / g.norm(dim=1, keepdim=True))
        return corrs, bkg

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "loss"):
        g = self.clip_intermediate(inputs)
        corrs, bkg = self.predictions(g)
        if mode == "tensor":
            return dict(corrs=corrs, background_logits=bkg)
        if mode != "loss":
            raise ValueError(f"DINOiserTrainer: mode {mode!r} is not supported (training only: 'loss' or 'tensor')")
        target, foreground = self.teacher_targets(inputs, tuple(g.shape[-2:]))
        return dict(loss_corr=F.binary_cross_entropy_with_logits(corrs, (target > 0).float()),
                    loss_bkg=F.binary_cross_entropy_with_logits(bkg, foreground))
