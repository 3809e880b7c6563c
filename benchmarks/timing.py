"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time

import torch
from threadpoolctl import threadpool_limits


def best_time(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls of `fn()`, in seconds (least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op pool and the BLAS/OpenMP pools (scipy's SVD) alike; 0 = defaults."""
    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)
