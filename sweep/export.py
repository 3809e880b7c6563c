"""The results tables from the trials' final records: trials.parquet and measures.parquet.

Each finished trial leaves a `record.json` in its last checkpoint (trainables/tune_trainable.py).
`build_tables` turns a list of `TrialOutcome`s into the two documented tables
(analysis/results/columns.py; rows by analysis/results/rows.py), keyed by `config_id` so
that a trial retried or resumed any number of times gives exactly one row; `write_results`
writes them atomically, with the schema version in the file metadata, into a local directory
or a URI, plus the gradient maps as `maps/<config_id>.npz` for the analysis' gallery.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow.fs as pafs

from analysis.results import layout, rows, tables
from analysis.results.columns import MEASURES_COLUMNS
from analysis.results.record import TrialRecord
from analysis.results.tables import write_table
from sweep import storage
from trainables.config import TrialConfig

FINAL = ("completed", "diverged")
# Columns beyond the documented ones (analysis/results/columns.py allows extras): the
# flattened trial config, and these, with their value for a trial that never reported.
EXTRA = {"pid": -1, "node": "", "node_id": "", "error": ""}


@dataclass
class TrialOutcome:
    """What the driver knows of one trial at the end of a run."""

    config: dict  # TrialConfig dict
    record: dict | None = None  # record.json of its last checkpoint
    error: str | None = None  # one line, when the trial failed for good
    maps: tuple[pafs.FileSystem, str] | None = None  # its maps.npz, if measured
    early_stopped: bool = False  # stopped by the ASHA scheduler before its last epoch
    search: str = ""  # the Optuna study that suggested it (sweep/tune/search.py), "" if none
    search_trial: int = -1  # its Optuna trial number in that study, -1 if none

    @property
    def status(self) -> str:
        """completed / diverged / stopped / error (analysis/results/columns.py), or running for an
        unfinished (interrupted) trial. A stopped trial is kept but not averaged: it has no
        final measurement; `epochs_trained` says how far it got."""
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
        record = TrialRecord.from_dict(o.record) if o.record else None
        trial_rows.append(
            rows.trial_row(
                cid, record, experiment=experiment, versions=versions,
                config=TrialConfig.from_dict(o.config).to_dict(), status=o.status,
                error=o.error or "", search=o.search, search_trial=o.search_trial,
            )
        )  # fmt: skip
        measure_rows += rows.measure_rows(cid, record) if record else []
    trials = pd.DataFrame(trial_rows) if trial_rows else tables.empty("trials").assign(**EXTRA)
    names = [c.name for c in MEASURES_COLUMNS]
    measures = (
        pd.DataFrame(measure_rows, columns=names) if measure_rows else tables.empty("measures")
    )
    return tables.coerce(trials, "trials"), tables.coerce(measures, "measures")


def write_results(
    outcomes: list[TrialOutcome], exp_dir: str, experiment: str, versions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write trials.parquet, measures.parquet and maps/<config_id>.npz into `exp_dir`."""
    trials, measures = build_tables(outcomes, experiment, versions)
    fs, inner = storage.filesystem(exp_dir)
    fs.create_dir(inner, recursive=True)
    write_table(trials, layout.trials_file(exp_dir), "trials")
    write_table(measures, layout.measures_file(exp_dir), "measures")
    for cid, o in final_outcomes(outcomes).items():
        if o.maps is not None:
            fs, path = o.maps
            storage.copy_file(fs, path, layout.maps_file(exp_dir, cid))
    return trials, measures
