"""trials.parquet and measures.parquet of a `pags measure` directory, from its records.

Each measured checkpoint leaves `records/<config_id>.json` (written atomically when its
measurement finishes; a rerun skips it). The tables are rebuilt from all records with the
sweep's row builders and writer (analysis/results/rows.py, tables.py), one trials row per
config_id: `method` is the model's label, `model` its architecture, `epochs_trained` and
`measured_epoch` the epoch it was measured at (`epochs`: -1), plus the `checkpoint_*`,
`weights_sha256`, `input_*` columns (analysis/results/columns.py). So `analysis.load_results`
and `pags analyze` read it as any sweep.
"""

from __future__ import annotations

import json
import os

import pandas as pd

from analysis.results import layout, rows, tables
from analysis.results.columns import MEASURES_COLUMNS
from analysis.results.record import TrialRecord
from analysis.results.tables import write_table


def read_records(out_dir: str) -> dict[str, dict]:
    """{config_id: record} of every finished measurement in `out_dir`."""
    folder = layout.records_dir(out_dir)
    if not os.path.isdir(folder):
        return {}
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                out[name[: -len(".json")]] = json.load(f)
    return out


def write_tables(
    out_dir: str, experiment: str, versions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild both tables from every record in `out_dir` and write them atomically."""
    records = {cid: TrialRecord.from_dict(rec) for cid, rec in read_records(out_dir).items()}
    trials = [
        rows.trial_row(cid, rec, experiment=experiment, versions=versions)
        for cid, rec in records.items()
    ]
    measured = [r for cid, rec in records.items() for r in rows.measure_rows(cid, rec)]
    columns = [c.name for c in MEASURES_COLUMNS]
    t = tables.coerce(pd.DataFrame(trials), "trials") if trials else tables.empty("trials")
    m = pd.DataFrame(measured, columns=columns) if measured else tables.empty("measures")
    m = tables.coerce(m, "measures")
    write_table(t, layout.trials_file(out_dir), "trials")
    write_table(m, layout.measures_file(out_dir), "measures")
    return t, m
