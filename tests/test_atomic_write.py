"""The one atomic-write helper (analysis/atomic.py) and the writers built on it."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from analysis.results import tables
from analysis.results.atomic import atomic_write

try:
    from test_analysis_fakes import make_tables
except ImportError:
    from tests.test_analysis_fakes import make_tables


def test_two_writers_of_one_table_do_not_collide(tmp_path):
    """Writers of one path each use a temporary file of their own (tables.write_table once
    used a fixed `<path>.tmp`, so one writer renamed the other's half-written file)."""
    trials, _ = make_tables()
    path = tmp_path / "trials.parquet"
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        try:
            for _ in range(10):
                tables.write_table(trials.assign(seed=seed), path, "trials")
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    back = pd.read_parquet(path)
    assert len(back) == len(trials) and back["seed"].nunique() == 1  # one writer's whole table
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")

    def half(f):
        f.write(b"new, then")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
