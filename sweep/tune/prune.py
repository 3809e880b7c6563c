"""Old trial checkpoints on object storage deleted only once Tune's stored state no longer
names them.

Tune's `CheckpointConfig(num_to_keep)` deletes a trial's older checkpoint as soon as a newer
one registers, but uploads its experiment state (what a rerun restores from, naming each
trial's latest checkpoint) in the background. On S3 the upload lags, and a driver killed in
that window left a state naming a deleted checkpoint: the rerun failed the trial ("Could not
recover from checkpoint as it does not exist on storage anymore"; seen in
tests/test_reliability_s3.py). So on URIs Tune keeps every checkpoint and this callback
prunes: a checkpoint goes once a newer one of its trial registered and the stored state file
has since changed twice (at most one upload is in flight, so the second change comes from a
save made after the newer checkpoint registered, which names it or a later one). The newest
`keep` checkpoints of a trial always stay. `prune_finished` removes what is left over once
`Tuner.fit` has returned (Tune's final state upload is synchronous).
"""

from __future__ import annotations

import contextlib
import time

import pyarrow.fs as pafs
from ray import tune

from sweep import storage
from sweep.tune import tune_state

CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint directory names: checkpoint_000003


class CheckpointPruner(tune.Callback):
    def __init__(self, exp_path: str, keep: int = 2, every_s: float = 5.0):
        self.exp_path, self.keep, self.every_s = exp_path, keep, every_s
        self._changes = 0  # times the stored experiment state was seen to change
        self._seen = None
        self._last_check = 0.0
        # trial id -> [(checkpoint fs, path, changes seen when it registered)], oldest first
        self._registered: dict[str, list] = {}

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        entry = (checkpoint.filesystem, checkpoint.path, self._changes)
        self._registered.setdefault(trial.trial_id, []).append(entry)

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last_check >= self.every_s:
            self._last_check = time.monotonic()
            self._observe()
            self._prune()

    def _observe(self) -> None:
        path = tune_state.newest(self.exp_path)
        if path is None:
            return
        fs, inner = storage.filesystem(path)
        info = fs.get_file_info(inner)
        seen = (path, info.mtime_ns, info.size)
        if seen != self._seen:
            self._seen = seen
            self._changes += 1

    def _prune(self) -> None:
        for entries in self._registered.values():
            while len(entries) > self.keep and self._changes >= entries[1][2] + 2:
                fs, path, _ = entries.pop(0)
                with contextlib.suppress(OSError):  # already gone: nothing to free
                    fs.delete_dir(path)


def prune_finished(exp_path: str, keep: int = 2) -> None:
    """After `Tuner.fit` returned: keep only each trial's newest `keep` checkpoints."""
    fs, root = storage.filesystem(exp_path)
    for trial in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if trial.type != pafs.FileType.Directory:
            continue
        found = fs.get_file_info(pafs.FileSelector(trial.path))
        dirs = sorted(
            i.path
            for i in found
            if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX)
        )
        for path in dirs[:-keep]:
            with contextlib.suppress(OSError):
                fs.delete_dir(path)
