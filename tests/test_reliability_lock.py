"""The experiment directory's lock without Ray (issue 6, item 7; the end-to-end test with two
real sweeps is in test_reliability_faults.py): held by another process -> refused with its pid;
released when that process is SIGKILLed; a sweep that fails before claiming a new directory
leaves no directory behind."""

import os
import signal
import subprocess
import sys

import pytest

from analysis.results.layout import LOCK_FILE
from sweep.cli import main
from sweep.experiment import locked
from sweep.tune import cluster

HOLD = """
import sys, time
from sweep.experiment import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/exp (SIGKILLed at the end)."""
    exp = tmp_path / "exp"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(exp)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield exp, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_held_directory_is_refused_naming_the_holder(holder):
    exp, proc = holder
    with pytest.raises(ValueError, match=rf"is in use by another pags sweep \(pid {proc.pid}\)"):
        with locked(str(exp)):
            pass
    assert (exp / LOCK_FILE).exists()  # the refused one removed nothing


def test_the_lock_dies_with_its_process(holder):
    exp, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with locked(str(exp)):  # no stale lock after a SIGKILL
        assert (exp / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_sweep_cli_refuses_a_held_directory_before_ray(holder, monkeypatch, capsys):
    exp, proc = holder

    def connect(*args, **kwargs):
        raise AssertionError("a refused sweep reached Ray")

    monkeypatch.setattr(cluster, "connect", connect)
    before = sorted(p.name for p in exp.iterdir())
    code = main(["sweep", "--preset", "digits-quick", "--output", str(exp)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"pid {proc.pid}" in err and "Traceback" not in err
    assert sorted(p.name for p in exp.iterdir()) == before


def test_a_failure_before_the_claim_leaves_no_new_directory(tmp_path):
    exp = tmp_path / "new"
    with pytest.raises(ValueError, match="no node can run it"):
        with locked(str(exp)):
            assert (exp / LOCK_FILE).exists()
            raise ValueError("no node can run it")  # e.g. check_resources after Ray started
    assert not exp.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with locked(str(existing)):
        pass
    assert existing.is_dir()  # a directory the user made stays


def test_a_dry_run_takes_no_lock(holder, capsys):
    exp, _ = holder
    assert main(["sweep", "--preset", "digits-quick", "--output", str(exp), "--dry-run"]) == 0
    assert "(new)" in capsys.readouterr().out
