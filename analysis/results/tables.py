"""Writing and reading the results tables: coercion to the documented dtypes, the schema
version in the Parquet metadata, and the explicit migration of older tables.

Writing (sweep side)::

    write_table(df, path, "trials")  # coerce, attach the version, atomic (local path or URI)

Plain ``df.to_parquet`` would drop the version. `SCHEMA_VERSION` travels in the Parquet
key-value metadata under `METADATA_KEY`; `read_table` refuses files without it or with an
unknown version, and migrates a known older one (MIGRATIONS) with a warning that says what
changed, so old results load and the reader knows.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd

from analysis.results.atomic import write_bytes_atomic
from analysis.results.columns import ABSENT, STATUSES, Column, columns

SCHEMA_VERSION = "2"
METADATA_KEY = "pags_schema_version"


class TableError(ValueError):
    """A table that cannot be read as documented; the message is one line."""


def _v1_to_v2(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, str]:
    """Version 1 had `epochs` for the measured epoch of a `pags measure` row and the epochs
    trained of a sweep trial in the undocumented extra column `epochs_completed`."""
    if table != "trials":
        return df, ""
    df = df.copy()
    if "epochs_completed" in df.columns:
        df = df.rename(columns={"epochs_completed": "epochs_trained"})
    if "checkpoint_name" in df.columns:
        measured = df["checkpoint_name"].fillna("").astype(str) != ""
        if measured.any():
            if "epochs_trained" not in df.columns:
                df["epochs_trained"] = -1
            df.loc[measured, "epochs_trained"] = df.loc[measured, "epochs"]
            df.loc[measured, "epochs"] = -1
    return df, "epochs_completed -> epochs_trained; pags measure rows: epochs -> epochs_trained"


# from-version -> (migration to the next version, that version)
MIGRATIONS = {"1": (_v1_to_v2, "2")}


def table_metadata() -> dict[str, str]:
    """The Parquet key-value metadata every results table carries."""
    return {METADATA_KEY: SCHEMA_VERSION}


def describe(table: str) -> pd.DataFrame:
    """The documentation of one table as a DataFrame (name, dtype, unit, meaning, direction)."""
    return pd.DataFrame([c.__dict__ for c in columns(table)])


def coerce(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return a copy of `df` with every documented column in its documented dtype.

    Raises ValueError naming the column when a column is missing or cannot be converted
    (e.g. a missing seed: int64 has no NaN). Missing strings become "". Extra columns pass
    through unchanged, after the documented ones.
    """
    cols = columns(table)
    missing = [c.name for c in cols if c.name not in df.columns and not c.optional]
    if missing:
        raise ValueError(f"{table} table is missing columns: {', '.join(missing)}")
    out = df.copy()
    for col in cols:
        if col.name not in out.columns:  # optional, absent from an older table
            out[col.name] = ABSENT[col.dtype]
        elif col.optional:  # absent from some of the rows (tables of two versions joined)
            out[col.name] = out[col.name].where(out[col.name].notna(), ABSENT[col.dtype])
        out[col.name] = _convert(out[col.name], col, table)
    if table == "trials":
        bad = sorted(set(out["status"]) - set(STATUSES))
        if bad:
            raise ValueError(f"trials column status has unknown values {bad}; allowed {STATUSES}")
    names = [c.name for c in cols]
    return out[names + [c for c in out.columns if c not in names]].reset_index(drop=True)


def to_arrow(df: pd.DataFrame, table: str):
    """Coerce `df` and return a pyarrow Table carrying `table_metadata()` (for writers)."""
    import pyarrow as pa  # only writers need it; pandas' parquet reader imports it anyway

    arrow = pa.Table.from_pandas(coerce(df, table), preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in table_metadata().items()})
    return arrow.replace_schema_metadata(meta)


def write_table(df: pd.DataFrame, path: str, table: str) -> None:
    """Coerce `df`, attach the version and write it atomically to a local path or a URI, so
    that a reader never sees a half-written table."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(to_arrow(df, table), buf)
    write_bytes_atomic(path, buf.getvalue())


def read_table(path: str, table: str) -> pd.DataFrame:
    """Read a local table written by `write_table` of this or an older version (migrated, with
    a warning); raises TableError (one line) for a missing, foreign or damaged file."""
    import pyarrow.parquet as pq

    from analysis.results.errors import one_line

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as err:  # pyarrow raises several types for damaged files
        raise TableError(f"{path}: not a readable Parquet file ({one_line(err)})") from None
    version = meta.get(METADATA_KEY.encode())
    if version is None:
        raise TableError(
            f"{path}: no {METADATA_KEY} in the Parquet metadata; not a pags results table"
        )
    version = version.decode()
    if version != SCHEMA_VERSION and version not in MIGRATIONS:
        raise TableError(
            f"{path}: schema version {version!r}, this analysis reads {SCHEMA_VERSION!r}"
            + (f" and migrates {', '.join(sorted(MIGRATIONS))}" if MIGRATIONS else "")
        )
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # truncated row groups only fail here
        raise TableError(f"{path}: unreadable Parquet data ({one_line(err)})") from None
    changes = []
    while version != SCHEMA_VERSION:
        step, version = MIGRATIONS[version][0], MIGRATIONS[version][1]
        df, change = step(df, table)
        changes += [change] if change else []
    if changes:
        warnings.warn(f"{path}: migrated from an older schema version ({'; '.join(changes)})",
                      stacklevel=2)  # fmt: skip
    try:
        return coerce(df, table)
    except ValueError as err:
        raise TableError(f"{path}: {one_line(err)}") from None


def empty(table: str) -> pd.DataFrame:
    """An empty table with the documented columns and dtypes."""
    cols = {c.name: pd.Series([], dtype=_pandas_dtype(c.dtype)) for c in columns(table)}
    return pd.DataFrame(cols)


def _pandas_dtype(dtype: str):
    # `str` is pandas' own string dtype on pandas 3 and object on pandas 2: both hold str.
    return str if dtype == "str" else dtype


def _convert(series: pd.Series, col: Column, table: str) -> pd.Series:
    try:
        if col.dtype == "str":
            return series.astype(object).where(series.notna(), "").astype(str)
        if col.dtype == "int64":
            if series.isna().any():
                raise ValueError("has missing values")
            values = pd.to_numeric(series)
            if not np.all(np.asarray(values, dtype=float) % 1 == 0):
                raise ValueError("has non-integer values")
            return values.astype("int64")
        return pd.to_numeric(series).astype("float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{table} column {col.name} is not {col.dtype}: {err}") from None
