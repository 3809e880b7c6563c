"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from threadpoolctl import threadpool_limits


def best_time(fn, repeats: int, device: torch.device | str = "cpu") -> float:
    """Best wall time of `repeats` calls of `fn()`, in seconds (least disturbed by other load).

    On a GPU, kernels run asynchronously: the clock starts and stops only after the device
    has finished its queue, so the time covers the work `fn` launched."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op pool and the BLAS/OpenMP pools (scipy's SVD) alike; 0 = defaults."""
    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)


def pick_device(name: str) -> torch.device:
    """The device a benchmark runs on; exits with code 2 and one line if it is not there."""
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        problem = f"--device {name!r} is not allowed; use cpu, cuda or cuda:N"
    elif name != "cpu" and not torch.cuda.is_available():
        problem = f"--device {name}: no CUDA device is visible to torch"
    else:
        return torch.device(name)
    print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)


def describe(device: torch.device) -> str:
    """One line naming what ran the benchmark: torch, threads, device, load average."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (
        f"torch {torch.__version__}, device {where}, threads {torch.get_num_threads()}, "
        f"load avg at start {os.getloadavg()[0]:.2f}"
    )


def add_machine_args(ap: argparse.ArgumentParser) -> None:
    """--threads and --device, the same in every benchmark."""
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def setup_machine(args: argparse.Namespace) -> torch.device:
    """Apply --threads, check --device, print what runs the benchmark; returns the device."""
    limit_threads(args.threads)
    device = pick_device(args.device)
    print(describe(device))
    return device
