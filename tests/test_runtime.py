"""The one home of process setup: SIGTERM handling (sweep/signals.py) and device, threads and
denormals (trainables/runtime.py)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from sweep.signals import on_sigterm, raise_keyboard_interrupt
from trainables.runtime import choose_device, denormals_flushed, use_cpus


def test_sigterm_calls_stop_with_the_previous_handler_and_restores_it():
    seen = []

    def before(*_):
        seen.append("before")

    old = signal.signal(signal.SIGTERM, before)
    try:
        with on_sigterm(lambda previous: seen.append(previous)):
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [before]
        assert signal.getsignal(signal.SIGTERM) is before
        with pytest.raises(KeyboardInterrupt), on_sigterm(raise_keyboard_interrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, old)


def test_device_threads_and_denormals():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(gpus_assigned=False) == torch.device("cpu")
    threads = torch.get_num_threads()
    try:
        use_cpus(0.5)  # a fractional CPU still gets one thread
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    with denormals_flushed():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0
