"""trials.parquet and measures.parquet of a `pags measure` directory, from its records.

Each measured checkpoint leaves `records/<config_id>.json` (written atomically when its
measurement finishes; a rerun skips it). The tables are rebuilt from all records with the
sweep's writer (`sweep.export.write_table`: documented schema, schema version, atomic), one
trials row per config_id: `method` is the model's label, `model` its architecture, `epochs`
the epoch it was measured at, plus the `checkpoint_*`, `weights_sha256`, `input_*` columns
(analysis/schema.py). So `analysis.load_results` and `pags analyze` read it as any sweep.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pandas as pd

from analysis import schema
from analysis.schema import MEASURES_FILE, TRIALS_FILE
from sweep import storage
from sweep.export import write_table

RECORDS_DIR = "records"


def record_path(out_dir: str, config_id: str) -> str:
    return os.path.join(out_dir, RECORDS_DIR, f"{config_id}.json")


def read_records(out_dir: str) -> dict[str, dict]:
    """{config_id: record} of every finished measurement in `out_dir`."""
    folder = os.path.join(out_dir, RECORDS_DIR)
    if not os.path.isdir(folder):
        return {}
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                out[name[: -len(".json")]] = json.load(f)
    return out


def trial_row(cid: str, rec: dict, experiment: str, versions: dict[str, str]) -> dict[str, Any]:
    spec, mcfg = rec["spec"], rec["measure_config"]
    row: dict[str, Any] = {c.name: schema.ABSENT[c.dtype] for c in schema.TRIALS_COLUMNS}
    # Settings first, then the summary: it holds what they resolved to (alignment_metric
    # "auto" -> the metric used, e.g. stlpips-alex@x3), as a sweep's rows do.
    row.update({k: json.dumps(v) if isinstance(v, list) else v for k, v in mcfg.items()})
    row.update(rec["summary"])
    row.update(
        config_id=cid,
        experiment=experiment,
        model=rec["arch"],
        method=spec["label"],
        strength=spec["strength"],
        seed=rec["seed"],
        epochs=rec["epoch"],
        status=rec["status"],
        test_accuracy=rec["test_accuracy"],
        wall_time_s=rec["wall_time_s"],
        config_json=json.dumps(
            {**spec, "measure": mcfg, "checkpoint_sha256": rec["checkpoint_sha256"]},
            sort_keys=True,
        ),
        checkpoint_name=spec["name"],
        checkpoint_path=spec["path"],
        checkpoint_format=spec["format"],
        checkpoint_sha256=rec["checkpoint_sha256"],
        weights_sha256=rec["weights_sha256"],
        input_normalization=rec["input_normalization"],
        input_size=rec["input_size"],
        pags_version=versions.get("pags", ""),
        torch_version=rec["versions"].get("torch", versions.get("torch", "")),
        ray_version=versions.get("ray", ""),
    )
    return row


def measure_rows(cid: str, rec: dict) -> list[dict[str, Any]]:
    """The measurer's rows plus test accuracy at the measured epoch (as a trial's last)."""
    rows = [{**r, "config_id": cid} for r in rec["measure_rows"]]
    rows.append(
        {"config_id": cid, "epoch": rec["epoch"], "measure": "test_accuracy", "eps": math.nan,
         "value": rec["test_accuracy"], "std": math.nan, "n": rec["n_test"], "gradient": "",
         "reference": "", "metric": ""}
    )  # fmt: skip
    return rows


def write_tables(
    out_dir: str, experiment: str, versions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild both tables from every record in `out_dir` and write them atomically."""
    records = read_records(out_dir)
    trials = [trial_row(cid, rec, experiment, versions) for cid, rec in records.items()]
    rows = [r for cid, rec in records.items() for r in measure_rows(cid, rec)]
    columns = [c.name for c in schema.MEASURES_COLUMNS]
    t = schema.coerce(pd.DataFrame(trials), "trials") if trials else schema.empty("trials")
    m = pd.DataFrame(rows, columns=columns) if rows else schema.empty("measures")
    m = schema.coerce(m, "measures")
    write_table(t, storage.join(out_dir, TRIALS_FILE), "trials")
    write_table(m, storage.join(out_dir, MEASURES_FILE), "measures")
    return t, m
