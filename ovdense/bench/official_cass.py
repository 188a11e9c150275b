"""CASS's image side as the official code runs it, for ``ovdense benchmark --heads cass``.

:class:`OfficialCASS` is written from the official ``CASS_segmentor.forward_slide`` /
``forward_feature`` and ``VisionTransformer.forward`` / ``custom_attn`` (MICV-yonsei/CASS,
``cass_segmentor.py``, ``clip/model.py``, ``dino/dino_attention.py``,
``dino/vision_transformer.py``), over the segmenter's CLIP and its DINO provider's weights. It keeps
the official cost structure, one window per call:

* the CLIP-normalised window is "un-normalised" with ImageNet's statistics (torchvision
  ``Normalize``), moved to the CPU, times 255, truncated to uint8 and made a PIL image, once per
  ``forward_feature`` call;
* ``VisionTransformer.forward`` runs DINO first, on every call: the PIL image resized to a square of
  the short side of the call's *input* (PIL bicubic), ``ToTensor`` + ImageNet ``Normalize``, DINO's
  ``get_intermediate_feat``: DINO's ``interpolate_pos_encoding`` computed on every call, **every**
  block with its attention matrix built explicitly (q k^T, softmax, attn v), the final norm applied
  after every block, and every block's normed tokens, attention maps and qkv kept until the call
  returns (the official keeps only the last block's qkv and discards the rest);
* CLIP's blocks before the last through ``nn.MultiheadAttention`` (the reference path of the other
  baselines), the unchanged last block for the window's CLS (``x_last``), then ``custom_attn``:
  the last block's in-projection, DINO's keys split into CLIP's heads, resized bilinearly, min-max
  rescaled onto CLIP's keys, both key graphs, the top-20 eigenvalues head by head (float64),
  the 12 x 12 cost matrix filled pair by pair in a Python loop, the Hungarian assignment on the CPU,
  then head by head the rank-10 randomised SVD of the paired DINO graph (``torch.svd_lowrank``,
  float64, ``optimal_q``'s energy test included), the singular-value stretch, the diagonal zeroed,
  the range rescale and the weighted sum; + the Gaussian term (built once per grid, by
  convolution, as the official ``addition_cache``), softmax, ``@ v``, ``out_proj``,
  ``ln_post @ proj``;
* the image prior: in sliding mode ``encode_image(whole image, the window's PIL image,
  return_cls=True)`` for every window, i.e. DINO again (on the window's PIL image resized to a
  square of the *whole image's* short side, 336 x 336 under the protocol: discarded) and CLIP's
  unchanged forward on the whole image; in whole-image mode and for Cityscapes the window's own CLS;
* ``hierarchical_prompt`` with the query clusters of the vocabulary (computed once, as the official
  does at construction), the prior moved to numpy, the cluster indices looked up, the patch features
  re-normalised for every cluster; the logits, the prior term, the reshape and the bilinear resize
  to the window (``forward_feature``); stitching as ``forward_slide`` (in
  :func:`ovdense.bench.benchmark.plain_baseline`).

What differs from the official code, none of it a different amount of work:

* the random test matrices of ``torch.svd_lowrank`` come from the global generator, which is
  reseeded with the head's ``seed`` before every window (inside ``torch.random.fork_rng``, so
  nothing outside changes): the head's default ``rng="window"``;
* ``lowrank_form="right"`` (torch 1.10's ``svd_lowrank``, the official pin, default) is computed as
  today's ``torch.svd_lowrank`` of the transposed graph (the same operations on the transposed
  matrices), ``"left"`` is today's ``torch.svd_lowrank`` itself; on another device than the CPU
  the test matrix is drawn on the CPU as the head draws it;
* the assignment is the head's Hungarian solver (the official calls scipy's
  ``linear_sum_assignment``: the same O(n^3) work on a 12 x 12 matrix; on exactly tied costs the two
  may pick different, equally cheap, pairings);
* everything runs in the segmenter's float32 (the official runs CLIP in fp16 on the GPU and rounds
  DINO's keys to fp16), as the fast path does on the CPU;
* the un-normalisation inverts the segmenter's CLIP normalisation with the provider's ``denorm``
  statistics (``cass_official``: the official ImageNet constants with its 0.255 typo).
"""
from __future__ import annotations

import copy
import math
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..features.timm_vit import DENORM_STD, IMAGENET_MEAN
from ..heads.cass import CASSHead, min_cost_assignment, ward_clusters
from .official_common import dino_pos_encoding, mha_fast_path, official_dino_model



def _gaussian_window(rows: int, cols: int, std: float) -> torch.Tensor:
    """``exp(-d^2 / (2 std^2))`` on a ``rows x cols`` window centred on its middle."""
    const = 1.0 / (std * math.sqrt(2.0))
    axes = [torch.linspace(-(n - 1) / 2.0 * const, (n - 1) / 2.0 * const, n) for n in (rows, cols)]
    return torch.exp(-(torch.stack(torch.meshgrid(*axes, indexing="ij")) ** 2).sum(0))


def _attention_addition(grid: Tuple[int, int], std: float) -> torch.Tensor:
    """The Gaussian term ``[h*w, h*w]`` built as the official code does: the one-hot map of every
    patch convolved with a ``(2h-1) x (2w-1)`` Gaussian window."""
    h, w = grid
    window = _gaussian_window(2 * h - 1, 2 * w - 1, std)
    onehot = torch.eye(h * w).reshape(h * w, 1, h, w)
    return F.conv2d(onehot, window[None, None], padding="same").reshape(h * w, h * w)


class OfficialCASS:
    """The official CASS image side, window by window (see the module docstring), for
    :func:`ovdense.bench.benchmark.plain_baseline`: ``begin_image(x)`` once per image (the
    resized, CLIP-normalised image), then ``window_logits(crop, text)`` per window: the window's
    logits ``[1, Q, H, W]`` at the window's size (the official ``forward_feature``).

    ``pairings`` lists the DINO head fused into each CLIP head, per window of the last image
    (``perm[c]``), and ``dino_calls`` counts DINO forwards (two per window in sliding mode)."""

    def __init__(self, seg) -> None:
        head = seg.head
        if not isinstance(head, CASSHead):
            raise TypeError(f"OfficialCASS needs a cass segmenter, got {type(head).__name__}")
        unofficial = {"rng": (head.rng, "window"), "rank_rule": (head.rank_rule, "first"),
                      "official_pairing": (head.official_pairing, True)}
        bad = {k: v for k, (v, want) in unofficial.items() if v != want}
        if bad:
            raise ValueError(f"the official-style CASS baseline compares with the official head behaviour "
                             f"(rng='window', rank_rule='first', official_pairing=True); got {bad}")
        provider = seg.features[head.source]
        model = official_dino_model(provider, head.source, "CASS")
        layout = (getattr(provider, "output", None) == "k"
                  and getattr(provider, "layer", -1) in (-1, len(model.blocks) - 1)
                  and getattr(provider, "input_size", None) is None and getattr(provider, "pos_interp", "") == "dino"
                  and getattr(provider, "denorm", None) in DENORM_STD and getattr(provider, "square_input", False))
        if not layout:
            raise ValueError("the official-style CASS baseline reads DINO's last-block keys of the un-normalised, "
                             "squared window: the provider must have output='k', layer=-1, input_size=None, "
                             "pos_interp='dino', denorm='cass_official' (or 'cass') and square_input=True")
        self.seg, self.head = seg, head
        self.model = copy.deepcopy(model).eval()  # the official's own DINO (same weights)
        self.patch = int(self.model.patch_embed.patch_size[0])
        std = DENORM_STD[provider.denorm]
        self.inv_mean = [-m / s for m, s in zip(IMAGENET_MEAN, std)]
        self.inv_std = [1 / s for s in std]
        self.dino_mean = [float(m) / 255.0 for m in provider.mean.flatten()]
        self.dino_std = [float(s) / 255.0 for s in provider.std.flatten()]
        self.addition_cache: dict = {}
        self.clusters: dict = {}
        self.whole: Optional[torch.Tensor] = None
        self.pairings: List[np.ndarray] = []
        self.dino_calls = 0

    # ------------------------------------------------------------------ DINO
    def inverse_image(self, crop: torch.Tensor):
        """``inv_normalize(img.squeeze().cpu()).permute(1, 2, 0).numpy() * 255`` as a uint8 PIL image."""
        from PIL import Image
        from torchvision.transforms import functional as TF

        inv = TF.normalize(crop[0].float().cpu(), self.inv_mean, self.inv_std).permute(1, 2, 0).numpy() * 255
        return Image.fromarray(inv.astype("uint8"))

    def _pos_encoding(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """DINO's ``interpolate_pos_encoding``, recomputed on every call."""
        return dino_pos_encoding(self.model.pos_embed, tokens, height, width, self.patch)

    def _block(self, blk, x: torch.Tensor):
        """DINO's ``Block(x, return_qkv=True)``: explicit attention; returns (x, attn, qkv)."""
        attn = blk.attn
        b, n, c = x.shape
        qkv = attn.qkv(blk.norm1(x)).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]
        weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
        y = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))
        x = x + blk.drop_path1(blk.ls1(y))
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return x, weights, qkv

    @torch.no_grad()
    def dino(self, image, side: int) -> torch.Tensor:
        """``VisionTransformer.forward``'s DINO call: the PIL ``image`` resized to ``side x side``,
        DINO's ``get_intermediate_feat``; returns the last block's keys ``[1, C, I, J]`` (channel
        ``head * d + i``, the layout of the official ``qkv[1]`` reshape)."""
        from PIL import Image
        from torchvision.transforms import functional as TF

        self.dino_calls += 1
        image = image.resize((side, side), getattr(Image, "Resampling", Image).BICUBIC)
        img = TF.normalize(TF.to_tensor(image), self.dino_mean, self.dino_std)
        h, w = img.shape[1] - img.shape[1] % self.patch, img.shape[2] - img.shape[2] % self.patch
        img = img[:, :h, :w].unsqueeze(0).to(self.seg.device)
        m = self.model
        x = m.patch_embed.proj(img).flatten(2).transpose(1, 2)
        x = torch.cat((m.cls_token.expand(1, -1, -1), x), dim=1)
        x = m.pos_drop(x + self._pos_encoding(x, img.shape[-2], img.shape[-1]))
        feats, attns, qkvs = [], [], []
        for blk in m.blocks:
            x, attn, qkv = self._block(blk, x)
            feats.append(m.norm(x))
            attns.append(attn)
            qkvs.append(qkv)
        key = qkvs[-1][1, :, :, 1:, :].squeeze(0).permute(0, 2, 1)  # [heads, d, N]
        return key.reshape(1, -1, h // self.patch, w // self.patch)

    # ------------------------------------------------------------------ CLIP
    def begin_image(self, x: torch.Tensor) -> None:
        """The resized, CLIP-normalised image ``[3, H, W]`` (the official ``whole_img``)."""
        self.whole = x[None]
        self.pairings = []

    def _clip_cls(self, img: torch.Tensor):
        """CLIP's unchanged forward up to ``x_last`` (``ln_post(CLS) @ proj``); also the view before
        the last block."""
        bb = self.seg.backbone
        with mha_fast_path(False):
            view = bb.prefix(img, fused=False)
            out = bb.run_blocks(view.x, [bb.last_block], fused=False)
        return view, bb.project(out[:, 0]).float()

    def _addition(self, grid: Tuple[int, int]) -> torch.Tensor:
        if grid not in self.addition_cache:
            self.addition_cache[grid] = _attention_addition(grid, self.head.gaussian_std)[None].to(self.seg.device)
        return self.addition_cache[grid]

    def _lowrank(self, graph: torch.Tensor):
        """The official ``optimal_q``: ``torch.svd_lowrank`` at q = 10 and its energy test (passes at q = 10)."""
        head = self.head
        a = graph.type(torch.float64)
        q = min(head.rank, a.shape[-1])
        while True:
            if a.device.type != "cpu":
                from ..heads.cass import randomized_lowrank

                r = torch.randn(a.shape[-1], q, dtype=torch.float64)  # the head's draw, on the CPU
                u, s, v = randomized_lowrank(a, r.to(a.device), head.niter, head.lowrank_form)
            elif head.lowrank_form == "left":
                u, s, v = torch.svd_lowrank(a, q=q, niter=head.niter)
            else:  # torch 1.10: the approximation A Q Q^T from a basis of A^T
                v, s, u = torch.svd_lowrank(a.mT, q=q, niter=head.niter)
            share = torch.cumsum(s, dim=0) / torch.sum(s)
            if (share >= head.energy_threshold).any():
                torch.searchsorted(share, head.energy_threshold).item()  # the official's discarded rank
                return u, s, v
            q += 5  # never reached: the last share is 1

    @staticmethod
    def _rescale(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s_min, s_max = source.min(), source.max()
        t_min, t_max = target.min(), target.max()
        return (source - s_min) / (s_max - s_min) * (t_max - t_min) + t_min

    def _stretch(self, s: torch.Tensor) -> torch.Tensor:
        if not self.head.scale_singular:
            return s
        s_new = s.clone()
        lo, hi = s.min(), s.max()
        return (s_new - lo) / (hi - lo) * (1.5 * hi - 0.5 * lo) + 0.5 * lo

    def _spectrum(self, graphs: torch.Tensor) -> torch.Tensor:
        vals = []
        for i in range(graphs.shape[0]):
            v = torch.sort(torch.linalg.eigvalsh(graphs[i]), descending=True).values
            vals.append(v[: self.head.k_eigen])
        return torch.stack(vals)

    def _fused_graphs(self, k: torch.Tensor, dino_k: torch.Tensor, scale: float) -> torch.Tensor:
        head = self.head
        heads = k.shape[0]
        attn = torch.bmm(k, k.transpose(1, 2)) * scale
        dino_attn = torch.bmm(dino_k, dino_k.transpose(1, 2)) * scale
        combined = torch.zeros_like(attn)
        if head.attn_strategy == "sequential":
            for idx in range(heads):
                u, s, v = self._lowrank(dino_attn[idx])
                approx = u @ torch.diag(s) @ v.T
                approx.fill_diagonal_(0)
                combined[idx] = (self._rescale(approx, attn[idx]) + attn[idx]) / 2
            return combined
        dino_vals = F.normalize(self._spectrum(dino_attn.type(torch.float64)), p=2, dim=1)
        clip_vals = F.normalize(self._spectrum(attn.type(torch.float64)), p=2, dim=1)
        cost = torch.zeros(heads, heads).to(k.device)
        for i in range(heads):
            d = dino_vals[i].unsqueeze(0)
            for j in range(heads):
                c = clip_vals[j].unsqueeze(0)
                d_prob, c_prob = F.normalize(d, p=1, dim=-1), F.normalize(c, p=1, dim=-1)
                cost[i, j] = 1 - torch.sum(torch.abs(torch.sort(d_prob).values - torch.sort(c_prob).values))
        perm = min_cost_assignment(cost.detach().cpu().numpy())
        self.pairings.append(perm)
        for idx in range(heads):
            i, j = idx, int(perm[idx])
            w_d = 1 - cost[i, j]
            u, s, v = self._lowrank(dino_attn[j])
            approx = u @ torch.diag(self._stretch(s)) @ v.T
            approx.fill_diagonal_(0)
            dino_adj = self._rescale(approx, attn[i])
            combined[idx] = (w_d * head.scale_factor * dino_adj + attn[i]) / (w_d * head.scale_factor + 1)
        return combined

    def custom_attn(self, view, dino_keys: torch.Tensor) -> torch.Tensor:
        """The last block's ``custom_attn`` for one window (``view`` of batch 1), then ``ln_post @ proj``:
        ``[1, n, D]``."""
        bb, head = self.seg.backbone, self.head
        _, heads, _, d = view.k.shape
        q, k, v = view.q[0, :, 1:], view.k[0, :, 1:], view.v[0, :, 1:]  # [heads, n, d]
        grid = view.grid
        if head.attn_strategy == "vanilla":
            weights = F.softmax(torch.bmm(q * view.scale, k.transpose(1, 2)), dim=-1)
        else:
            rows, cols = dino_keys.shape[-2:]
            dk = dino_keys[0].float().reshape(heads, -1, rows, cols)
            dk = F.interpolate(dk, size=grid, mode="bilinear", align_corners=False)
            dk = dk.reshape(heads, dk.shape[1], -1).permute(0, 2, 1)
            dk = self._rescale(dk, k)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(head.seed)  # the head's rng="window"
                weights = self._fused_graphs(k, dk, view.scale)
            weights = F.softmax(weights + self._addition(grid), dim=-1)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(1, -1, heads * d)
        blk = bb.last_block
        return bb.project(blk.ls_1(blk.attn.out_proj(out)))

    def _clusters(self, text: torch.Tensor) -> np.ndarray:
        key = (id(text), text._version, self.head.h_threshold)
        if key not in self.clusters:  # the official computes them once, at construction
            self.clusters = {key: (text, ward_clusters(text, self.head.h_threshold))}  # keeps text alive
        return self.clusters[key][1]

    def hierarchical_prompt(self, feats: torch.Tensor, global_sim: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The official per-window text adjustment: ``feats`` ``[n, D]``, ``global_sim`` ``[1, Q]``."""
        clusters = self._clusters(text)
        sims = global_sim.squeeze(0).detach().cpu().numpy()
        text_features = text.clone().detach()
        adjusted = text_features.clone()
        for cluster in range(len(set(clusters.tolist()))):
            indices = np.where(clusters == cluster)[0]
            chosen = int(indices[np.argmax(sims[indices])])
            t = F.normalize(text_features[chosen].unsqueeze(0), dim=1)
            feats_norm = F.normalize(feats, dim=1)
            top = torch.topk(torch.matmul(feats_norm, t.t()).squeeze(1), min(self.head.topk, feats.shape[0])).indices
            mean = F.normalize(feats[top].mean(dim=0), dim=0)
            a = self.head.mean_vector_weight
            adjusted[chosen] = F.normalize((1 - a) * t.squeeze(0) + a * mean, dim=0)
        return adjusted

    @torch.no_grad()
    def window_logits(self, crop: torch.Tensor, text: torch.Tensor,
                      ex_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``forward_feature`` of one CLIP-normalised crop ``[1, 3, H, W]``: logits ``[1, Q, H, W]``.
        ``ex_feats``: DINO keys ``[1, C, I, J]`` to use instead of running DINO (the parity check;
        then the discarded DINO call of the image prior is skipped as well)."""
        head, text = self.head, text.float()
        inv_image = self.inverse_image(crop)
        keys = self.dino(inv_image, min(crop.shape[-2:])) if ex_feats is None else ex_feats
        view, x_last = self._clip_cls(crop)
        feats = self.custom_attn(view, keys).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        x_last = x_last / x_last.norm(dim=-1, keepdim=True)
        whole = self.whole if self.whole is not None and not self.seg.windows.whole else None
        if whole is None or head.global_source == "window":
            global_sim = x_last @ text.T
        else:
            if ex_feats is None:
                self.dino(inv_image, min(whole.shape[-2:]))  # encode_image(whole_img, inv_image): DINO first
            _, g = self._clip_cls(whole)
            global_sim = (g / g.norm(dim=-1, keepdim=True)) @ text.T
        adjusted = self.hierarchical_prompt(feats[0], global_sim, text)
        logits = feats @ adjusted.T  # [1, n, Q]
        logits = logits * (1 - head.global_weight) + \
            global_sim.reshape(1, 1, -1).repeat(1, logits.shape[1], 1) * head.global_weight
        logits = logits.permute(0, 2, 1).reshape(1, -1, *view.grid)
        return F.interpolate(logits, size=crop.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def vfm(self, crop: torch.Tensor) -> torch.Tensor:
        """DINO's keys ``[1, C, I, J]`` of one crop, as a window's ``forward_feature`` computes them."""
        return self.dino(self.inverse_image(crop), min(crop.shape[-2:]))

    @torch.no_grad()
    def image_vfm(self, crops: torch.Tensor, whole_size: Tuple[int, int]) -> torch.Tensor:
        """All DINO work of one image: per window its keys and, in sliding mode with the image prior,
        the discarded call at the whole image's short side. Returns the windows' keys."""
        out = []
        prior = not self.seg.windows.whole and self.head.global_source == "image"
        for c in crops:
            inv = self.inverse_image(c[None])
            out.append(self.dino(inv, min(c.shape[-2:])))
            if prior:
                self.dino(inv, min(whole_size))
        return torch.cat(out)

    def dino_grids(self, window_size: Tuple[int, int], whole_size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """The DINO grids of one window's calls."""
        grids = [(min(window_size) // self.patch,) * 2]
        if not self.seg.windows.whole and self.head.global_source == "image":
            grids.append((min(whole_size) // self.patch,) * 2)
        return grids
