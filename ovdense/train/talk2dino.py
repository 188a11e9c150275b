"""Talk2DINO's training (``train.py`` of lorebianchi98/Talk2DINO, read at 4918c2d) as an mmengine ``BaseModel``.

Only the text projection learns (:class:`~ovdense.heads.talk2dino.TextProjection`, the official
``ProjectionLayer.project_clip_txt``: linear CLIP dim -> DINO dim, then ``act`` and a DINO dim -> DINO dim
linear per hidden layer). CLIP (its text tower) and DINOv2 are frozen and kept *outside* the module tree,
so mmengine's checkpoints hold the projection (plus the optimiser) only.

One step on a batch of ``B`` images (uint8 ``[B, 3, H, W]``) and their captions, as the official code
(``configs/vitb_mlp_infonce.yaml``, ``--feature_name disentangled_self_attn``, ``--text_features ann_feats``):

* **Text** ``t_i = normalise(P(c_i))``: ``c_i`` is CLIP's unnormalised ``encode_text`` of the caption (the
  official ``text_features_extraction.py``, OpenAI CLIP ViT-B/16, one embedding per COCO caption).
* **Image**, per attention head ``m`` of DINOv2's last block (``dino_extraction_v2.py``): the CLS query's
  attention logits over the patch tokens ``A[m, n] = q_cls . k_n * 0.125`` (registers excluded; 0.125 is
  hard-coded there, equal to the block's scale for ViT-B/L), softmax over ``n``, and the attention-weighted
  mean of the final-norm patch tokens ``x_n``: ``v_m = normalise(mean_n softmax(A[m])_n x_n)``
  (``[B, M, C]``, the ``disentangled_self_attn`` features).
* **Best head** (``alignment_strategy='max_score'``): for each pair ``i`` the head closest to its own caption,
  ``m_i = argmax_m t_i . v_{i,m}``, gives the image embedding ``v_i = v_{i, m_i}`` (chosen on the matching pair
  only, then used against every caption of the batch).
* **InfoNCE**: ``S = t v^T`` (cosines, ``[B, B]``), ``loss = (CE(S / tau, I) + CE(S^T / tau, I)) / 2`` with
  ``tau = 0.07``: the official ``Contrastive.logit_scale`` is ``log(1 / 0.07)``, an ``nn.Parameter`` of the
  criterion that the optimiser (``Adam(model.parameters())``) never sees, so it stays fixed. The official
  loss is then divided by ``B^2`` (``loss / scores.shape[0] ** 2``); ``loss_scale='batch_sq'`` keeps that
  (the default; Adam is nearly invariant to it), ``'none'`` reports the plain InfoNCE.

Official recipe: COCO 2014 train captions, DINOv2 ViT-B/14 with registers at 448 x 448 (short side 448,
bicubic, centre crop), CLIP ViT-B/16 text, Adam lr 1e-4 (no weight decay, no schedule), batch 128,
100 epochs, seed 123, the last model kept (``save_best_model: False``).

``cache_visual=True`` keeps each image's head embeddings (keyed by the item's ``keys``) after the first
time it is seen: the official code extracts them once, before training; here they are computed on the
fly, and with the cache only once (exact: DINOv2 is frozen and the images are not augmented).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from ..backbones.clip import CLIPBackbone
from ..heads.talk2dino import TextProjection, load_projection
from ..registry import FEATURES, TRAINING_MODELS, build

LOSS_SCALES = ("batch_sq", "none")


@TRAINING_MODELS.register_module("Talk2DINOTrainer")
class Talk2DINOTrainer(BaseModel):
    """Args:
        clip: :meth:`CLIPBackbone.load` keyword arguments (or a built backbone); only its text tower runs.
        dino: a ``timm_vit`` feature-provider spec (or a built provider) of the DINOv2; its ``output`` is
            set to ``'tokens+cls_attn'`` (the last block's final-norm tokens and CLS attention logits).
        projection: ``dict(hidden_layers=1, act='tanh')`` plus, optionally, ``clip_dim`` / ``dino_dim``
            (default: CLIP's embedding width and DINO's width) and ``seed`` (the random initialisation,
            torch's default ``nn.Linear`` init under that seed; None: the global RNG).
        checkpoint: start from this official-layout projection checkpoint instead (official
            ``starting_checkpoint``).
        temperature: InfoNCE temperature (official 0.07, fixed).
        attn_scale: scale of the CLS attention logits (official 0.125 hard-coded); None: the block's own
            (``head_dim ** -0.5``, the same for ViT-B/L; differs for tiny models).
        loss_scale: ``'batch_sq'`` (official: InfoNCE / B^2) or ``'none'``.
        cache_visual: cache every image's head embeddings by its key (see the module doc).
    """

    def __init__(self, clip, dino, projection: Optional[Mapping] = None, checkpoint: Optional[str] = None,
                 temperature: float = 0.07, attn_scale: Optional[float] = 0.125, loss_scale: str = "batch_sq",
                 cache_visual: bool = False, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if loss_scale not in LOSS_SCALES:
            raise ValueError(f"Talk2DINOTrainer: loss_scale must be one of {LOSS_SCALES}, got {loss_scale!r}")
        clip = clip if isinstance(clip, CLIPBackbone) else CLIPBackbone.load(**dict(clip))
        if isinstance(dino, Mapping):
            spec = dict(dino)
            if spec.get("output", "tokens+cls_attn") != "tokens+cls_attn":
                raise ValueError(f"Talk2DINOTrainer: the DINO provider must give output='tokens+cls_attn', "
                                 f"got {spec['output']!r}")
            spec["output"] = "tokens+cls_attn"
            dino = build(FEATURES, spec)
        if getattr(dino, "output", None) != "tokens+cls_attn" or not hasattr(dino, "model"):
            raise TypeError("Talk2DINOTrainer: the DINO must be a timm_vit provider with output='tokens+cls_attn'")
        clip.requires_grad_(False).eval()
        dino.requires_grad_(False).eval()
        self.frozen = {"clip": clip, "dino": dino}  # not saved, not optimised, not wrapped by DDP
        self.dino_dim = int(dino.model.embed_dim)
        if checkpoint is not None:
            if projection and set(projection) - {"act"}:
                raise ValueError("Talk2DINOTrainer: give a checkpoint or projection sizes, not both")
            self.projection = load_projection(checkpoint, **({"act": projection["act"]} if projection else {}))
        else:
            spec = dict(projection or {})
            seed = spec.pop("seed", None)
            spec.setdefault("clip_dim", int(clip.embed_dim))
            spec.setdefault("dino_dim", self.dino_dim)
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(int(seed))
                self.projection = TextProjection(**spec)
        if self.projection.dino_dim != self.dino_dim:
            raise ValueError(f"Talk2DINOTrainer: the projection maps to {self.projection.dino_dim}, "
                             f"the DINO has width {self.dino_dim}")
        if self.projection.clip_dim != int(clip.embed_dim):
            raise ValueError(f"Talk2DINOTrainer: the projection takes {self.projection.clip_dim}, "
                             f"CLIP's text embeddings have width {clip.embed_dim}")
        self.temperature = float(temperature)
        self.attn_scale = None if attn_scale is None else float(attn_scale)
        self.loss_scale = loss_scale
        self.cache_visual = bool(cache_visual)
        self._cache: Dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ plumbing
    @property
    def clip(self) -> CLIPBackbone:
        return self.frozen["clip"]

    @property
    def dino(self):
        return self.frozen["dino"]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for module in self.frozen.values():
            module._apply(fn, *args, **kwargs)
        self._cache.clear()
        return self

    def export_checkpoint(self, **meta) -> Dict[str, torch.Tensor]:
        """The projection in the official checkpoint layout: the bare ``ProjectionLayer`` state dict
        (``linear_layer.*``, ``hidden_layers.<i>.*``; CPU float32; ``meta`` is not stored, the official
        file has nothing else), what ``head=dict(type='talk2dino', checkpoint=...)`` loads."""
        return {k: v.detach().float().cpu().clone() for k, v in self.projection.state_dict().items()}

    # ------------------------------------------------------------------ the two sides
    @torch.no_grad()
    def head_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, M, C]``: per head of DINO's last block, the CLS-attention-weighted mean of the final-norm
        patch tokens, L2-normalised (the official ``disentangled_self_attn``)."""
        out = self.dino(images)
        tokens, attn = out[:, :self.dino_dim].flatten(2), out[:, self.dino_dim:].flatten(2)  # [B, C, n], [B, M, n]
        if self.attn_scale is not None:  # the provider's logits carry the block's own scale
            attn = attn * (self.attn_scale / float(self.dino.model.blocks[-1].attn.scale))
        weights = attn.float().softmax(dim=-1)
        pooled = torch.einsum("bmn,bcn->bmc", weights, tokens.float()) / tokens.shape[-1]
        return F.normalize(pooled, dim=-1)

    def visual(self, images: torch.Tensor, keys: Optional[Sequence[str]] = None) -> torch.Tensor:
        if not self.cache_visual or keys is None:
            return self.head_embeddings(images)
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            fresh = self.head_embeddings(images[missing])
            for i, emb in zip(missing, fresh):
                self._cache[keys[i]] = emb
        return torch.stack([self._cache[k] for k in keys])

    @torch.no_grad()
    def clip_text(self, captions: Sequence[str]) -> torch.Tensor:
        """CLIP's unnormalised text embeddings ``[B, D]`` (the official ``ann_feats``)."""
        return self.clip.encode_text(list(captions)).float()

    def similarities(self, text: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """``S [B, B]``: cosines of the projected captions (rows) and the images (columns), each image
        represented by its head closest to its own caption (official ``max_score``)."""
        t = F.normalize(self.projection(text), dim=-1)
        best = torch.einsum("bc,bmc->bm", t, heads).argmax(dim=-1)
        v = heads[torch.arange(len(heads), device=heads.device), best]
        return t @ v.T

    def forward(self, inputs: torch.Tensor, captions: Optional[Sequence[str]] = None,
                keys: Optional[Sequence[str]] = None, data_samples=None, mode: str = "loss"):
        if captions is None or len(captions) != len(inputs):
            raise ValueError("Talk2DINOTrainer: every image needs its caption (items with 'captions')")
        sims = self.similarities(self.clip_text(captions), self.visual(inputs, keys))
        if mode == "tensor":
            return dict(similarities=sims)
        if mode != "loss":
            raise ValueError(f"Talk2DINOTrainer: mode {mode!r} is not supported (training only: 'loss' or 'tensor')")
        logits = sims / self.temperature
        labels = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        if self.loss_scale == "batch_sq":
            loss = loss / len(logits) ** 2
        return dict(loss_infonce=loss)
