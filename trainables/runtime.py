"""One home for a process's compute setup: which device, how many threads, denormals.

Every place that trains or measures (a Tune trial, a Ray task of `pags measure` or of the
artifact preparation, `pags train`, `pags measure --local`) sets up through these, so a trial
and a measured checkpoint compute the same way. No Ray in here: the Ray-side callers pass what
Ray assigned (CPUs, whether they got GPUs).
"""

from __future__ import annotations

import contextlib

import torch


def choose_device(name: str = "", gpus_assigned: bool = True) -> torch.device:
    """`name` if given (cpu, cuda, cuda:1), else CUDA when there is one (and, in a Ray worker,
    when Ray assigned it GPUs: Ray sets CUDA_VISIBLE_DEVICES to them, so the first visible
    device is the assigned one), else the CPU."""
    if name:
        return torch.device(name)
    if gpus_assigned and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def use_cpus(cpus: float) -> None:
    """Torch threads = the CPUs this worker was given (its share, not the whole node)."""
    torch.set_num_threads(max(1, int(cpus)))


@contextlib.contextmanager
def denormals_flushed():
    """Flush denormals to zero while training or measuring: they made one prototype trial 4x
    slower. The flag is process-wide CPU state, so it is switched off again on the way out
    (other code in the process may need subnormals). A trial and a measured checkpoint both
    run inside it, so their numbers match."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
