"""Load `trials.parquet` and `measures.parquet` from one or more experiment directories.

Every problem with the files (missing, truncated, foreign, wrong schema version, missing
columns, unreadable values) raises `ResultsError` with one line naming the path and the
problem, so the CLI can print it as is.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow.parquet as pq

from analysis import schema
from analysis.errors import one_line
from analysis.schema import MEASURES_FILE, TRIALS_FILE


class ResultsError(ValueError):
    """Results that cannot be read; the message names the path and the problem."""


class Results(NamedTuple):
    """The two results tables with documented dtypes (see `analysis.schema`)."""

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
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # pyarrow raises several types for damaged files
        raise ResultsError(f"{path}: not a readable Parquet file ({one_line(err)})") from None
    version = meta.get(schema.METADATA_KEY.encode())
    if version is None:
        raise ResultsError(
            f"{path}: no {schema.METADATA_KEY} in the Parquet metadata; not a pags results table"
        )
    if version.decode() != schema.SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema version {version.decode()!r}, this analysis reads "
            f"{schema.SCHEMA_VERSION!r}"
        )
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # truncated row groups only fail here
        raise ResultsError(f"{path}: unreadable Parquet data ({one_line(err)})") from None
    try:
        return schema.coerce(df, table)
    except ValueError as err:
        raise ResultsError(f"{path}: {one_line(err)}") from None


def _concat(frames: list[pd.DataFrame], table: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty(table)
    # Re-coerce: extra columns present in only some directories become NaN and must not
    # change the documented dtypes.
    return schema.coerce(pd.concat(frames, ignore_index=True), table)
