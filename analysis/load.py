"""Load `trials.parquet` and `measures.parquet` from one or more experiment directories.

Every problem with the files (missing, truncated, foreign, unknown schema version, missing
columns, unreadable values) raises `ResultsError` with one line naming the path and the
problem, so the CLI can print it as is. Known older versions are migrated with a warning
(analysis/results/tables.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from analysis.results import tables
from analysis.results.layout import MEASURES_FILE, TRIALS_FILE


class ResultsError(ValueError):
    """Results that cannot be read; the message names the path and the problem."""


class Results(NamedTuple):
    """The two results tables with documented dtypes (analysis/results/columns.py)."""

    trials: pd.DataFrame
    measures: pd.DataFrame
    sources: tuple[Path, ...]


def load_results(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Results:
    """Read one experiment directory, or several and concatenate them.

    A path may also name `trials.parquet` or `measures.parquet` directly; its directory is used.
    A config_id present in more than one directory is kept from the first one only (same
    config hash = same trial, e.g. a copied or resumed experiment), with a warning.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [path_or_paths]
    else:
        paths = list(path_or_paths)
    if not paths:
        raise ResultsError("no results directory given")
    dirs = [_results_dir(Path(p)) for p in paths]
    trials, measures = [], []
    seen: set[str] = set()
    for d in dirs:
        t = _read_table(d / TRIALS_FILE, "trials")
        m = _read_table(d / MEASURES_FILE, "measures")
        dup = set(t["config_id"]) & seen
        if dup:
            warnings.warn(
                f"{d}: {len(dup)} config_id(s) already loaded from an earlier directory; "
                "keeping the first copy",
                stacklevel=2,
            )
            t = t[~t["config_id"].isin(dup)]
            m = m[~m["config_id"].isin(dup)]
        seen |= set(t["config_id"])
        trials.append(t)
        measures.append(m)
    return Results(
        trials=_concat(trials, "trials"),
        measures=_concat(measures, "measures"),
        sources=tuple(dirs),
    )


def _results_dir(path: Path) -> Path:
    if path.is_file() and path.name in (TRIALS_FILE, MEASURES_FILE):
        path = path.parent
    if not path.exists():
        raise ResultsError(f"{path}: results directory does not exist")
    if not path.is_dir():
        raise ResultsError(f"{path}: not a results directory (expected a directory)")
    return path.resolve()


def _read_table(path: Path, table: str) -> pd.DataFrame:
    if not path.is_file():
        raise ResultsError(f"{path}: file missing (expected {table} table)")
    try:
        return tables.read_table(str(path), table)
    except tables.TableError as err:
        raise ResultsError(str(err)) from None


def _concat(frames: list[pd.DataFrame], table: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return tables.empty(table)
    # Re-coerce: extra columns present in only some directories become NaN and must not
    # change the documented dtypes.
    return tables.coerce(pd.concat(frames, ignore_index=True), table)
