"""Device and dtype policy: always arguments, never globals."""
from __future__ import annotations

from typing import Union

import torch

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as torch reads it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N ({err})") from None


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """``"auto"``/None -> fp16 on CUDA, fp32 elsewhere; else fp32, fp16, bf16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use fp32, fp16, bf16 or auto") from None


def synchronize(device: Union[str, torch.device]) -> None:
    """Wait for queued kernels on a CUDA device (no-op elsewhere), e.g. before reading a clock."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
