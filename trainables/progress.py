"""Progress lines a person can watch: one per trial epoch, and throttled ones while the shared
artifacts train (minutes on a GPU, longer on a CPU)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Log = Callable[[str], None]


def epoch_line(metrics: dict, epochs: int) -> str:
    """`[pags] epoch 3/15: train loss 0.4123, test accuracy 0.9120, 4.2 s` (+ measured)."""
    head = f"[pags] epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4g}"
    if metrics.get("status") == "diverged":
        return f"{head}: diverged (non-finite loss), trial ends"
    line = f"{head}, test accuracy {metrics['test_accuracy']:.4f}, {metrics['epoch_time_s']:.1f} s"
    return line + (", measured" if "measures" in metrics else "")


class EpochProgress:
    """Call once per epoch of a loop capped at `max_epochs`; logs `stage: epoch e/max (what
    value), elapsed, at most T left` every `every_s` seconds and at the cap. "At most": the
    loops stop early once their validation loss stops improving."""

    def __init__(self, log: Log, stage: str, max_epochs: int, every_s: float = 10.0):
        self.log, self.stage, self.max_epochs, self.every_s = log, stage, max_epochs, every_s
        self.start = self.last = time.monotonic()

    def __call__(self, epoch: int, what: str, value: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and epoch < self.max_epochs:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / epoch * (self.max_epochs - epoch) if epoch else math.nan
        self.log(f"{self.stage}: epoch {epoch}/{self.max_epochs} ({what} {value:.4g}), "
                 f"{elapsed:.0f} s, at most {left:.0f} s left")  # fmt: skip
