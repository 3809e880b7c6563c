"""The results tables from the trials' final records: trials.parquet and measures.parquet.

Each finished trial leaves a `record.json` in its last checkpoint (trainables/tune_trainable.py).
`build_tables` turns a list of `TrialOutcome`s into the two documented tables
(analysis/schema.py), keyed by `config_id` so that a trial retried or resumed any number of
times gives exactly one row; `write_results` writes them atomically, with the schema version in
the file metadata, into a local directory or a URI, plus the gradient maps as
`maps/<config_id>.npz` for the analysis' gallery.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from analysis import schema
from analysis.schema import MAPS_DIR, MEASURES_FILE, TRIALS_FILE  # noqa: E402
from sweep import storage
from trainables.config import TrialConfig

FINAL = ("completed", "diverged")
# Columns beyond the documented ones (analysis/schema.py allows extras): the flattened trial
# config, and these, with their value for a trial that never reported.
EXTRA = {"epochs_completed": 0, "pid": -1, "node": "", "node_id": "", "error": ""}


@dataclass
class TrialOutcome:
    """What the driver knows of one trial at the end of a run."""

    config: dict  # TrialConfig dict
    record: dict | None = None  # record.json of its last checkpoint
    error: str | None = None  # one line, when the trial failed for good
    maps: tuple[pafs.FileSystem, str] | None = None  # its maps.npz, if measured
    early_stopped: bool = False  # stopped by the ASHA scheduler before its last epoch
    search: str = ""  # the Optuna study that suggested it (sweep/search.py), "" if none
    search_trial: int = -1  # its Optuna trial number in that study, -1 if none

    @property
    def status(self) -> str:
        """completed / diverged / stopped / error (analysis/schema.py), or running for an
        unfinished (interrupted) trial. A stopped trial is kept but not averaged: it has no
        final measurement; `epochs_completed` says how far it got."""
        if self.error is not None:
            return "error"
        if self.early_stopped:
            return "stopped"
        return self.record["status"] if self.record else "running"


def final_outcomes(outcomes: list[TrialOutcome]) -> dict[str, TrialOutcome]:
    """One finished outcome per config_id (completed/diverged preferred over stopped/error);
    unfinished trials are left out."""
    best: dict[str, TrialOutcome] = {}
    for o in outcomes:
        if o.status == "running":
            continue
        cid = TrialConfig.from_dict(o.config).config_id
        if cid not in best or (best[cid].status not in FINAL and o.status in FINAL):
            best[cid] = o
    return best


def build_tables(
    outcomes: list[TrialOutcome], experiment: str, versions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, measures) DataFrames, one trials row per config_id. `versions` (pags, torch,
    ray of the driver) fill in for trials that failed before reporting their own."""
    trial_rows, measure_rows = [], []
    for cid, o in sorted(final_outcomes(outcomes).items()):
        trial_rows.append(_trial_row(cid, o, experiment, versions))
        measure_rows += _measure_rows(cid, o.record) if o.record else []
    trials = pd.DataFrame(trial_rows) if trial_rows else schema.empty("trials").assign(**EXTRA)
    columns = [c.name for c in schema.MEASURES_COLUMNS]
    measures = (
        pd.DataFrame(measure_rows, columns=columns) if measure_rows else schema.empty("measures")
    )
    return schema.coerce(trials, "trials"), schema.coerce(measures, "measures")


def _trial_row(cid: str, o: TrialOutcome, experiment: str, versions: dict) -> dict[str, Any]:
    cfg = TrialConfig.from_dict(o.config)
    row: dict[str, Any] = {"config_id": cid, "experiment": experiment}
    for f in fields(TrialConfig):
        value = getattr(cfg, f.name)
        row[f.name] = json.dumps(list(value)) if isinstance(value, tuple) else value
    for col in schema.TRIALS_COLUMNS:  # measurement columns: NaN / "" unless measured
        row.setdefault(col.name, "" if col.dtype == "str" else math.nan)
    rec = o.record or {}
    row.update(rec.get("summary", {}))
    v = rec.get("versions", versions)
    row.update({k: rec.get(k, default) for k, default in EXTRA.items()})
    row.update(
        status=o.status,
        wall_time_s=rec.get("wall_time_s", math.nan),
        error=o.error or "",
        search=o.search,
        search_trial=o.search_trial,
        config_json=json.dumps(cfg.to_dict(), sort_keys=True),
        pags_version=v.get("pags", ""),
        torch_version=v.get("torch", ""),
        ray_version=v.get("ray", ""),
    )
    return row


def _measure_rows(cid: str, record: dict) -> list[dict[str, Any]]:
    """The measurer's long-format rows plus the per-epoch learning curve."""
    rows = [{**r, "config_id": cid} for r in record.get("measure_rows", [])]
    sizes = {"test_accuracy": record.get("n_test", 0), "train_loss": record.get("n_train", 0)}
    for h in record.get("history", []):
        for measure, n in sizes.items():
            rows.append(
                {
                    "config_id": cid,
                    "epoch": h["epoch"],
                    "measure": measure,
                    "eps": math.nan,
                    "value": h.get(measure, math.nan),
                    "std": math.nan,
                    "n": n,
                    "gradient": "",
                    "reference": "",
                    "metric": "",
                }
            )
    return rows


def write_table(df: pd.DataFrame, path: str, table: str) -> None:
    """Atomic write with the schema version: `schema.write_parquet` locally; for a URI the
    same Arrow table (`schema.to_arrow`) through pyarrow's filesystem."""
    if not storage.is_uri(path):
        schema.write_parquet(df, path, table)
        return
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.to_arrow(df, table), buf)
    storage.write_bytes_atomic(path, buf.getvalue())


def write_results(
    outcomes: list[TrialOutcome], exp_dir: str, experiment: str, versions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write trials.parquet, measures.parquet and maps/<config_id>.npz into `exp_dir`."""
    trials, measures = build_tables(outcomes, experiment, versions)
    fs, inner = storage.filesystem(exp_dir)
    fs.create_dir(inner, recursive=True)
    write_table(trials, storage.join(exp_dir, TRIALS_FILE), "trials")
    write_table(measures, storage.join(exp_dir, MEASURES_FILE), "measures")
    for cid, o in final_outcomes(outcomes).items():
        if o.maps is not None:
            fs, path = o.maps
            storage.copy_file(fs, path, storage.join(exp_dir, MAPS_DIR, f"{cid}.npz"))
    return trials, measures
