"""Helpers for the reliability tests (no tests here): run `pags sweep` as a real
process, watch what its trials report, and kill only processes that the test started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

PAGS_SWEEP = [sys.executable, "-m", "sweep.cli", "sweep"]


def start_sweep(*args, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`pags sweep ARGS` in the background; stdout and stderr go to files in `cwd` (a pipe
    could fill up and block the sweep while the test polls)."""
    out = open(cwd / "sweep.out", "a")  # noqa: SIM115 - closed with the process (finish)
    proc = subprocess.Popen(
        [*PAGS_SWEEP, *map(str, args)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    proc.log_file = out  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """Wait for a sweep started by `start_sweep`; its output so far."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_file.close()
    return Path(proc.log_file.name).read_text()


def reports(exp: Path) -> dict[str, list[dict]]:
    """{config_id: the results its trial reported so far, in order} from Tune's result.json
    files (every report carries the worker pid, the epoch and the status). A line being written
    right now is skipped."""
    out: dict[str, list[dict]] = {}
    for path in sorted(exp.glob("*/*/result.json")):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if rows:
            out.setdefault(rows[0]["config_id"], []).extend(rows)
    return out


def wait_until(what: str, check: Callable[[], object], proc: subprocess.Popen, timeout: float):
    """Poll `check()` until it returns something truthy (returned); fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (code {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_descendant(root: int, pid: int) -> None:
    """SIGKILL `pid`, after checking that it is one of `root`'s (our sweep's) processes."""
    assert pid in {p.pid for p in descendants(root)}, f"{pid} is not a process of our sweep"
    os.kill(pid, signal.SIGKILL)


def reap(procs: list[psutil.Process], timeout: float = 10) -> None:
    """Stop the given processes (all started by the test) that are still alive."""
    alive = []
    for p in procs:
        try:
            p.kill()
            alive.append(p)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout)


def final_columns(trials, measures):
    """The columns a rerun with the same seeds must reproduce exactly (no pids, times, nodes),
    sorted so that two runs compare row by row."""
    t = trials[
        ["config_id", "method", "strength", "seed", "status", "epochs_trained", "train_loss",
         "test_accuracy"]
    ].sort_values("config_id").reset_index(drop=True)  # fmt: skip
    m = measures[["config_id", "epoch", "measure", "eps", "value"]]
    m = m.sort_values(["config_id", "measure", "epoch", "eps"]).reset_index(drop=True)
    return t, m
