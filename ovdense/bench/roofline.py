"""How close the backbone runs to the hardware: FLOP counts, matmul peaks, peak memory.

Used by the benchmark to say what holds a speed target back. FLOPs are counted as
``2 * multiply-adds`` of the matrix products and the patch-embedding convolution (what
``torch.utils.flop_counter`` counts); layer norms, activations and softmaxes are left out,
so a backbone at 100% of the matmul peak cannot run faster without doing less work.
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.clip import CLIPBackbone
from ..runtime import synchronize

#: Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s, matched
#: against ``torch.cuda.get_device_name`` in order (first match wins).
NOMINAL_BF16_TFLOPS: Tuple[Tuple[str, float], ...] = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM (HBM3)
    ("A100", 312.0),
)


def _linear_flops(module: nn.Module, tokens: int) -> int:
    return sum(2 * tokens * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def backbone_flops(backbone: CLIPBackbone, input_size: Tuple[int, int], batch: int = 1) -> int:
    """FLOPs of :meth:`CLIPBackbone.prefix` on ``batch`` inputs of ``input_size`` pixels.

    Patch embedding, every block but the last (``qkv``, ``q k^T``, ``attn v``, ``out_proj``,
    MLP), and the last block's ``qkv`` projection.
    """
    v = backbone.visual
    h, w = backbone.grid_for(input_size)
    n = 1 + h * w
    width = v.conv1.out_channels
    in_ch = v.conv1.in_channels
    ph, pw = backbone.patch_size
    flops = 2 * h * w * width * in_ch * ph * pw  # patch embedding
    blocks = v.transformer.resblocks
    for blk in blocks[:-1]:
        flops += 2 * n * width * 3 * width  # qkv
        flops += 2 * 2 * n * n * width  # q k^T and attn v over all heads
        flops += 2 * n * width * width  # out_proj
        flops += _linear_flops(blk.mlp, n)
    flops += 2 * n * width * 3 * width  # the last block's qkv (BlockView)
    return int(batch * flops)


def vit_flops(model: nn.Module, grid: Tuple[int, int], batch: int = 1, last: str = "block") -> int:
    """FLOPs of a timm ``VisionTransformer`` (a feature provider's model, e.g. DINO) up to its
    last block on ``batch`` inputs of ``grid = (rows, cols)`` patches: the patch embedding,
    and in every block its linear layers (``qkv``, ``proj``, MLP) and the attention products
    (``q k^T`` and ``attn v`` over all heads); norms, softmax and the position-embedding
    resize are left out, as in :func:`backbone_flops`. ``last="qkv"``: the last block stops at
    its ``qkv`` projection (a provider of q / k / v, ``timm_vit(output="k")``)."""
    rows, cols = grid
    n = int(getattr(model, "num_prefix_tokens", 1)) + rows * cols
    conv = model.patch_embed.proj
    kh, kw = conv.kernel_size
    flops = 2 * rows * cols * conv.out_channels * conv.in_channels * kh * kw  # patch embedding
    for i, blk in enumerate(model.blocks):
        if last == "qkv" and i == len(model.blocks) - 1:
            flops += _linear_flops(blk.attn.qkv, n)
            break
        attn_dim = blk.attn.qkv.out_features // 3
        flops += _linear_flops(blk, n)  # qkv, proj, fc1, fc2
        flops += 2 * 2 * n * n * attn_dim  # q k^T and attn v over all heads
    return int(batch * flops)


def backbone_matmul_shape(backbone: CLIPBackbone, input_size: Tuple[int, int], batch: int) -> Tuple[int, int, int]:
    """``(tokens, width, mlp_width)`` of the backbone's linear layers on ``batch`` inputs of
    ``input_size``: the shapes :func:`matmul_peak_gflops` should be measured with."""
    h, w = backbone.grid_for(input_size)
    width = backbone.visual.conv1.out_channels
    hidden = max((m.out_features for m in backbone.last_block.mlp.modules() if isinstance(m, nn.Linear)),
                 default=4 * width)
    return batch * (1 + h * w), width, hidden


@torch.no_grad()
def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, tokens: int, width: int, hidden: int,
                       repeats: int = 5) -> float:
    """Best measured GFLOP/s of the backbone's linear layers on ``device``.

    Times ``F.linear`` (the kernel the transformer blocks call) on ``[tokens, width]`` ->
    ``hidden`` and ``[tokens, hidden]`` -> ``width``: the throughput the backbone's matrix
    products could reach on this machine with these shapes.
    """
    best = 0.0
    for k, n in ((width, hidden), (hidden, width)):
        x = torch.randn(tokens, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        b = torch.randn(n, device=device, dtype=dtype)
        for _ in range(2):
            F.linear(x, w, b)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            F.linear(x, w, b)
        synchronize(device)
        seconds = (time.perf_counter() - t0) / repeats
        best = max(best, 2.0 * tokens * k * n / seconds / 1e9)
    return best


def nominal_bf16_tflops(device: torch.device) -> Optional[float]:
    """The datasheet dense bf16 peak of a known CUDA GPU, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in NOMINAL_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: the process's peak resident set (it never resets)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
