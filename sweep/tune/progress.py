"""A progress line a person can read, instead of Tune's tables.

    [pags] 00:02:13  9/16 done (1 diverged)  2 running  5 pending  best alignment 0.712
           (gradnorm lambda=1)  ETA 00:01:40

printed when a trial starts or ends, and at least every `every_s` seconds. The ETA extrapolates
the epochs finished in this session (a resumed sweep does not count the old ones as fast).
`ProgressLine` is a Tune `ProgressReporter` (Tune's legacy output engine: the new one ignores
custom reporters and prints its own tables). It is pickled with the experiment state, so it
keeps no stream and resets its counters in `setup`.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from ray.tune import ProgressReporter
from ray.tune.experiment import Trial

from sweep.tune.progress_text import clock, progress_line

__all__ = ["ProgressLine", "clock", "progress_line"]


class ProgressLine(ProgressReporter):
    """Tune progress reporter printing `progress_line`: when the trial counts change (at most
    every `min_gap_s`), at least every `every_s` seconds, and at the end. `total` trials of
    `epochs` epochs each; `metric`/`mode` pick the "best so far" (test_accuracy while the
    metric is not measured yet)."""

    def __init__(
        self,
        total: int,
        epochs: int,
        metric: str = "alignment",
        mode: str = "max",
        label: str = "",
        every_s: float = 30.0,
        min_gap_s: float = 2.0,
    ):
        self.total, self.epochs, self.metric, self.mode = total, epochs, metric, mode
        self.label, self.every_s, self.min_gap_s = label, every_s, min_gap_s
        self.setup()

    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs):
        # Called at the start of every (also every resumed) run: nothing carries over.
        self._start = time.monotonic()
        self._last_print = -math.inf
        self._last_counts: tuple = ()
        self._epochs_at_start: int | None = None

    def should_report(self, trials: list[Trial], done: bool = False) -> bool:
        now = time.monotonic()
        since = now - self._last_print
        changed = self._counts(trials) != self._last_counts
        return done or since >= self.every_s or (changed and since >= self.min_gap_s)

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        now = time.monotonic()
        self._last_print, self._last_counts = now, self._counts(trials)
        print(self.line(trials, now - self._start), flush=True)

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _counts(trials: list[Trial]) -> tuple:
        return tuple(sorted(Counter(t.status for t in trials).items()))

    def line(self, trials: list[Trial], elapsed: float) -> str:
        counts = dict(done=0, diverged=0, failed=0, running=0, pending=0)
        epochs_done, remaining = 0, 0
        for t in trials:
            last = t.last_result or {}
            epoch = int(last.get("epoch", 0) or 0)
            epochs_done += epoch
            if t.status not in (Trial.TERMINATED, Trial.ERROR):
                remaining += max(0, self.epochs - epoch)
            if t.status == Trial.TERMINATED:
                counts["done"] += 1
                counts["diverged"] += last.get("status") == "diverged"
            elif t.status == Trial.ERROR:
                counts["done"] += 1
                counts["failed"] += 1
            elif t.status == Trial.RUNNING:
                counts["running"] += 1
            else:
                counts["pending"] += 1
        total = max(self.total, len(trials))
        counts["pending"] += total - len(trials)  # a searcher creates trials as it goes
        counts["total"] = total
        remaining += (total - len(trials)) * self.epochs
        if self._epochs_at_start is None:
            self._epochs_at_start = epochs_done
        eta = self._eta(epochs_done, remaining, elapsed)
        return progress_line(elapsed, counts, self.best(trials), eta, self.label)

    def best(self, trials: list[Trial]) -> tuple[str, float, str, float] | None:
        for metric, mode in ((self.metric, self.mode), ("test_accuracy", "max")):
            scored = []
            for t in trials:
                last = t.last_result or {}
                value = last.get(metric)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    scored.append((value, last.get("method", "?"), last.get("strength", 0.0)))
            if scored:
                value, method, strength = (max if mode == "max" else min)(scored)
                return metric, value, method, strength
        return None

    def _eta(self, epochs_done: int, remaining: int, elapsed: float) -> float | None:
        """Remaining epochs at this session's rate (stopped or failed trials need none)."""
        fresh = epochs_done - (self._epochs_at_start or 0)
        if remaining <= 0:
            return 0.0
        if fresh <= 0 or elapsed <= 0:
            return None
        return remaining * elapsed / fresh
