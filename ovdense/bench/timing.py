"""Wall-clock timing shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Any, Callable, Tuple

import torch

from ..runtime import synchronize


def best_ms(fn: Callable[[], Any], repeats: int, device: torch.device) -> Tuple[float, Any]:
    """Shortest wall time of ``fn()`` over ``repeats`` runs in ms (device synchronised), the
    least disturbed run on a shared machine; returns (ms, last output)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(min(times)), out
