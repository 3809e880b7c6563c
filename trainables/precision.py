"""Training precision (`TrialConfig.mixed_precision`): bf16 autocast and channels_last.

"auto" turns both on where they pay (CUDA) and leaves CPU runs in fp32, bit-for-bit as before;
"on" forces them (on a CPU too: that is how the tests and the benchmark check them here);
"off" is plain fp32. Only the training step runs under autocast: every measurement runs in
fp32 outside it. bf16 keeps fp32's exponent range, so no loss scaling is needed. gradnorm's
double backward runs under autocast and squares its input gradient in fp32; the smoothness
penalty runs wholly in fp32 (a difference of nearby outputs, which bf16 rounding swamps).
"""

from __future__ import annotations

import contextlib

import torch

MODES = ("auto", "on", "off")


def uses_mixed_precision(mode: str, device: torch.device) -> bool:
    """Whether `mode` trains in bf16 autocast with channels_last on `device`."""
    if mode not in MODES:
        raise ValueError(f"mixed_precision={mode!r} is unknown; allowed: {', '.join(MODES)}")
    return mode == "on" or (mode == "auto" and torch.device(device).type == "cuda")


def autocast(enabled: bool, device: torch.device):
    """The context the training step runs in: bf16 autocast, or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def to_channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """4-D batches in channels_last memory order (same values, faster convolutions on GPUs)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.ndim == 4 else x
