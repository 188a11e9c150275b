"""CASS (Kim et al., CVPR 2025): spectral DINO graphs distilled into CLIP's last attention, and
object-presence-driven text adjustment.

Window side (:meth:`CASSHead.forward`), per window, with CLIP's last-block keys ``k`` (patch
tokens, per head, ``[heads, n, d]``) and DINO's last-block keys ``k_D`` (the provider ``source``,
``[B, C, I, J]``, e.g. ``timm_vit(output="k")``):

    k_D  = bilinear(k_D split into CLIP's heads, I x J -> h x w)      C / heads channels per head
    k_D  = minmax(k_D) rescaled to [min k, max k]                     (one range over all heads)
    A    = k k^T s,  A_D = k_D k_D^T s                                 s = d^-1/2 (CLIP's)
    e, e_D = top-20 eigenvalues of each head's A, A_D (descending), L2-normalised, then L1-normalised
    W[i, j] = sum |sort e_D[i] - sort e[j]|        (1-Wasserstein between DINO head i and CLIP head j)
    perm = Hungarian(1 - W)                         (DINO head i <-> CLIP head perm[i]; maximises W)
    per CLIP head c:   D = lowrank_10(A_D[dino head of c]), singular values stretched to
                       [0.5 s_min, 1.5 s_max] (except VOC20 and Cityscapes), diagonal zeroed,
                       rescaled to [min A[c], max A[c]]
                       G[c] = (10 w D + A[c]) / (10 w + 1)            w = W of the pair
    z = out_proj(softmax(G + gauss_5) v)            patch tokens only; no residual, no MLP
    features = normalise(ln_post(z) @ proj);   extra "cass_cls": the unchanged block's CLS, projected

Text side (:meth:`CASSHead.window_logits`, called by the segmenter instead of plain cosines):
queries are grouped once per vocabulary (Ward linkage on cosine distances, cut at ``h_threshold``);
with ``g`` the CLS embedding of the whole resized image (or of the window), each group's query with
the highest ``cos(g, t)`` is replaced by ``normalise((1 - a) t + a m)``, ``m`` the normalised mean of
the window's 2 patch features closest to ``t``; logits = ``(1 - b) cos(f, t') + b cos(g, t)``.

This is the official ``CASS_segmentor`` / ``VisionTransformer.custom_attn`` (MICV-yonsei/CASS). Its
quirks, and what this head does (``default`` = the published numbers' behaviour):

* ``torch.svd_lowrank`` draws its random test matrix from the global torch generator, so the
  official results depend on everything that used the RNG before. Here a private
  ``torch.Generator(seed)`` draws it (on the CPU, then moved): ``rng="window"`` (default) reseeds it
  for every window (results independent of batching and call history; equals the official code on
  that window after ``torch.manual_seed(seed)``), ``rng="stream"`` seeds it once (and on
  :meth:`reset_rng`) and draws window after window, like the official global RNG after
  ``torch.manual_seed(seed)`` at the start of a run.
* The rank-q approximation: ``optimal_q`` computes an "energy" rank but it is discarded and its
  stop test always passes at ``q = 10`` (the last cumulative share is 1): the graph is always the
  rank-10 randomised approximation (default ``rank_rule="first"``); ``rank_rule="energy"`` keeps
  only the components that reach ``energy_threshold``, as the paper describes. Windows with fewer
  than 10 patches crash the official code; here ``q = min(rank, n)``.
* ``torch.svd_lowrank`` changed between torch 1.10 (the official pin: basis of ``A^T``,
  approximation ``A Q Q^T``) and recent torch (basis of ``A``, ``Q Q^T A``, its transpose for a
  symmetric graph). ``lowrank_form="right"`` (default) is torch 1.10's, ``"left"`` the newer one
  (the goldens in tests/fixtures/goldens were made with torch 2.14).
* Head pairing: the Hungarian match pairs DINO head ``i`` with CLIP head ``perm[i]``, but the loop
  fuses DINO head ``perm[i]`` into CLIP head ``i`` (weight ``W[i, perm[i]]``). Default
  ``official_pairing=True`` keeps that; ``False`` fuses each CLIP head with its matched DINO head.
* Singular-value stretch only for datasets other than VOC20 / Cityscapes (the official code
  branches on the config's file name): ``scale_singular`` per config.
* Whole-image mode resizes the logits to the resized image, then (in ``predict``) to the input:
  two bilinear steps (``whole_resize="canvas"``, default; ``None``: straight to the output).
* DINO's input (``timm_vit(denorm="cass_official", square_input=True)``, see that provider) and
  precision (DINO keys rounded to fp16 in the official code; here fp32 unless the segmenter runs
  fp16) live outside this head.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.clip import supports_fused_forward
from ..registry import HEADS
from ..structures import DenseFeatures
from .base import Head
from .naclip import gaussian_addition


# ---------------------------------------------------------------------------------- helpers
def top_eigenvalues(graphs: torch.Tensor, k: int) -> torch.Tensor:
    """``[H, n, n]`` symmetric graphs -> their ``k`` largest eigenvalues, descending (float64)."""
    vals = torch.linalg.eigvalsh(graphs.double())
    return torch.sort(vals, dim=-1, descending=True).values[:, :k]


def spectral_distance(dino_vals: torch.Tensor, clip_vals: torch.Tensor) -> torch.Tensor:
    """``W[i, j]``: L1 distance between the sorted, L1-normalised (after L2) spectra of DINO head i and
    CLIP head j (the official ``wasserstein_distance_pytorch``)."""
    d = F.normalize(F.normalize(dino_vals, p=2, dim=1), p=1, dim=1)
    c = F.normalize(F.normalize(clip_vals, p=2, dim=1), p=1, dim=1)
    d, c = torch.sort(d, dim=1).values, torch.sort(c, dim=1).values
    return (d[:, None, :] - c[None, :, :]).abs().sum(-1)


def min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """Column assigned to each row of a square cost matrix, minimising the total (Hungarian
    algorithm, shortest augmenting paths; equal to ``scipy.optimize.linear_sum_assignment``)."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # match[col] = row (1-based), 0 = free
    way = np.zeros(n + 1, dtype=np.int64)
    for row in range(1, n + 1):
        match[0] = row
        col0 = 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[col0] = True
            r0 = match[col0]
            delta, col1 = np.inf, 0
            for col in range(1, n + 1):
                if not used[col]:
                    cur = cost[r0 - 1, col - 1] - u[r0] - v[col]
                    if cur < minv[col]:
                        minv[col], way[col] = cur, col0
                    if minv[col] < delta:
                        delta, col1 = minv[col], col
            for col in range(n + 1):
                if used[col]:
                    u[match[col]] += delta
                    v[col] -= delta
                else:
                    minv[col] -= delta
            col0 = col1
            if match[col0] == 0:
                break
        while col0:
            col1 = way[col0]
            match[col0] = match[col1]
            col0 = col1
    out = np.zeros(n, dtype=np.int64)
    for col in range(1, n + 1):
        out[match[col] - 1] = col - 1
    return out


def randomized_lowrank(a: torch.Tensor, r: torch.Tensor, niter: int = 2, form: str = "right"
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.svd_lowrank(a, q, niter)`` with the random test matrix ``r`` ``[n, q]`` given.

    ``form="left"``: recent torch (basis of ``a``'s range, ``U S V^T = Q Q^T a``); ``"right"``: torch
    1.10 for ``n > q`` (basis of ``a^T``, ``U S V^T = a Q Q^T``)."""
    m = a.mT if form == "right" else a
    q = torch.linalg.qr(m @ r).Q
    for _ in range(niter):
        q = torch.linalg.qr(m.mT @ q).Q
        q = torch.linalg.qr(m @ q).Q
    if form == "right":
        u, s, vh = torch.linalg.svd(a @ q, full_matrices=False)
        return u, s, q @ vh.mT
    u, s, vh = torch.linalg.svd(q.mT @ a, full_matrices=False)
    return q @ u, s, vh.mT


def rescale_range(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` min-max mapped onto ``[target.min(), target.max()]``."""
    s_min, s_max = source.min(), source.max()
    t_min, t_max = target.min(), target.max()
    return (source - s_min) / (s_max - s_min) * (t_max - t_min) + t_min


def stretch_singular_values(s: torch.Tensor) -> torch.Tensor:
    """The official ``_scale_singular_values``: ``[s_min, s_max] -> [0.5 s_min, 1.5 s_max]``."""
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) * (1.5 * hi - 0.5 * lo) + 0.5 * lo


def ward_clusters(text: torch.Tensor, threshold: float) -> np.ndarray:
    """Flat clusters of the rows of ``text`` ``[Q, D]``: Ward linkage on cosine distances
    (``sklearn`` ``cosine_distances``), cut where merges exceed ``threshold`` (scipy ``fcluster(...,
    criterion='distance')``). Returns a cluster label per row (labels are arbitrary)."""
    x = text.detach().double().cpu().numpy()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    d = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    n = len(d)
    np.fill_diagonal(d, np.inf)
    d = np.minimum(d, d.T)  # exact symmetry
    size = np.ones(n)
    labels = np.arange(n)
    alive = np.ones(n, dtype=bool)
    for _ in range(n - 1):
        masked = np.where(alive[:, None] & alive[None, :], d, np.inf)
        flat = int(np.argmin(masked))
        i, j = divmod(flat, n)
        if not masked[i, j] <= threshold:
            break
        dij = d[i, j]
        others = alive.copy()
        others[[i, j]] = False
        k = np.flatnonzero(others)
        total = size[i] + size[j] + size[k]
        new = np.sqrt(np.maximum(((size[i] + size[k]) * d[i, k] ** 2 + (size[j] + size[k]) * d[j, k] ** 2
                                  - size[k] * dij ** 2) / total, 0.0))
        d[i, k] = d[k, i] = new
        size[i] += size[j]
        alive[j] = False
        d[j, :] = d[:, j] = np.inf
        labels[labels == j] = i
    return np.unique(labels, return_inverse=True)[1]


@contextmanager
def one_cpu_thread(device):
    """Torch on one CPU thread inside the block (nothing changes on other devices).

    The per-window spectral work is many small LAPACK calls (``eigvalsh`` of 196 x 196 graphs, QR
    and SVD of 196 x 10 bases): threading gains nothing there, and on a CPU shared with other
    processes every threaded call waits for a descheduled worker at each of its barriers (measured
    on 2 shared cores: ``eigvalsh`` of 12 graphs 3 s to 19 s with 2 threads, 0.03 s with one)."""
    previous = torch.get_num_threads()
    if torch.device(device).type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def unchanged_cls(backbone, x: torch.Tensor, qkv: Optional[Tuple[torch.Tensor, ...]] = None) -> torch.Tensor:
    """The CLS token ``[B, C]`` after CLIP's unchanged last block on its input ``x`` ``[B, N, C]``
    (``backbone.run_blocks(x, [last_block])[:, 0]``), computed for the CLS query alone: its
    attention over all tokens, ``out_proj``, the residuals and the MLP on one token instead of N.
    ``qkv``: the block's per-head ``q, k, v`` of ``x`` when already computed (a ``BlockView``'s)."""
    blk = backbone.last_block
    if not supports_fused_forward(blk):
        return backbone.run_blocks(x, [blk])[:, 0]
    q, k, v = backbone.qkv(x) if qkv is None else qkv
    b, h, _, d = q.shape
    mixed = F.scaled_dot_product_attention(q[:, :, :1], k, v).transpose(1, 2).reshape(b, 1, h * d)
    z = x[:, :1] + blk.ls_1(blk.attn.out_proj(mixed))
    return (z + blk.ls_2(blk.mlp(blk.ln_2(z))))[:, 0]


# ---------------------------------------------------------------------------------- head
@HEADS.register_module("cass")
class CASSHead(Head):
    """Args:
        source: the feature provider with DINO's last-block keys (``timm_vit(output="k")``); its
            channels are split into CLIP's heads (the official code needs equal widths).
        gaussian_std: sigma of the additive neighbourhood window (patches; official 5).
        attn_strategy: ``"spectral"`` (CASS), ``"sequential"`` (the official ablation: DINO head i
            with CLIP head i, plain average, no stretch) or ``"vanilla"`` (``softmax(q k^T s) v``).
        scale_factor, k_eigen, rank, energy_threshold: official 10, 20, 10, 0.95.
        rank_rule: ``"first"`` (official: always ``rank``) or ``"energy"`` (the energy rank).
        scale_singular: stretch the singular values (official: all datasets but VOC20, Cityscapes).
        official_pairing: fuse DINO head ``perm[c]`` into CLIP head ``c`` as the official loop does.
        lowrank_form: ``"right"`` (torch 1.10's ``svd_lowrank``, the official pin) or ``"left"``.
        niter: subspace iterations of the randomised SVD (torch's default 2).
        seed, rng: the private generator of the random test matrices (``"window"`` | ``"stream"``).
        global_weight: weight ``b`` of the image-level CLS similarity in the logits.
        mean_vector_weight: weight ``a`` of the patch mean in the adjusted text embeddings.
        h_threshold: the cut of the Ward dendrogram grouping the queries.
        topk: patches averaged per adjusted query (official 2).
        global_source: ``"image"`` (CLS of the whole resized image, the official sliding mode) or
            ``"window"`` (each window's CLS: the official Cityscapes config, and whole-image mode).
        whole_resize: ``"canvas"`` (official: whole-image logits resized to the resized image first)
            or None.
    """

    keep_residual = False
    keep_ffn = False
    extras = ("cass_cls",)
    host_work = True  # the Hungarian pairing and the query grouping run on the host
    STRATEGIES = ("spectral", "sequential", "vanilla")

    def __init__(self, source: str = "dino", gaussian_std: float = 5.0, attn_strategy: str = "spectral",
                 scale_factor: float = 10.0, k_eigen: int = 20, rank: int = 10, energy_threshold: float = 0.95,
                 rank_rule: str = "first", scale_singular: bool = True, official_pairing: bool = True,
                 lowrank_form: str = "right", niter: int = 2, seed: int = 0, rng: str = "window",
                 global_weight: float = 0.0, mean_vector_weight: float = 0.0, h_threshold: float = 0.0,
                 topk: int = 2, global_source: str = "image", whole_resize: Optional[str] = "canvas") -> None:
        super().__init__()
        checks = {"attn_strategy": (attn_strategy, self.STRATEGIES), "rank_rule": (rank_rule, ("first", "energy")),
                  "lowrank_form": (lowrank_form, ("right", "left")), "rng": (rng, ("window", "stream")),
                  "global_source": (global_source, ("image", "window")),
                  "whole_resize": (whole_resize, ("canvas", None))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"cass: {name} must be one of {allowed}, got {value!r}")
        if gaussian_std <= 0 or rank < 1 or k_eigen < 1 or topk < 1:
            raise ValueError("cass: gaussian_std, rank, k_eigen and topk must be positive")
        self.source = source
        self.requires = (source,)
        self.gaussian_std = float(gaussian_std)
        self.attn_strategy = attn_strategy
        self.scale_factor, self.k_eigen, self.rank = float(scale_factor), int(k_eigen), int(rank)
        self.energy_threshold, self.rank_rule = float(energy_threshold), rank_rule
        self.scale_singular, self.official_pairing = bool(scale_singular), bool(official_pairing)
        self.lowrank_form, self.niter = lowrank_form, int(niter)
        self.seed, self.rng = int(seed), rng
        self.global_weight, self.mean_vector_weight = float(global_weight), float(mean_vector_weight)
        self.h_threshold, self.topk = float(h_threshold), int(topk)
        self.global_source, self.whole_resize = global_source, whole_resize
        self._generator = torch.Generator().manual_seed(self.seed)
        self._gauss: dict = {}
        self._clusters: "OrderedDict[str, List[np.ndarray]]" = OrderedDict()

    def reset_rng(self) -> None:
        """Reseed the ``rng="stream"`` generator (as ``torch.manual_seed(seed)`` before an official run)."""
        self._generator.manual_seed(self.seed)

    # ------------------------------------------------------------------ window side
    def _addition(self, grid: Tuple[int, int], device) -> torch.Tensor:
        key = (grid, device)
        if key not in self._gauss:
            self._gauss[key] = gaussian_addition(grid, self.gaussian_std, torch.float32, device)[1:, 1:]
        return self._gauss[key]

    def dino_keys(self, dino: torch.Tensor, k: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """Provider keys ``[C, I, J]`` of one window -> ``[heads, n, C / heads]`` on CLIP's grid,
        rescaled to the range of CLIP's keys ``k`` ``[heads, n, d]``."""
        heads = k.shape[0]
        c = dino.shape[0]
        if c % heads:
            raise ValueError(f"cass: the provider's {c} channels do not split into CLIP's {heads} heads")
        keys = dino.reshape(heads, c // heads, *dino.shape[-2:])
        keys = F.interpolate(keys, size=grid, mode="bilinear", align_corners=False)
        keys = keys.reshape(heads, c // heads, -1).transpose(1, 2)
        return rescale_range(keys, k)

    def _draw(self, n: int, q: int, generator: torch.Generator, device) -> torch.Tensor:
        return torch.randn(n, q, dtype=torch.float64, generator=generator).to(device)

    def _lowrank(self, graph: torch.Tensor, generator: torch.Generator, stretch: bool) -> torch.Tensor:
        """The official ``optimal_q`` + low-rank reconstruction of one DINO graph (float64), diagonal zeroed."""
        a = graph.double()
        n = a.shape[-1]
        q = min(self.rank, n)
        u, s, v = randomized_lowrank(a, self._draw(n, q, generator, a.device), self.niter, self.lowrank_form)
        if self.rank_rule == "energy":
            share = torch.cumsum(s, 0) / s.sum()
            keep = int(torch.searchsorted(share, torch.tensor(self.energy_threshold, dtype=share.dtype))) + 1
            u, s, v = u[:, :keep], s[:keep], v[:, :keep]
        if stretch:
            s = stretch_singular_values(s)
        approx = u @ torch.diag(s) @ v.T
        approx.fill_diagonal_(0)
        return approx

    def _lowrank_onto(self, graphs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
                      stretch: bool) -> torch.Tensor:
        """:meth:`_lowrank` of each DINO graph ``[m, n, n]``, min-max rescaled onto the matching CLIP
        graph of ``targets`` ``[m, n, n]`` (float64). The random test matrices are drawn in the row
        order, one per graph, as the one-by-one calls draw them; with ``rank_rule="first"`` the m
        randomised SVDs, reconstructions and rescales run batched (the same operations per graph)."""
        if self.rank_rule != "first":
            return torch.stack([rescale_range(self._lowrank(g, generator, stretch), t)
                                for g, t in zip(graphs, targets)])
        a = graphs.double()
        m, n = a.shape[0], a.shape[-1]
        q = min(self.rank, n)
        r = torch.stack([self._draw(n, q, generator, a.device) for _ in range(m)])
        u, s, v = randomized_lowrank(a, r, self.niter, self.lowrank_form)
        if stretch:
            lo, hi = s.amin(dim=-1, keepdim=True), s.amax(dim=-1, keepdim=True)
            s = (s - lo) / (hi - lo) * (1.5 * hi - 0.5 * lo) + 0.5 * lo
        approx = (u * s[:, None, :]) @ v.mT  # = u @ diag(s) @ v^T (exact: the diagonal adds zeros)
        approx.diagonal(dim1=-2, dim2=-1).zero_()
        s_min, s_max = approx.amin(dim=(-2, -1), keepdim=True), approx.amax(dim=(-2, -1), keepdim=True)
        t_min, t_max = targets.amin(dim=(-2, -1), keepdim=True), targets.amax(dim=(-2, -1), keepdim=True)
        return (approx - s_min) / (s_max - s_min) * (t_max - t_min) + t_min

    def fused_graph(self, k: torch.Tensor, dino_k: torch.Tensor, scale: float,
                    generator: torch.Generator) -> torch.Tensor:
        """One window's attention logits ``[heads, n, n]`` before the Gaussian term (float32)."""
        clip_g = torch.bmm(k, k.transpose(1, 2)) * scale
        dino_g = torch.bmm(dino_k, dino_k.transpose(1, 2)) * scale
        heads = k.shape[0]
        if self.attn_strategy == "sequential":
            dino = self._lowrank_onto(dino_g, clip_g, generator, False)
            return ((dino + clip_g) / 2).float()
        dist = spectral_distance(top_eigenvalues(dino_g, self.k_eigen), top_eigenvalues(clip_g, self.k_eigen))
        cost = (1 - dist).float()  # the official cost matrix is float32
        perm = min_cost_assignment(cost.cpu().numpy())
        if self.official_pairing:  # CLIP head c gets DINO head perm[c]
            d_heads = torch.as_tensor(perm, dtype=torch.long)
            weight = cost[torch.arange(heads), d_heads.to(cost.device)]
        else:  # CLIP head c gets the DINO head matched to it
            d_heads = torch.as_tensor(np.argsort(perm), dtype=torch.long)
            weight = cost[d_heads.to(cost.device), torch.arange(heads)]
        dino = self._lowrank_onto(dino_g[d_heads.to(dino_g.device)], clip_g, generator, self.scale_singular)
        w = ((1 - weight) * self.scale_factor)[:, None, None]  # float32, as the official 0-dim tensors
        return ((w * dino + clip_g) / (w + 1)).float()

    def forward(self, view, backbone, aux=None) -> DenseFeatures:
        b, heads = view.k.shape[:2]
        grid = view.grid
        k = view.k[:, :, 1:].float()
        v = view.v[:, :, 1:].float()
        if self.attn_strategy == "vanilla":
            q = view.q[:, :, 1:].float()
            weights = (q @ k.transpose(-1, -2) * view.scale).softmax(-1)
        else:
            dino = aux[self.source].float()
            graphs = []
            with one_cpu_thread(k.device):
                for i in range(b):
                    generator = self._generator
                    if self.rng == "window":
                        generator = torch.Generator().manual_seed(self.seed)
                    dino_k = self.dino_keys(dino[i], k[i], grid)
                    graphs.append(self.fused_graph(k[i], dino_k, view.scale, generator))
            weights = (torch.stack(graphs) + self._addition(grid, k.device)).softmax(-1)
        mixed = (weights @ v).to(view.v.dtype)
        tokens = backbone.project(self.finish(view, backbone, mixed))
        cls = backbone.project(unchanged_cls(backbone, view.x, (view.q, view.k, view.v))[:, None]).float()
        cls = F.normalize(cls[:, 0], dim=-1)[:, :, None, None]
        return DenseFeatures.from_tokens(tokens, grid, cass_cls=cls)

    # ------------------------------------------------------------------ text side
    def query_groups(self, text: torch.Tensor) -> List[np.ndarray]:
        """Indices of the queries in each Ward cluster of the vocabulary (cached per text matrix)."""
        key = hashlib.sha1(text.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
        key = f"{key}-{self.h_threshold}"
        if key not in self._clusters:
            labels = ward_clusters(text, self.h_threshold)
            self._clusters[key] = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
            while len(self._clusters) > 8:
                self._clusters.popitem(last=False)
        return self._clusters[key]

    def image_cls(self, context, backbone) -> torch.Tensor:
        """Normalised CLS embedding ``[D]`` of the whole resized image (CLIP's unchanged forward), once per image."""
        def compute():
            view = backbone.prefix(context.guide[None].to(backbone.device))
            x = unchanged_cls(backbone, view.x, (view.q, view.k, view.v))
            return F.normalize(backbone.project(x[:, None]).float()[0, 0], dim=-1)

        shared = getattr(context, "shared", None)  # the context's per-image cache, where there is one
        return shared(("cass_image_cls", id(backbone)), compute) if shared is not None else compute()

    def adjusted_text(self, feats: torch.Tensor, text: torch.Tensor, global_sim: torch.Tensor) -> torch.Tensor:
        """The official ``hierarchical_prompt`` for one window: ``feats`` ``[n, D]`` (normalised),
        ``text`` ``[Q, D]``, ``global_sim`` ``[Q]`` -> adjusted text ``[Q, D]``."""
        out = text.clone()
        groups = self.query_groups(text)
        chosen = torch.as_tensor(np.array([g[int(torch.argmax(global_sim[g]))] for g in groups]),
                                 dtype=torch.long, device=text.device)
        t = F.normalize(text[chosen], dim=1)  # [G, D]
        sims = F.normalize(feats, dim=1) @ t.T  # [n, G]
        top = torch.topk(sims.T, min(self.topk, feats.shape[0]), dim=1).indices  # [G, k]
        mean = F.normalize(feats[top].mean(dim=1), dim=1)
        a = self.mean_vector_weight
        out[chosen] = F.normalize((1 - a) * t + a * mean, dim=1)
        return out

    def window_logits(self, context, text: torch.Tensor, backbone) -> torch.Tensor:
        """Logits ``[n_windows, Q, h, w]`` of the context's windows with the per-window adjusted text
        and the image-level prior; the segmenter stitches them like plain cosines."""
        feats = context.features.float()
        nw, dim, h, w = feats.shape
        text = text.to(feats.device, torch.float32)
        if self.global_source == "window" or context.whole:
            g = context.extras["cass_cls"].float().reshape(nw, dim)
        else:
            g = self.image_cls(context, backbone).to(feats.device).expand(nw, dim)
        global_sim = g @ text.T  # [nw, Q]
        flat = feats.flatten(2).transpose(1, 2)  # [nw, n, D]
        out = []
        for i in range(nw):
            adjusted = self.adjusted_text(flat[i], text, global_sim[i])
            logits = flat[i] @ adjusted.T  # [n, Q]
            logits = logits * (1 - self.global_weight) + global_sim[i][None] * self.global_weight
            out.append(logits.T.reshape(-1, h, w))
        logits = torch.stack(out)
        if context.whole and self.whole_resize == "canvas":
            logits = F.interpolate(logits, size=tuple(context.resized_size), mode="bilinear", align_corners=False)
        return logits

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, attn_strategy={self.attn_strategy!r}, gaussian_std={self.gaussian_std}, "
                f"scale_singular={self.scale_singular}, official_pairing={self.official_pairing}, "
                f"lowrank_form={self.lowrank_form!r}, rank_rule={self.rank_rule!r}, seed={self.seed}, "
                f"rng={self.rng!r}, global_weight={self.global_weight}, mean_vector_weight={self.mean_vector_weight}, "
                f"h_threshold={self.h_threshold}, global_source={self.global_source!r}")
