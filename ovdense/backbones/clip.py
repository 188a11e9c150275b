"""open_clip adapter: everything the dense heads need from a CLIP ViT, nothing more.

The adapter reads open_clip's modules by name (``conv1``, ``positional_embedding``,
``transformer.resblocks``, ``ln_post``, ``proj``, ...) and runs its own forward, so the
heads never depend on how a given open_clip release lays out its attention:

* :meth:`CLIPBackbone.prefix` embeds the image (with the positional-embedding
  interpolation of the reference methods), runs every block but the last and returns a
  :class:`BlockView` of the last block's inputs (``x`` and per-head ``q, k, v``);
* the heads combine those with the last block's own weights (``last_block``);
* :meth:`CLIPBackbone.project` applies ``ln_post`` and ``proj``.

Building the open_clip model (tags, local files, offline) is :mod:`.loading`'s job, reading
what a local weights file is :mod:`.weights_format`'s, and explaining a file that does not
load :mod:`.diagnose`'s.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .diagnose import WeightsFormatError
from .loading import WeightsNotFoundError, load_open_clip_model
from .weights_format import OPENAI_EXTRA_KEYS, WEIGHTS_FORMATS

__all__ = ["BlockView", "CLIPBackbone", "OPENAI_EXTRA_KEYS", "POS_INTERP_MODES", "WEIGHTS_FORMATS",
           "WeightsFormatError", "WeightsNotFoundError", "fused_block_forward", "supports_fused_forward"]

POS_INTERP_MODES = ("scale_factor", "size")


@dataclass(frozen=True)
class BlockView:
    """The inputs of the last transformer block, always batch-first.

    Attributes:
        x: ``[B, N, C]`` tokens entering the block (CLS first).
        q, k, v: ``[B, heads, N, d]`` projections of ``ln_1(x)`` (biases included).
        grid: ``(h, w)`` patch grid; ``N = 1 + h * w``.
        input_size: ``(H, W)`` pixel size of the input crop.
        taps: tokens ``[B, N, C]`` leaving the blocks asked for (``prefix(taps=...)``), by
            block index (0 = the first block; the last tap possible is the block before the
            last, whose output is ``x``).
        inputs: with ``prefix(keep_inputs=True)``, the tokens ``[B, N, C]`` entering every
            block, in order (``inputs[0]`` leaves ``ln_pre``; ``inputs[-1]`` is ``x``), for
            heads that run extra tokens through the whole tower (CorrCLIP's region tokens).
    """

    x: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    grid: Tuple[int, int]
    input_size: Tuple[int, int]
    taps: Mapping[int, torch.Tensor] = field(default_factory=dict)
    inputs: Optional[Sequence[torch.Tensor]] = None

    @property
    def scale(self) -> float:
        return self.q.shape[-1] ** -0.5

    @property
    def num_heads(self) -> int:
        return self.q.shape[1]


def _fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _activation_name(model: nn.Module) -> str:
    """The MLP activation of the first vision block: ``"quick_gelu"``, ``"gelu"``, ..."""
    from open_clip.transformer import QuickGELU

    blocks = getattr(getattr(getattr(model, "visual", None), "transformer", None), "resblocks", None)
    act = getattr(getattr(blocks[0], "mlp", None), "gelu", None) if blocks else None
    if isinstance(act, QuickGELU):
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else f"gelu_{act.approximate}"
    return type(act).__name__ if act is not None else "unknown"


def _split_qkv(attn: nn.MultiheadAttention, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``in_proj`` of batch-first ``y [B, N, C]`` split into per-head ``q, k, v`` ``[B, heads, N, d]``."""
    qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
    b, n, _ = qkv.shape
    qkv = qkv.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def supports_fused_forward(blk: nn.Module) -> bool:
    """True for a plain open_clip ``ResidualAttentionBlock``: self-attention through one packed
    ``in_proj``, no mask, no extra key/value biases, no cross-attention norm."""
    attn = getattr(blk, "attn", None)
    return (type(blk).__name__ == "ResidualAttentionBlock" and not hasattr(blk, "ln_1_kv")
            and isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim
            and attn.in_proj_weight is not None and attn.bias_k is None and attn.bias_v is None
            and not attn.add_zero_attn)


def fused_block_forward(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.forward`` on batch-first ``x`` with its weights,
    attention through ``F.scaled_dot_product_attention``.

    The same maths as the block's own forward: ``nn.MultiheadAttention`` in inference takes
    PyTorch's native fast path, which on CPU builds the attention matrix explicitly (bmm +
    softmax); the fused kernel is about 3x faster there for 785-token windows and avoids
    the ``[B, heads, N, N]`` buffer. OpenAI CLIP's sequence-first blocks, which the official
    implementations run, already reach the fused kernel through ``need_weights=False``.
    """
    q, k, v = _split_qkv(blk.attn, blk.ln_1(x))
    b, h, n, d = q.shape
    mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, h * d)
    x = x + blk.ls_1(blk.attn.out_proj(mixed))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


class CLIPBackbone(nn.Module):
    """A CLIP model (open_clip) seen as a dense-feature backbone.

    Args:
        model: an open_clip ``CLIP`` with a ViT vision tower.
        pos_interp: ``"scale_factor"`` reproduces the reference methods' bicubic call
            ``interpolate(pe, scale_factor=((H//p + 0.1)/g, (W//p + 0.1)/g))`` (SCLIP, NACLIP,
            ClearCLIP, ProxyCLIP); ``"size"`` uses ``interpolate(pe, size=(H//p, W//p))``
            (MaskCLIP, CLIP-DINOiser).
        name, pretrained: recorded for cache keys and run records.
    """

    def __init__(self, model: nn.Module, pos_interp: str = "scale_factor", name: str = "clip",
                 pretrained: Optional[str] = None) -> None:
        super().__init__()
        if pos_interp not in POS_INTERP_MODES:
            raise ValueError(f"pos_interp must be one of {POS_INTERP_MODES}, got {pos_interp!r}")
        visual = getattr(model, "visual", None)
        if visual is None or not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
            raise TypeError("CLIPBackbone needs an open_clip CLIP model with a ViT vision tower")
        if getattr(visual, "attn_pool", None) is not None:
            raise NotImplementedError("attentional-pooling ViTs (CoCa) are not supported by the dense heads")
        self.model = model.eval().requires_grad_(False)  # inference only: weights are frozen
        self.visual = visual
        self.pos_interp = pos_interp
        self.name = name
        self.pretrained = pretrained
        ps = visual.conv1.kernel_size
        self.patch_size: Tuple[int, int] = (int(ps[0]), int(ps[1]))
        n_pos = visual.positional_embedding.shape[0] - 1
        side = int(round(math.sqrt(n_pos)))
        if side * side != n_pos:
            raise NotImplementedError("non-square positional-embedding grids are not supported")
        self.native_grid: Tuple[int, int] = (side, side)
        self._pe_cache: Dict[tuple, torch.Tensor] = {}
        self._fingerprint: Optional[str] = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        clip_model: Optional[str] = "ViT-B-16",
        pretrained: Optional[str] = "openai",
        *,
        weights_format: str = "auto",
        pos_interp: str = "scale_factor",
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "CLIPBackbone":
        """Build from an open_clip name and weights.

        Args:
            clip_model: open_clip model name (``"ViT-B-16"``, ``"ViT-B-16-quickgelu"``,
                ``"ViT-L-14"``...), a model-config ``.json`` path, or None when
                ``pretrained`` is a local OpenAI-format file (architecture read from it).
            pretrained: an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``...), a local
                checkpoint path, or None for random weights (tests).
            weights_format: how a local file is built. ``"auto"`` decides from the file:
                TorchScript archives and state dicts with OpenAI's ``input_resolution`` /
                ``context_length`` / ``vocab_size`` entries are OpenAI CLIP and load like
                ``pretrained="openai"`` (QuickGELU, architecture from the file; a
                ``clip_model`` naming another architecture is an error), as does any file
                with ``clip_model`` None. Other files load with open_clip's loader for the
                named architecture: QuickGELU when its config asks for it (``-quickgelu``
                names) or the file's SHA256 is that of a QuickGELU release open_clip knows,
                otherwise GELU, with one logged warning since nothing in such a file tells
                the two apart. ``"openai"`` / ``"open_clip"`` force the OpenAI builder / the
                named config as is. :attr:`activation` tells which activation was built.
        """
        if weights_format not in WEIGHTS_FORMATS:
            raise ValueError(f"weights_format must be auto, openai or open_clip, got {weights_format!r}")
        model, name = load_open_clip_model(clip_model, pretrained, weights_format)
        backbone = cls(model, pos_interp=pos_interp, name=name, pretrained=pretrained)
        return backbone.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ properties
    @property
    def last_block(self) -> nn.Module:
        return self.visual.transformer.resblocks[-1]

    @property
    def num_heads(self) -> int:
        return self.last_block.attn.num_heads

    @property
    def embed_dim(self) -> int:
        proj = self.visual.proj
        return proj.shape[1] if proj is not None else self.visual.ln_post.normalized_shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    def weights_fingerprint(self) -> str:
        """A short hash of the text tower's weights (random models differ from each other)."""
        if self._fingerprint is None:
            m = self.model
            parts = [m.text_projection if isinstance(m.text_projection, torch.Tensor) else m.text_projection.weight,
                     m.positional_embedding, m.ln_final.weight, m.token_embedding.weight[:64]]
            parts += list(m.transformer.resblocks[0].parameters())
            self._fingerprint = _fingerprint(*parts)
        return self._fingerprint

    # ------------------------------------------------------------------ image side
    def grid_for(self, size: Tuple[int, int]) -> Tuple[int, int]:
        return size[0] // self.patch_size[0], size[1] // self.patch_size[1]

    def positional_embedding(self, input_size: Tuple[int, int]) -> torch.Tensor:
        """Positional embedding ``[1 + h*w, C]`` for an input of ``input_size`` pixels."""
        grid = self.grid_for(input_size)
        pe = self.visual.positional_embedding
        if self.pos_interp == "scale_factor":
            # The reference condition: skipped only when the token count matches and the
            # input is square (SCLIP/NACLIP/ClearCLIP `interpolate_pos_encoding`).
            skip = grid == self.native_grid and input_size[0] == input_size[1]
        else:
            skip = grid == self.native_grid
        if skip:
            return pe
        key = (grid, skip, pe.dtype, pe.device, pe._version)
        cached = self._pe_cache.get(key)
        if cached is not None:
            return cached
        g = self.native_grid[0]
        patch_pe = pe[1:].float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if self.pos_interp == "scale_factor":
            factor = ((grid[0] + 0.1) / g, (grid[1] + 0.1) / g)
            patch_pe = F.interpolate(patch_pe, scale_factor=factor, mode="bicubic")
        else:
            patch_pe = F.interpolate(patch_pe, size=grid, mode="bicubic", align_corners=False)
        if tuple(patch_pe.shape[-2:]) != grid:
            raise RuntimeError(f"positional-embedding interpolation gave {tuple(patch_pe.shape[-2:])}, expected {grid}")
        patch_pe = patch_pe.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
        out = torch.cat([pe[:1].float(), patch_pe], dim=0).to(pe.dtype)
        self._pe_cache[key] = out
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding + CLS + positional embedding + ``ln_pre``: ``[B, 1 + h*w, C]``."""
        v = self.visual
        images = images.to(device=self.device, dtype=self.dtype)
        x = v.conv1(images)  # floors leftover rows / columns like the references
        x = x.flatten(2).transpose(1, 2)
        cls_tok = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_tok, x], dim=1)
        x = x + self.positional_embedding(tuple(images.shape[-2:])).to(x.dtype)
        return v.ln_pre(x)

    def run_blocks(self, x: torch.Tensor, blocks, fused: bool = True) -> torch.Tensor:
        """Run open_clip residual blocks on batch-first tokens, whatever the block layout.

        With ``fused`` (default) plain open_clip residual attention blocks run through
        :func:`fused_block_forward` (fused scaled-dot-product attention); other block types,
        and every block with ``fused=False``, run their own ``forward``.
        """
        return self._run_blocks(x, blocks, fused, ())[0]

    def _run_blocks(self, x: torch.Tensor, blocks, fused: bool, taps: Sequence[int],
                    inputs: Optional[List[torch.Tensor]] = None):
        """``run_blocks`` that also keeps the outputs of the blocks whose indices are in ``taps``
        (and appends every block's input to ``inputs`` when given)."""
        batch_first = getattr(self.visual.transformer, "batch_first", True)
        kept: Dict[int, torch.Tensor] = {}
        for i, blk in enumerate(blocks):
            if inputs is not None:
                inputs.append(x)
            if fused and supports_fused_forward(blk):
                x = fused_block_forward(blk, x)
            else:
                x = blk(x) if batch_first else blk(x.transpose(0, 1)).transpose(0, 1)
            if i in taps:
                kept[i] = x
        return x, kept

    def qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head ``q, k, v`` ``[B, heads, N, d]`` of the last block from its input ``x``."""
        blk = self.last_block
        return _split_qkv(blk.attn, blk.ln_1(x))

    def prefix(self, images: torch.Tensor, num_blocks: Optional[int] = None, fused: bool = True,
               taps: Sequence[int] = (), keep_inputs: bool = False) -> BlockView:
        """Run everything before the last block on normalised images ``[B, 3, H, W]``.

        ``taps``: indices of blocks whose output tokens to keep in ``BlockView.taps``
        (negative indices count from the end of the whole tower: -2 is the block before
        the last). ``keep_inputs``: keep the tokens entering every block
        (``BlockView.inputs``). ``fused=False`` runs the blocks through open_clip's own
        ``forward`` (the reference path; equal up to float rounding).
        """
        blocks = self.visual.transformer.resblocks
        run = len(blocks) - 1 if num_blocks is None else num_blocks
        wanted = sorted({t % len(blocks) for t in taps})
        if wanted and wanted[-1] >= run:
            raise ValueError(f"taps {list(taps)}: only blocks 0..{run - 1} run before the head")
        x = self.embed(images)
        inputs: Optional[List[torch.Tensor]] = [] if keep_inputs else None
        x, kept = self._run_blocks(x, blocks[:run], fused, wanted, inputs)
        if inputs is not None:
            inputs.append(x)
        q, k, v = self.qkv(x)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return BlockView(x=x, q=q, k=k, v=v, grid=self.grid_for(size), input_size=size, taps=kept, inputs=inputs)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's own image embedding of normalised images ``[B, 3, H, W]``: the whole tower with
        the unchanged last block, the CLS token through ``ln_post`` and ``proj``, L2-normalised
        (float32 ``[B, D]``; open_clip's ``encode_image`` at the native size)."""
        view = self.prefix(images.to(self.device, self.dtype))
        tokens = self.run_blocks(view.x, [self.last_block])
        return F.normalize(self.project(tokens[:, :1])[:, 0].float(), dim=-1)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then ``proj`` on ``[B, N, C]`` tokens."""
        x = self.visual.ln_post(tokens)
        proj = self.visual.proj
        return x @ proj if proj is not None else x

    # ------------------------------------------------------------------ text side
    def tokenizer(self):
        import open_clip

        tok = getattr(self, "_tokenizer", None)
        if tok is None:
            context = int(self.model.positional_embedding.shape[0])
            try:
                tok = open_clip.get_tokenizer(self.name, context_length=context)
            except Exception:  # names unknown to open_clip (local OpenAI files): CLIP's BPE
                tok = open_clip.SimpleTokenizer(context_length=context)
            self._tokenizer = tok
        return tok

    def _causal_text_tower(self) -> bool:
        """True for open_clip's plain CLIP text tower: causal mask, argmax (EOT) pooling."""
        m = self.model
        return (getattr(m, "text_pool_type", None) == "argmax" and getattr(m, "attn_mask", None) is not None
                and hasattr(m, "token_embedding") and hasattr(m, "transformer"))

    @torch.no_grad()
    def encode_text(self, texts) -> torch.Tensor:
        """Unnormalised text embeddings ``[T, D]`` for a list of strings.

        For open_clip's causal CLIP text tower the padded tail after the longest prompt's
        end-of-text token is cut before the transformer runs: under the causal mask no token
        attends to later ones, so the pooled end-of-text features are unchanged (equal to
        ``model.encode_text`` up to float rounding) at a fraction of the 77-token cost.
        """
        tokens = self.tokenizer()(list(texts)).to(self.device)
        m = self.model
        if not self._causal_text_tower():
            return m.encode_text(tokens)
        eot = tokens.argmax(dim=-1)
        length = int(eot.max()) + 1
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens[:, :length]).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)[torch.arange(x.shape[0], device=x.device), eot]
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    @property
    def activation(self) -> str:
        """The vision MLP activation built: ``"quick_gelu"`` (OpenAI CLIP) or ``"gelu"``."""
        return _activation_name(self.model)

    def __repr__(self) -> str:  # keep printing a segmenter short
        return (f"CLIPBackbone(name={self.name!r}, pretrained={self.pretrained!r}, act={self.activation!r}, "
                f"patch={self.patch_size}, grid={self.native_grid}, pos_interp={self.pos_interp!r})")
