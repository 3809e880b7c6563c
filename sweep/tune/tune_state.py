"""Tune's state files, kept readable when the driver is killed while Tune writes them.

Tune saves its experiment state (`experiment_state-<session>.json`: the trials, their status
and latest checkpoints; what `Tuner.restore` reads) and its search algorithm's state
(`basic-variant-state-<session>.json` for grids, `searcher-state-<session>.pkl` and
`search_gen_state-<session>.json` for searchers; cloudpickles whatever the suffix) in a staging
directory and copies them to the experiment directory with a plain, non-atomic copy. A driver
killed during a copy leaves a file cut off, and the rerun's restore cannot read it (seen in
test runs: a JSONDecodeError in Tune, and an EOFError unpickling the search state; each ended
in a KeyError in our trial names). So while Tune runs, `StateBackup` (a Tune callback) keeps
the last complete copy of each state file beside it, written atomically, and before a restore
`repair` puts a copy back where the newest file does not parse. A copy can lag the lost file
by a step: a trial that finished in the last moments before the kill may then repeat its last
epoch from its previous checkpoint (resuming is exact, so its numbers do not change). A grid's
search state stops changing once every trial is generated, at the start of a sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow.fs as pafs
from ray import cloudpickle, tune

from analysis.results.errors import InputError
from sweep import storage

BACKUP_FILE = "pags-experiment-state.json"


def _json_parses(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _pickle_parses(data: bytes) -> bool:
    try:
        cloudpickle.loads(data)
    except Exception:  # a cut-off pickle raises EOFError, UnpicklingError, ValueError, ...
        return False
    return True


@dataclass(frozen=True)
class StateFile:
    """One kind of Tune state file: its name pattern, our backup's name, how to check it."""

    prefix: str
    suffix: str
    backup: str
    parses: Callable[[bytes], bool]


STATE_FILES = (
    StateFile("experiment_state-", ".json", BACKUP_FILE, _json_parses),  # Tune's CKPT_FILE_TMPL
    StateFile("basic-variant-state-", ".json", "pags-basic-variant-state.pkl", _pickle_parses),
    StateFile("searcher-state-", ".pkl", "pags-searcher-state.pkl", _pickle_parses),
    StateFile("search_gen_state-", ".json", "pags-search-gen-state.pkl", _pickle_parses),
)
EXPERIMENT_STATE = STATE_FILES[0]


def newest(exp_path: str, kind: StateFile = EXPERIMENT_STATE) -> str | None:
    """Path of the file of this kind Tune would restore from (the newest session's), if any."""
    fs, root = storage.filesystem(exp_path)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(
        i.base_name
        for i in infos
        if i.base_name.startswith(kind.prefix) and i.base_name.endswith(kind.suffix)
    )
    return storage.join(exp_path, names[-1]) if names else None


class StateBackup(tune.Callback):
    """Copies each kind of Tune's newest state file to its backup whenever it changed and
    parses. Checked at the end of every Tune step, at most every `every_s` seconds (file-info
    calls each time; remote storage wants a few seconds)."""

    def __init__(self, exp_path: str, every_s: float = 0.0):
        self.exp_path, self.every_s = exp_path, every_s
        self._last_check, self._last_seen = 0.0, {}

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last_check >= self.every_s:
            self.save()

    def on_experiment_end(self, trials, **info):
        self.save()

    def save(self) -> None:
        self._last_check = time.monotonic()
        for kind in STATE_FILES:
            path = newest(self.exp_path, kind)
            if path is None:
                continue
            fs, inner = storage.filesystem(path)
            info = fs.get_file_info(inner)
            seen = (path, info.mtime_ns, info.size)
            if seen == self._last_seen.get(kind.backup):
                continue
            data = storage.read_bytes(path)
            if data is not None and kind.parses(data):  # not while Tune is halfway through
                storage.write_bytes_atomic(storage.join(self.exp_path, kind.backup), data)
                self._last_seen[kind.backup] = seen


def repair(exp_path: str, log=print) -> None:
    """Before a restore: wherever Tune's newest state file of a kind does not parse, put the
    last complete copy in its place. InputError (one line) if there is none."""
    for kind in STATE_FILES:
        path = newest(exp_path, kind)
        if path is None:
            continue
        data = storage.read_bytes(path)
        if data is not None and kind.parses(data):
            continue
        backup = storage.read_bytes(storage.join(exp_path, kind.backup))
        if backup is None or not kind.parses(backup):
            raise InputError(
                f"Tune's state {path} is damaged and has no complete copy to restore from; "
                f"move {exp_path} aside to start this sweep over"
            )
        storage.write_bytes_atomic(path, backup)
        log(
            f"[pags] Tune's state file {path.rsplit('/', 1)[-1]} was cut off when the driver "
            "died; restored its last complete copy (a trial that finished just before may "
            "repeat its last epoch)"
        )
