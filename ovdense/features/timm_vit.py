"""Patch features of a timm Vision Transformer: DINO, DINOv2 or DINOv3 by timm name + local weights.

``features=dict(dino=dict(type="timm_vit", model_name="vit_base_patch16_224.dino",
weights="/path/dino_vitbase16_pretrain.pth"))``. Nothing is downloaded: the model is
built with ``pretrained=False`` and the weights come from the local file (official DINO
checkpoints, timm checkpoints and ``.safetensors`` are read; timm's own key conversion
for ViTs is applied). The normalisation is the model's own (timm ``pretrained_cfg`` mean
and std), applied to the uint8 windows.

``pos_interp`` picks how the position embedding is resized to other window sizes: ``"timm"``
(timm's ``resample_abs_pos_embed``: bicubic to the target grid, antialiased) or ``"dino"``
(the official DINO ``interpolate_pos_encoding``: bicubic with
``scale_factor = (H // p + 0.1) / sqrt(N), (W // p + 0.1) / sqrt(N)``, no antialiasing, and no
resize at all when the grid has N positions and the window is square). The two agree at the
checkpoint's own size and differ by a few 1e-2 on 336-pixel windows.

``output`` picks what is returned: ``"tokens"`` (the block's output tokens, the default) or
``"q"``, ``"k"``, ``"v"``: that block's attention projections of its (normed) input, per head,
as ``[B, heads * head_dim, h, w]`` (channel ``head * head_dim + d``, the layout of DINO's
``qkv[1]`` reshaped by CASS), computed with timm's own ``norm1`` / ``attn.qkv`` / ``q_norm`` /
``k_norm`` in the provider's forward (no hooks, no patching); ``"q+k"`` is their sum (the
features CorrCLIP and Trident read from DINO's last ``qkv``). ``"tokens+cls_attn"`` returns the tokens
followed by ``heads`` channels: the CLS query's attention logits over the patches in that block
(``q_cls k^T`` times the block's scale, before the softmax, per head; registers left out), the map
Talk2DINO's background cleaning reads (its official code hooks the last block's ``qkv``).

Two input options reproduce how CASS (CVPR 2025) feeds DINO, for parity with its official code:
``denorm`` re-creates the image CASS hands to DINO from the window: the official code CLIP-
normalises the image, then "un-normalises" it with ImageNet's mean and std (not CLIP's, so the
contrast shrinks by about 0.85-0.92 per channel and the colours shift) and truncates to uint8;
``"cass_official"`` uses the official std ``(0.229, 0.224, 0.255)`` (a typo for 0.225 in the
blue channel), ``"cass"`` the intended 0.225. ``square_input`` resizes every window to a square
of its short side first (PIL bicubic on the uint8 image), as the official code does before DINO.

``resize_mode`` is the filter of the ``input_size`` resize (``"bicubic"``, or ``"bilinear"`` as
torchvision's ``T.Resize`` on a tensor, without antialiasing: torchvision < 0.17, Talk2DINO's pin).
``bgr`` swaps the red and blue channels of the windows first: the image a caller gets who hands an
RGB image to code that expects BGR (Talk2DINO's ``generate_masks`` flips BGR to RGB; its demo reads
RGB and so feeds DINOv2 BGR).
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import FEATURES
from .base import FeatureProvider

#: The constants CASS's official code uses: mmseg's CLIP normalisation of the 0-255 image, then
#: torchvision's ``Normalize(-mean / std, 1 / std)`` with ImageNet's mean and std ("un-normalise").
CASS_CLIP_MEAN = (122.771, 116.746, 104.094)
CASS_CLIP_STD = (68.501, 66.632, 70.323)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
DENORM_STD = {"cass_official": (0.229, 0.224, 0.255), "cass": (0.229, 0.224, 0.225)}


def cass_denorm(images: torch.Tensor, std: Sequence[float]) -> torch.Tensor:
    """uint8 windows ``[B, 3, H, W]`` -> the uint8 image CASS's official code gives DINO: CLIP-normalised
    (float32, mmseg's constants), un-normalised with ImageNet's mean and ``std`` as torchvision's
    ``Normalize(mean=-m/s, std=1/s)`` computes it, times 255 and truncated (numpy ``astype('uint8')``).
    Real pixels stay inside 7..243, so nothing wraps."""
    dev = images.device
    clip_mean = torch.tensor(CASS_CLIP_MEAN, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    clip_std = torch.tensor(CASS_CLIP_STD, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    inv_mean = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, std)], dtype=torch.float32, device=dev)
    inv_std = torch.tensor([1 / s for s in std], dtype=torch.float32, device=dev)
    x = (images.float() - clip_mean) / clip_std
    x = (x - inv_mean.view(1, 3, 1, 1)) / inv_std.view(1, 3, 1, 1)
    return (x * 255).clamp_(0, 255).to(torch.uint8)  # clamp: a no-op on real pixels (truncation as astype)


def pil_square(images: torch.Tensor) -> torch.Tensor:
    """uint8 windows ``[B, 3, H, W]`` resized to ``S x S`` (``S = min(H, W)``) with PIL's bicubic filter
    (PIL's ``Image.resize`` default, as CASS's ``inv_image.resize((S, S))``); square windows pass as they are."""
    h, w = images.shape[-2:]
    if h == w:
        return images
    from PIL import Image

    side = min(h, w)
    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    out = []
    for img in images.cpu():
        pil = Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy()))
        out.append(torch.from_numpy(np.asarray(pil.resize((side, side), bicubic))).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


_WRAPPERS = ("state_dict", "model", "teacher", "module")
_PREFIXES = ("module.", "backbone.")


def read_vit_weights(path: str, model: torch.nn.Module) -> dict:
    """A state dict for ``model`` from a local checkpoint (wrappers and prefixes removed)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature-provider weights not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, Mapping) and len(state) and any(k in state for k in _WRAPPERS) \
            and not any(isinstance(v, torch.Tensor) for v in state.values()):
        state = next(state[k] for k in _WRAPPERS if k in state)
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(out, model)


@FEATURES.register_module("timm_vit")
class TimmViTFeatures(FeatureProvider):
    """Patch tokens of one block of a timm ViT, as ``[B, C, h, w]``.

    Args:
        model_name: timm model name, with its pretrained tag for the right normalisation
            (e.g. ``"vit_base_patch16_224.dino"``, ``"vit_base_patch14_reg4_dinov2.lvd142m"``).
        weights: local checkpoint path (None: random weights, for tests only).
        layer: block whose output is returned (-1: the last).
        norm: apply the final norm to that output (as the model's ``forward_features``).
        input_size: resize the windows to this ``(H, W)`` first (bicubic); None keeps their
            size, cropped down to a multiple of the patch size.
        model_kwargs: extra ``timm.create_model`` arguments (tests build tiny models).
        pos_interp: ``"timm"`` (timm's resize of the position embedding to the target grid) or
            ``"dino"`` (the official DINO ``interpolate_pos_encoding`` formula, for parity with
            methods that load DINO through ``torch.hub``; needs a square grid of position
            embeddings).
        output: ``"tokens"`` (the block's output) or ``"q"`` / ``"k"`` / ``"v"`` / ``"q+k"`` (the
            block's attention projections, ``[B, heads * head_dim, h, w]``; ``norm`` does not apply).
        denorm: None (the window as it is), ``"cass_official"`` or ``"cass"``: the image CASS's
            official code gives DINO (see the module doc; ``"cass_official"`` keeps its std typo).
        square_input: resize each window to a square of its short side (PIL bicubic) first.
        resize_mode: filter of the ``input_size`` resize: ``"bicubic"`` or ``"bilinear"`` (no antialiasing).
        bgr: swap the windows' red and blue channels first (see the module doc).
    """

    POS_INTERP = ("timm", "dino")
    OUTPUTS = ("tokens", "q", "k", "v", "q+k", "tokens+cls_attn")
    RESIZE_MODES = ("bicubic", "bilinear")

    def __init__(self, model_name: str = "vit_base_patch16_224.dino", weights: Optional[str] = None,
                 layer: int = -1, norm: bool = True, input_size: Optional[Sequence[int]] = None,
                 model_kwargs: Optional[Mapping[str, Any]] = None, pos_interp: str = "timm",
                 output: str = "tokens", denorm: Optional[str] = None, square_input: bool = False,
                 resize_mode: str = "bicubic", bgr: bool = False) -> None:
        super().__init__()
        if resize_mode not in self.RESIZE_MODES:
            raise ValueError(f"timm_vit: resize_mode must be one of {self.RESIZE_MODES}, got {resize_mode!r}")
        self.resize_mode = resize_mode
        self.bgr = bool(bgr)
        if pos_interp not in self.POS_INTERP:
            raise ValueError(f"timm_vit: pos_interp must be one of {self.POS_INTERP}, got {pos_interp!r}")
        if output not in self.OUTPUTS:
            raise ValueError(f"timm_vit: output must be one of {self.OUTPUTS}, got {output!r}")
        if denorm is not None and denorm not in DENORM_STD:
            raise ValueError(f"timm_vit: denorm must be None or one of {tuple(DENORM_STD)}, got {denorm!r}")
        self.output = output
        self.denorm = denorm
        self.square_input = bool(square_input)
        try:
            import timm
        except ImportError as err:  # pragma: no cover - timm is in the [dino] extra
            raise ImportError("the timm_vit feature provider needs timm: pip install 'ovdense[dino]'") from err
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                       **dict(model_kwargs or {}))
        if weights is not None:
            missing, unexpected = self.model.load_state_dict(read_vit_weights(os.fspath(weights), self.model),
                                                             strict=False)
            if missing or unexpected:
                raise ValueError(f"{weights}: does not fit {model_name} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        self.model.eval().requires_grad_(False)
        self.model_name = model_name
        if pos_interp == "dino":
            self._check_dino_layout()
        self.pos_interp = pos_interp
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", 255.0 * torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", 255.0 * torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.layer = int(layer)
        self.norm = bool(norm)
        self.input_size: Optional[Tuple[int, int]] = tuple(int(s) for s in input_size) if input_size else None

    @property
    def patch_size(self) -> Tuple[int, int]:
        return tuple(self.model.patch_embed.patch_size)

    def output_grid(self, window_size: Tuple[int, int]) -> Tuple[int, int]:
        """The ``(h, w)`` grid of the features for windows of ``window_size`` pixels."""
        size = self.input_size or window_size
        if self.square_input and self.input_size is None:
            size = (min(size), min(size))
        ph, pw = self.patch_size
        return int(size[0]) // ph, int(size[1]) // pw

    def _check_dino_layout(self) -> None:
        """``pos_interp="dino"`` needs a ViT with an absolute, square grid of position embeddings."""
        m = self.model
        needed = ("patch_embed", "pos_embed", "blocks", "norm")
        if any(getattr(m, name, None) is None for name in needed) or not hasattr(m, "num_prefix_tokens"):
            raise ValueError(f"timm_vit: pos_interp='dino' needs a timm VisionTransformer with an absolute "
                             f"position embedding; {self.model_name} has none")
        rows, cols = m.patch_embed.grid_size
        if rows != cols:
            raise ValueError(f"timm_vit: pos_interp='dino' needs a square position-embedding grid, "
                             f"{self.model_name} has {rows}x{cols}")

    def dino_pos_embed(self, rows: int, cols: int, square: bool) -> torch.Tensor:
        """The model's ``pos_embed`` for a ``rows x cols`` patch grid, resized as the official DINO
        ``interpolate_pos_encoding`` does; ``square``: the (uncropped) window had H == W."""
        pos = self.model.pos_embed
        n_prefix = 0 if getattr(self.model, "no_embed_class", False) else self.model.num_prefix_tokens
        prefix, patch = pos[:, :n_prefix], pos[:, n_prefix:]
        n = patch.shape[1]
        if rows * cols == n and square:
            return pos
        side = math.sqrt(n)
        grid = patch.float().reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic",
                             align_corners=False)
        if tuple(grid.shape[-2:]) != (rows, cols):  # the official code asserts the same
            raise RuntimeError(f"DINO position interpolation gave {tuple(grid.shape[-2:])}, wanted {(rows, cols)}")
        patch = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1).to(pos.dtype)
        return torch.cat([prefix, patch], dim=1)

    def _embed(self, x: torch.Tensor, square: bool) -> torch.Tensor:
        """Tokens entering the first block: patch embedding, prefix tokens, position embedding
        (DINO's interpolation or timm's ``_pos_embed``), then timm's ``patch_drop`` / ``norm_pre``."""
        m = self.model
        if self.pos_interp != "dino":
            return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        b = x.shape[0]
        tokens = m.patch_embed(x)  # [B, rows, cols, C] (dynamic_img_size) or [B, L, C]
        rows, cols = x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1]
        tokens = tokens.reshape(b, rows * cols, -1)
        prefix = [t.expand(b, -1, -1) for t in (m.cls_token, getattr(m, "reg_token", None)) if t is not None]
        pos = self.dino_pos_embed(rows, cols, square).to(tokens.dtype)
        if getattr(m, "no_embed_class", False):
            tokens = torch.cat(prefix + [tokens + pos], dim=1)
        else:
            tokens = torch.cat(prefix + [tokens], dim=1) + pos
        for name in ("pos_drop", "patch_drop", "norm_pre"):
            module = getattr(m, name, None)
            if module is not None:
                tokens = module(tokens)
        return tokens

    def _forward_dino(self, x: torch.Tensor, index: int, square: bool) -> torch.Tensor:
        """timm's ``forward_intermediates`` with the DINO position interpolation (same submodules)."""
        m = self.model
        b = x.shape[0]
        rows, cols = x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1]
        tokens = self._embed(x, square)
        for blk in m.blocks[: index + 1]:
            tokens = blk(tokens)
        if self.norm:
            tokens = m.norm(tokens)
        tokens = tokens[:, m.num_prefix_tokens:]
        return tokens.reshape(b, rows, cols, -1).permute(0, 3, 1, 2).contiguous()

    def _block_qkv(self, x: torch.Tensor, index: int, square: bool):
        """``(tokens entering block index, (q, k, v) [B, heads, N, d] of its attention))``, prefix
        tokens included, with timm's ``norm1`` and ``attn.qkv`` (before ``q_norm`` / ``k_norm``)."""
        m = self.model
        tokens = self._embed(x, square)
        for blk in m.blocks[:index]:
            tokens = blk(tokens)
        blk = m.blocks[index]
        b, n = tokens.shape[:2]
        qkv = blk.attn.qkv(blk.norm1(tokens)).reshape(b, n, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        return tokens, tuple(qkv.unbind(0))

    def _forward_projection(self, x: torch.Tensor, index: int, square: bool) -> torch.Tensor:
        """``q``, ``k`` or ``v`` of block ``index`` (timm's ``norm1``, ``attn.qkv``, ``q_norm``, ``k_norm``)
        on the patch tokens, as ``[B, heads * head_dim, rows, cols]``."""
        m = self.model
        b = x.shape[0]
        rows, cols = x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1]
        _, (q, k, v) = self._block_qkv(x, index, square)
        attn = m.blocks[index].attn
        out = {"q": lambda: attn.q_norm(q), "k": lambda: attn.k_norm(k), "v": lambda: v,
               "q+k": lambda: attn.q_norm(q) + attn.k_norm(k)}[self.output]()
        out = out[:, :, m.num_prefix_tokens:]  # [B, heads, rows * cols, d]
        return out.transpose(2, 3).reshape(b, -1, rows, cols).contiguous()

    def _forward_tokens_attn(self, x: torch.Tensor, index: int, square: bool) -> torch.Tensor:
        """Tokens of block ``index`` (normed as ``norm`` says) and that block's CLS-query attention
        logits over the patch tokens, ``[B, C + heads, rows, cols]``."""
        m = self.model
        b = x.shape[0]
        rows, cols = x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1]
        tokens, (q, k, _) = self._block_qkv(x, index, square)
        blk = m.blocks[index]
        attn = blk.attn
        q, k = attn.q_norm(q), attn.k_norm(k)
        prefix = m.num_prefix_tokens
        cls_attn = (q[:, :, :1] * attn.scale) @ k[:, :, prefix:].transpose(-2, -1)  # [B, heads, 1, rows * cols]
        tokens = blk(tokens)
        if self.norm:
            tokens = m.norm(tokens)
        tokens = tokens[:, prefix:].reshape(b, rows, cols, -1).permute(0, 3, 1, 2)
        return torch.cat([tokens, cls_attn.reshape(b, -1, rows, cols)], dim=1).contiguous()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            images = images.flip(-3)
        if self.denorm is not None:
            images = cass_denorm(images, DENORM_STD[self.denorm])
        if self.square_input:
            images = pil_square(images)
        x = (images.float() - self.mean) / self.std
        if self.input_size is not None:
            x = F.interpolate(x, size=self.input_size, mode=self.resize_mode, align_corners=False)
        square = x.shape[-2] == x.shape[-1]  # before the crop, as DINO sees the uncropped window
        ph, pw = self.patch_size
        x = x[..., : x.shape[-2] // ph * ph, : x.shape[-1] // pw * pw]
        dtype = next(self.model.parameters()).dtype
        index = self.layer if self.layer >= 0 else len(self.model.blocks) + self.layer
        if self.output == "tokens+cls_attn":
            return self._forward_tokens_attn(x.to(dtype), index, square).float()
        if self.output != "tokens":
            return self._forward_projection(x.to(dtype), index, square).float()
        if self.pos_interp == "dino":
            return self._forward_dino(x.to(dtype), index, square).float()
        return self.model.forward_intermediates(x.to(dtype), indices=[index], norm=self.norm, output_fmt="NCHW",
                                                intermediates_only=True)[0].float()

    def extra_repr(self) -> str:
        return (f"model_name={self.model_name!r}, layer={self.layer}, norm={self.norm}, input_size={self.input_size}, "
                f"pos_interp={self.pos_interp!r}, output={self.output!r}, denorm={self.denorm!r}, "
                f"square_input={self.square_input}, resize_mode={self.resize_mode!r}, bgr={self.bgr}")
