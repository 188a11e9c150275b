"""Process-group set-up and the three collectives sharded evaluation needs (``torchrun``-compatible).

The collectives are ``mmengine.dist``'s. The set-up is ours: ``mmengine.dist.init_dist`` calls
``torch.cuda.set_device`` unconditionally, which fails on a CPU-only machine, and gloo on CPU is
how evaluation shards there. Only integer confusion matrices and result lists cross process
boundaries, so the merge is exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

__all__ = ["DistInfo", "all_gather_lists", "all_reduce_sum", "barrier", "env_world", "init_distributed",
           "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this node, used to pick the CUDA device.
        backend: ``"gloo"``, ``"nccl"`` or ``""`` when not distributed.
        initialized_here: whether :func:`init_distributed` created the process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the ``torchrun`` environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _wants_cuda(device: Any) -> bool:
    """Whether ``device`` names a CUDA device and CUDA is usable."""
    import torch

    if device is None:
        return False
    return str(device).startswith("cuda") and torch.cuda.is_available()


def init_distributed(device: Any = None, timeout_s: float = 7200.0) -> DistInfo:
    """Join (or create) the process group described by ``WORLD_SIZE``/``RANK``.

    Uses NCCL when ``device`` is a CUDA device, gloo otherwise. Does nothing and returns a
    single-process :class:`DistInfo` when ``WORLD_SIZE`` is unset or 1.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        return DistInfo(rank, world, env_world()[2], dist.get_backend(), False)
    rank, world, local = env_world()
    if world <= 1:
        return DistInfo()
    backend = "nccl" if _wants_cuda(device) else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(local)
    dist.init_process_group(
        backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
    )
    return DistInfo(rank, world, local, backend, True)


def all_reduce_sum(array: np.ndarray, info: DistInfo) -> np.ndarray:
    """Sum an int64 array over all ranks (exact); identity when not distributed.

    ``mmengine.dist.all_reduce`` moves the tensor to the backend's device (CUDA for NCCL) and back.
    """
    if not info.distributed:
        return array
    import torch
    from mmengine import dist

    tensor = torch.from_numpy(np.array(array, dtype=np.int64))  # a copy: reduced in place
    dist.all_reduce(tensor, op="sum")
    return tensor.numpy()


def all_gather_lists(items: list, info: DistInfo) -> list:
    """Every rank's list, in rank order, on every rank (pickled objects); identity when alone."""
    if not info.distributed:
        return list(items)
    from mmengine import dist

    return [item for part in dist.all_gather_object(list(items)) for item in part]


def barrier(info: DistInfo) -> None:
    """Wait for every rank; no-op when not distributed."""
    if info.distributed:
        from mmengine import dist

        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialized_here:
        import torch.distributed as dist

        dist.destroy_process_group()
