"""The contract of a dense head, and the last-block computation most heads share.

A head turns the :class:`BlockView` of CLIP's last block (and, if it declares them in
``requires``, auxiliary features such as DINO's) into :class:`DenseFeatures`: projected,
L2-normalised patch features on the head's own grid.

The training-free heads decide only how the last block mixes its values (``mix``) and
whether the block's residual connection and MLP are kept; this module owns the rest once:

    z = ls_1(out_proj(concat_heads(mix(view))))
    z = z + view.x            if keep_residual
    z = z + ls_2(mlp(ln_2 z)) if keep_ffn
    f = normalise(ln_post(z) @ proj)      (CLIPBackbone.project, DenseFeatures.from_tokens)

Heads that borrow other models (ProxyCLIP, Trident, CLIP-DINOiser) override
:meth:`forward` and read ``aux[name]`` for every ``name`` in ``requires``: a window-scope
provider's output on the windows, or an image-scope provider's map cut into the windows
(CorrCLIP's region map).
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..backbones.clip import BlockView, CLIPBackbone
from ..structures import DenseFeatures


class Head(nn.Module):
    """Base class of dense heads; training-free subclasses implement :meth:`mix`.

    Attributes:
        requires: names of the auxiliary feature providers (``features=`` of the segmenter)
            whose outputs :meth:`forward` reads from ``aux``.
        taps: indices of CLIP blocks whose output tokens :meth:`forward` reads from
            ``view.taps`` (e.g. ``(-3,)`` for CLIP-DINOiser's intermediate layer).
        reads_clip_image: False for a head whose features come from providers alone (Talk2DINO:
            DINOv2's tokens against projected text): the segmenter then skips CLIP's image tower
            and passes ``view=None``.
        context_requires: image-scope providers the head reads itself from the context in
            ``finish_context`` (Trident's SAM): configured, but not cut into the windows.
        keeps_block_inputs: the head reads ``view.inputs``, the tokens entering every CLIP
            block (CorrCLIP runs its region tokens through the whole tower).
        extras: names of the per-window maps the head puts in ``DenseFeatures.extras``
            (e.g. a background map); later stages read them as ``ImageContext.canvas(name)``
            or ``band.map(name)`` and may declare them in their own ``requires``.
        host_work: True for a head that reads values back to the host between its kernels
            (CASS's Hungarian head pairing): it cannot be recorded as a CUDA graph
            (:class:`~ovdense.fixed_size.FixedSizePredictor` refuses ``cuda_graph=True``). A head
            that leaves it False touches no host tensor once warmed up (``tests/test_contracts.py``).

    A head whose features do not live in CLIP's embedding space (Talk2DINO: DINOv2 patch
    features) says so with :meth:`feature_dim` and must score windows itself with a
    ``window_logits(context, text, backbone)`` method (the segmenter's ``window_scorer`` seam),
    which maps CLIP's text embeddings into its space.
    """

    keep_residual: bool = True
    keep_ffn: bool = True
    requires: Tuple[str, ...] = ()
    taps: Tuple[int, ...] = ()
    keeps_block_inputs: bool = False
    context_requires: Tuple[str, ...] = ()
    reads_clip_image: bool = True
    extras: Tuple[str, ...] = ()
    host_work: bool = False

    def output_grid(self, window_size: Tuple[int, int], backbone: CLIPBackbone,
                    providers: Optional[Mapping[str, torch.nn.Module]] = None) -> Tuple[int, int]:
        """The grid ``(h, w)`` of the features this head returns for windows of ``window_size``
        pixels: CLIP's patch grid unless the head says otherwise (a head that works on a DINO
        provider's grid returns that grid; ``providers`` are the configured ones by name)."""
        ph, pw = backbone.patch_size
        return window_size[0] // ph, window_size[1] // pw

    def feature_dim(self, backbone: CLIPBackbone, providers: Optional[Mapping[str, torch.nn.Module]] = None) -> int:
        """Width ``D`` of the features this head returns: CLIP's ``embed_dim`` unless the head
        says otherwise (it then scores windows itself, see the class doc)."""
        return int(backbone.embed_dim)

    def mix(self, view: BlockView, aux: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Return the attended values ``[B, heads, N, d]`` (attention weights times ``v``)."""
        raise NotImplementedError

    def attention(self, view: BlockView, aux: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Explicit attention weights ``[B, heads, N, N]`` (for inspection; ``mix`` is the fast path)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose explicit attention weights")

    def forward(self, view: BlockView, backbone: CLIPBackbone,
                aux: Optional[Mapping[str, torch.Tensor]] = None) -> DenseFeatures:
        """Dense features of the windows in ``view``: ``[B, D, h, w]``, normalised."""
        tokens = backbone.project(self.tokens(view, backbone, aux)[:, 1:])
        return DenseFeatures.from_tokens(tokens, view.grid)

    def tokens(self, view: BlockView, backbone: CLIPBackbone,
               aux: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Tokens leaving the last block ``[B, N, C]`` (CLS first), before ``ln_post``."""
        return self.finish(view, backbone, self.mix(view, aux))

    def finish(self, view: BlockView, backbone: CLIPBackbone, mixed: torch.Tensor) -> torch.Tensor:
        """The rest of the block after mixing: ``out_proj``, optional residual and MLP."""
        blk = backbone.last_block
        b, h, n, d = mixed.shape
        z = blk.ls_1(blk.attn.out_proj(mixed.transpose(1, 2).reshape(b, n, h * d)))
        if self.keep_residual:
            z = view.x + z
        if self.keep_ffn:
            z = z + blk.ls_2(blk.mlp(blk.ln_2(z)))
        return z

    def extra_repr(self) -> str:
        return f"keep_residual={self.keep_residual}, keep_ffn={self.keep_ffn}"
