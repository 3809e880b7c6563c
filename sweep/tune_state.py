"""Tune's experiment state, kept readable when the driver is killed while Tune writes it.

Tune saves its experiment state (`experiment_state-<session>.json`: the trials, their status
and latest checkpoints; what `Tuner.restore` reads) in a staging directory and copies it to
the experiment directory with a plain, non-atomic copy. A driver killed during that copy
leaves the file cut off, and the rerun's restore cannot read it and crashed (seen in a test
run: JSONDecodeError in Tune, then a KeyError in our trial names). So while Tune runs,
`StateBackup` (a Tune callback) keeps the last complete copy of the state beside it, written
atomically, and before a restore `repair` puts that copy back if the newest state does not
parse. The copy can lag the lost one by a step: a trial that finished in the last moments
before the kill may then repeat its last epoch from its previous checkpoint (resuming is
exact, so its numbers do not change).
"""

from __future__ import annotations

import json
import time

import pyarrow.fs as pafs
from ray import tune

from sweep import storage
from trainables.errors import InputError

BACKUP_FILE = "pags-experiment-state.json"
STATE_PREFIX, STATE_SUFFIX = "experiment_state-", ".json"  # Tune's CKPT_FILE_TMPL


def newest_state(exp_path: str) -> str | None:
    """Path of the state file Tune would restore from (the newest session's), if any."""
    fs, root = storage.filesystem(exp_path)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(
        i.base_name
        for i in infos
        if i.base_name.startswith(STATE_PREFIX) and i.base_name.endswith(STATE_SUFFIX)
    )
    return storage.join(exp_path, names[-1]) if names else None


def _parses(text: str | None) -> bool:
    if text is None:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class StateBackup(tune.Callback):
    """Copies Tune's newest state file to BACKUP_FILE whenever it changed and parses.

    Checked at the end of every Tune step, at most every `every_s` seconds (a file-info call
    each time; remote storage wants a few seconds)."""

    def __init__(self, exp_path: str, every_s: float = 0.0):
        self.exp_path, self.every_s = exp_path, every_s
        self._last_check, self._last_seen = 0.0, None

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last_check >= self.every_s:
            self.save()

    def on_experiment_end(self, trials, **info):
        self.save()

    def save(self) -> None:
        self._last_check = time.monotonic()
        path = newest_state(self.exp_path)
        if path is None:
            return
        fs, inner = storage.filesystem(path)
        info = fs.get_file_info(inner)
        seen = (path, info.mtime_ns, info.size)
        if seen == self._last_seen:
            return
        text = storage.read_text(path)
        if _parses(text):  # not while Tune is halfway through copying it
            storage.write_text_atomic(storage.join(self.exp_path, BACKUP_FILE), text)
            self._last_seen = seen


def repair(exp_path: str, log=print) -> None:
    """Before a restore: if Tune's newest state file does not parse, put the last complete copy
    in its place. ValueError (one line) if there is none."""
    path = newest_state(exp_path)
    if path is None or _parses(storage.read_text(path)):
        return
    backup = storage.read_text(storage.join(exp_path, BACKUP_FILE))
    if not _parses(backup):
        raise InputError(
            f"Tune's state {path} is damaged and has no complete copy to restore from; move "
            f"{exp_path} aside to start this sweep over"
        )
    storage.write_text_atomic(path, backup)
    log(
        "[pags] Tune's state file was cut off when the driver died; restored its last "
        "complete copy (a trial that finished just before may repeat its last epoch)"
    )
