"""The experiment directory's identity: `sweep_config.json` says which sweep it holds.

A rerun of the same sweep resumes; a different sweep pointed at the same directory is refused
with the first difference named, and nothing there is touched. While a sweep runs it holds
the directory's lock, so a second sweep on the same directory is refused (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

from analysis.results import layout
from analysis.results.errors import InputError
from analysis.results.layout import LOCK_FILE, MEASURES_FILE, SWEEP_FILE, TRIALS_FILE
from sweep import storage
from sweep.plan.config import SweepConfig, first_difference

MAX_FAILURES_KEY = "max_failures"  # in SWEEP_FILE beside the sweep config
# What a sweep writes; present without sweep_config.json = results of something unknown.
OWNED = ("tune", "baseline", TRIALS_FILE, MEASURES_FILE)


def check_compatible(exp_dir: str, sweep: SweepConfig, max_failures: int | None = None) -> bool:
    """True if `exp_dir` already holds this sweep (resume), False if it holds none yet.
    Raises InputError naming the first difference for another sweep, or a `max_failures`
    other than the stored one: a resumed Tune experiment keeps the retries it started with,
    so a changed value would be silently ignored. Reads only."""
    text = storage.read_text(layout.sweep_file(exp_dir))
    if text is None:
        foreign = [n for n in OWNED if storage.exists(storage.join(exp_dir, n))]
        if foreign:
            raise InputError(
                f"{exp_dir} holds results ({foreign[0]}) without {SWEEP_FILE}; "
                "allowed: a new or pags-made --output"
            )
        return False
    try:
        stored = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{layout.sweep_file(exp_dir)} is not valid JSON") from None
    kept = stored.pop(MAX_FAILURES_KEY, None)
    diff = first_difference(stored, sweep.to_dict())
    if diff is not None:
        raise InputError(
            f"{exp_dir} holds a different sweep: {diff}; allowed: the same "
            "options to resume, or another --output"
        )
    if max_failures is not None and kept is not None and kept != max_failures:
        raise InputError(
            f"--max-failures {max_failures} differs from the {kept} this sweep started with, "
            f"which Tune keeps on resume; allowed: {kept}, or another --output"
        )
    return True


def claim(exp_dir: str, sweep: SweepConfig, max_failures: int | None = None) -> None:
    """Record the sweep in its directory (after `check_compatible` said it is new), with the
    retries per trial it starts with (not identity, but fixed once Tune has started)."""
    body = {**sweep.to_dict(), "config_id": sweep.config_id}
    if max_failures is not None:
        body[MAX_FAILURES_KEY] = max_failures
    storage.write_text_atomic(layout.sweep_file(exp_dir), json.dumps(body, indent=1))


@contextlib.contextmanager
def locked(exp_dir: str) -> Iterator[None]:
    """Hold `exp_dir` for one running sweep; ValueError if another sweep holds it.

    An flock on `<exp_dir>/.pags.lock`: the OS releases it when the process ends, even by
    SIGKILL, so a killed sweep never blocks its rerun. URIs (s3://, gs://) have no locks: there
    the user must not start two sweeps on one directory. If this sweep created the directory
    and wrote nothing else into it (it failed before claiming it), the directory goes again."""
    if storage.is_uri(exp_dir):
        yield
        return
    created = not os.path.exists(exp_dir)
    os.makedirs(exp_dir, exist_ok=True)
    path = layout.lock_file(exp_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise InputError(
                f"{exp_dir} is in use by another pags sweep (pid {holder}); allowed: wait for "
                "it to finish, or another --output"
            ) from None
        held = True
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if held and created and os.listdir(exp_dir) == [LOCK_FILE]:
            os.remove(path)
            os.rmdir(exp_dir)
        os.close(fd)
