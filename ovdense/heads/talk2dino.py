"""Talk2DINO (Barsellotti et al., ICCV 2025): CLIP text embeddings projected into DINOv2's patch space.

The image side is DINOv2 alone: the features of a window are its DINOv2 (ViT-B/14 with 4
registers) patch tokens after the final norm (the provider ``source``, e.g.
``timm_vit(model_name="vit_base_patch14_reg4_dinov2.lvd142m", output="tokens+cls_attn")``),
L2-normalised; CLIP's vision tower is not used. The text side is CLIP's text embedding ``t``
(the mean of the unnormalised template embeddings: ``text_encoder=dict(average="raw")``)
mapped by the trained projection (the official ``ProjectionLayer.project_clip_txt``)::

    p = W_k(act(... W_1(act(W_0 t))))        W_0: CLIP dim -> DINO dim, then the hidden layers
    s = sigmoid(cos(f, p))                   per patch and query (the official DINOTextMasker)

With ``bg_clean`` (the official ``with_bg_clean``, ``similarity_assignment_weighted``), per window,
with the last block's CLS attention logits ``A`` ``[M heads, n]`` and the raw (not L2-normalised)
patch tokens ``x`` ``[n, C]``::

    e_m = normalise(mean_n A[m, n] x_n)                      one embedding per head
    w   = softmax_m(p . e_m)                                 per query
    a   = softmax_n(sum_m w_m A[m, n])                       per query
    a   = (a - min a) / max(max a, max a - min a)            min / max over the window's queries
    a   = a (max s - min s) + min s
    s   = (s + lambda a) / (1 + lambda)                      lambda = 0.2

``s`` is what :meth:`Talk2DINOHead.window_logits` returns (the segmenter's ``window_scorer``
seam), resized to the window's pixels bilinearly with ``align_corners=True`` as the official
``generate_masks`` does (``resize_logits``; False leaves it on the patch grid for the segmenter's
usual resize). The official decoding is ``argmax([bg_thresh, s_1, ..., s_N])`` (a constant
background score, the decoder window rule ``constant_background``), i.e. ``decode.logit_scale=1``.

Official quirks (lorebianchi98/Talk2DINO@4918c2d), and what is done here:

* Every window is squashed to 448 x 448 (``T.Resize((448, 448))``, bilinear on a tensor, no
  antialiasing under the pinned torchvision 0.16) before DINOv2: the provider's
  ``input_size=(448, 448), resize_mode="bilinear"``. The published protocol slides 448 windows
  over images of short side 448, so the squash changes only windows of images thinner than 448;
  ``input_size=None`` keeps each window's aspect (cropped down to a multiple of 14).
* ``generate_masks`` flips its input from BGR to RGB (mmseg loads BGR): the published numbers feed
  DINOv2 RGB, which the provider does by default; the official demo reads RGB and so feeds BGR
  (``bgr=True`` on the provider reproduces it).
* The background cleaning reshapes the window's scores to ``[N, h w]`` (batch 1 only) and
  normalises the attention by the min / max over all queries of the window; here per window.
* The CLS attention uses a hard-coded scale 0.125 (``64 ** -0.5``, right for ViT-B and ViT-L);
  the provider uses the block's own scale (equal for those models).
* DINOv2's position embedding is resized as torch.hub's DINOv2 does (bicubic, ``scale_factor =
  (side / 14 + 0.1) / 37``, no antialiasing): the provider's ``pos_interp="dino"``; timm's own
  resize antialiases and gives other embeddings.
* PAMR (10 steps, dilations 1, 2, 4, 8, 12, 24) runs on each crop's resized scores before the
  crops are averaged; here the refiner runs once on the stitched canvas (``refine_at="model"``).
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head

_ACTS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, None: None}


class TextProjection(nn.Module):
    """The official ``ProjectionLayer.project_clip_txt``: a linear map CLIP dim -> DINO dim, then per
    hidden layer the activation and a DINO dim -> DINO dim linear map (state-dict keys
    ``linear_layer.*`` and ``hidden_layers.<i>.*``, as the official checkpoints)."""

    def __init__(self, clip_dim: int = 512, dino_dim: int = 768, hidden_layers: int = 1,
                 act: Optional[str] = "tanh") -> None:
        super().__init__()
        if act not in _ACTS:
            raise ValueError(f"talk2dino: act must be one of {tuple(_ACTS)}, got {act!r}")
        self.linear_layer = nn.Linear(clip_dim, dino_dim)
        self.hidden_layers = nn.ModuleList([nn.Linear(dino_dim, dino_dim) for _ in range(int(hidden_layers))])
        self.act = _ACTS[act]() if _ACTS[act] is not None else None
        self.act_name = act

    @property
    def clip_dim(self) -> int:
        return int(self.linear_layer.in_features)

    @property
    def dino_dim(self) -> int:
        return int(self.linear_layer.out_features)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.linear_layer(text.float())
        for layer in self.hidden_layers:
            if self.act is not None:
                x = self.act(x)
            x = layer(x)
        return x


def load_projection(path: str, act: Optional[str] = "tanh") -> TextProjection:
    """A :class:`TextProjection` from an official Talk2DINO projection checkpoint (e.g.
    ``weights/vitb_mlp_infonce.pth``: a state dict of ``ProjectionLayer``; the old
    ``linear_layer2.*`` name of the hidden layer is read too). Sizes come from the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"talk2dino: projection checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"talk2dino: {path} is not a readable torch checkpoint ({type(err).__name__}: {err})") \
            from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or "linear_layer.weight" not in state:
        keys = list(state)[:4] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"talk2dino: {path} is not a Talk2DINO projection checkpoint (no 'linear_layer.weight'; "
                         f"found {keys})")
    state = dict(state)
    if "linear_layer2.weight" in state:  # the official load_state_dict's compatibility rename
        state["hidden_layers.0.weight"] = state.pop("linear_layer2.weight")
        state["hidden_layers.0.bias"] = state.pop("linear_layer2.bias")
    dino_dim, clip_dim = state["linear_layer.weight"].shape
    hidden = len({k.split(".")[1] for k in state if k.startswith("hidden_layers.")})
    proj = TextProjection(int(clip_dim), int(dino_dim), hidden, act)
    try:
        proj.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(f"talk2dino: {path} does not fit a Talk2DINO projection: {first[-1].strip()}") from None
    return proj


def clean_background(scores: torch.Tensor, tokens: torch.Tensor, attn: torch.Tensor, text: torch.Tensor,
                     lam: float) -> torch.Tensor:
    """The official ``similarity_assignment_weighted`` on one window: ``scores`` ``[N, h, w]``
    (sigmoid cosines), ``tokens`` raw patch tokens ``[C, n]``, ``attn`` CLS attention logits
    ``[M, n]``, ``text`` the normalised projected queries ``[N, C]``."""
    n_q, h, w = scores.shape
    heads = (attn.unsqueeze(1) * tokens.unsqueeze(0)).mean(dim=-1)  # [M, C]
    heads = heads / heads.norm(dim=-1, keepdim=True)
    weights = (text @ heads.T).softmax(dim=-1)  # [N, M]
    per_query = (weights.unsqueeze(-1) * attn.unsqueeze(0)).sum(dim=1) / weights.sum(dim=-1, keepdim=True)
    per_query = per_query.softmax(dim=-1)  # [N, n]
    lo, hi = per_query.min(), per_query.max()
    hi = torch.maximum(hi, hi - lo)
    per_query = (per_query - lo) / hi
    per_query = per_query * (scores.max() - scores.min()) + scores.min()
    return (scores.reshape(n_q, h * w) + lam * per_query).reshape(n_q, h, w) / (1 + lam)


@HEADS.register_module("talk2dino")
class Talk2DINOHead(Head):
    """Args:
        checkpoint: the official projection checkpoint (``weights/vitb_mlp_infonce.pth``), a local
            file; None builds a random projection of ``projection`` sizes (tests only).
        source: the DINOv2 provider: ``timm_vit(output="tokens")`` (no background cleaning) or
            ``output="tokens+cls_attn"`` (the tokens, then the last block's CLS attention logits).
        bg_clean: the official ``with_bg_clean`` (VOC21 and COCO-Object in the published configs).
        lambda_bg: weight of the attention map in the cleaning (official 0.2).
        act: the projection's activation (``vitb_mlp_infonce.yaml``: ``tanh``).
        resize_logits: resize each window's scores to its pixels with ``align_corners=True`` here
            (official); False leaves them on the patch grid (cheaper; ``align_corners=False``).
        projection: ``dict(clip_dim, dino_dim, hidden_layers)`` of the random projection when
            ``checkpoint`` is None (default 512 / 768 / 1, the ViT-B projection's sizes).
    """

    keep_residual = False
    keep_ffn = False
    reads_clip_image = False  # DINOv2's tokens against projected text: CLIP's image tower is not run
    ATTN = "talk2dino_attn"
    NORM = "talk2dino_norm"

    def __init__(self, checkpoint: Optional[str] = None, source: str = "dino", bg_clean: bool = False,
                 lambda_bg: float = 0.2, act: Optional[str] = "tanh", resize_logits: bool = True,
                 projection: Optional[Mapping[str, int]] = None) -> None:
        super().__init__()
        if checkpoint is not None:
            if projection is not None:
                raise ValueError("talk2dino: give checkpoint or projection sizes, not both")
            self.projection = load_projection(checkpoint, act)
        else:
            self.projection = TextProjection(**dict(projection or {}), act=act)
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.source = source
        self.requires = (source,)
        self.bg_clean = bool(bg_clean)
        self.lambda_bg = float(lambda_bg)
        self.resize_logits = bool(resize_logits)
        self.extras = (self.ATTN, self.NORM) if self.bg_clean else ()

    # ------------------------------------------------------------------ image side
    def output_grid(self, window_size: Tuple[int, int], backbone,
                    providers: Optional[Mapping[str, torch.nn.Module]] = None) -> Tuple[int, int]:
        provider = (providers or {}).get(self.source)
        if provider is None or not hasattr(provider, "output_grid"):
            raise ValueError(f"talk2dino reads the grid of provider {self.source!r}, which declares none")
        return tuple(provider.output_grid(window_size))

    def feature_dim(self, backbone, providers: Optional[Mapping[str, torch.nn.Module]] = None) -> int:
        """DINOv2's width (the provider's tokens), not CLIP's: the text is projected into it."""
        provider = (providers or {}).get(self.source)
        model = getattr(provider, "model", None)
        return int(model.embed_dim) if model is not None else self.projection.dino_dim

    def _split(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Provider output -> (tokens ``[B, C, h, w]``, CLS attention ``[B, M, h, w]`` or None)."""
        dim = self.projection.dino_dim
        if x.shape[1] > dim:
            return x[:, :dim], x[:, dim:]
        return x, None

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        tokens, attn = self._split(aux[self.source].float())
        feats = F.normalize(tokens, dim=1)
        if not self.bg_clean:
            return DenseFeatures(feats)
        if attn is None:
            raise ValueError(f"talk2dino: bg_clean needs the CLS attention after the tokens: give provider "
                             f"{self.source!r} output='tokens+cls_attn' ({tokens.shape[1]} channels = the "
                             f"projection's {self.projection.dino_dim}, nothing after them)")
        return DenseFeatures(feats, {self.ATTN: attn, self.NORM: tokens.norm(dim=1, keepdim=True)})

    # ------------------------------------------------------------------ text side
    def project_text(self, text: torch.Tensor) -> torch.Tensor:
        """CLIP text embeddings ``[Q, D_clip]`` -> normalised DINOv2-space queries ``[Q, C]``
        (the official ``build_text_embedding`` after the template mean; its ``us.normalize``)."""
        proj = self.projection
        if text.shape[-1] != proj.clip_dim:
            raise ValueError(f"talk2dino: text embeddings of width {text.shape[-1]}, the projection takes "
                             f"{proj.clip_dim}")
        return F.normalize(proj(text.to(proj.linear_layer.weight.device)), dim=-1, eps=1e-6)

    def window_logits(self, context, text: torch.Tensor, backbone) -> torch.Tensor:
        """Scores ``[n_windows, Q, h, w]`` (or at the window's pixels with ``resize_logits``):
        sigmoid cosines of the DINOv2 features and the projected text, cleaned with ``bg_clean``."""
        feats = context.features.float()
        queries = self.project_text(text.float()).to(feats.device)
        if feats.shape[1] != queries.shape[1]:
            raise ValueError(f"talk2dino: features of width {feats.shape[1]}, projected text of {queries.shape[1]}: "
                             f"the projection does not belong to this DINO")
        scores = torch.sigmoid(torch.einsum("nchw,qc->nqhw", feats, queries))
        if self.bg_clean:
            attn = context.extras[self.ATTN].float()
            tokens = feats * context.extras[self.NORM].float()
            scores = torch.stack([clean_background(scores[i], tokens[i].flatten(1), attn[i].flatten(1), queries,
                                                   self.lambda_bg) for i in range(len(scores))])
        if self.resize_logits:
            scores = F.interpolate(scores, size=tuple(context.window_size), mode="bilinear", align_corners=True)
        return scores

    def extra_repr(self) -> str:
        return (f"checkpoint={self.checkpoint!r}, source={self.source!r}, bg_clean={self.bg_clean}, "
                f"lambda_bg={self.lambda_bg}, act={self.projection.act_name!r}, resize_logits={self.resize_logits}, "
                f"clip_dim={self.projection.clip_dim}, dino_dim={self.projection.dino_dim}")
