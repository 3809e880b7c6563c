"""The one builder of each table row: `measure_row` (measures.parquet, long format) and, from a
`TrialRecord`, `trial_row` (trials.parquet) and `measure_rows` (its measures plus the learning
curve). `pags sweep` (sweep/export.py) and `pags measure` (sweep/files/tables.py) both build
their tables here, so a trial and a measured file give rows of one shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

from analysis.results.columns import ABSENT, TRIALS_COLUMNS
from analysis.results.record import TrialRecord

# The learning curve's measures (one row per epoch each) and the record field giving their n.
CURVE = {"test_accuracy": "n_test", "train_loss": "n_train"}


def measure_row(
    measure: str,
    epoch: int,
    value: float,
    std: float = math.nan,
    n: int = 0,
    *,
    eps: float = math.nan,
    gradient: str = "",
    reference: str = "",
    metric: str = "",
    tangent: str = "",
) -> dict[str, Any]:
    """One measures.parquet row without its config_id (columns.MEASURES_COLUMNS)."""
    return {
        "epoch": epoch, "measure": measure, "eps": eps, "value": value, "std": std, "n": n,
        "gradient": gradient, "reference": reference, "metric": metric, "tangent": tangent,
    }  # fmt: skip


def measure_rows(config_id: str, record: TrialRecord) -> list[dict[str, Any]]:
    """The record's measurement rows plus one row per epoch and CURVE measure in its history
    (not train_loss for a model not trained here, n_train 0: a measured file)."""
    rows = [{**r, "config_id": config_id} for r in record.measure_rows]
    for h in record.history:
        for measure, n_field in CURVE.items():
            if getattr(record, n_field) > 0 or measure == "test_accuracy":
                row = measure_row(measure, h["epoch"], h[measure], n=getattr(record, n_field))
                rows.append({"config_id": config_id, **row})
    return rows


def trial_row(
    config_id: str,
    record: TrialRecord | None,
    *,
    experiment: str,
    versions: dict[str, str],
    config: dict | None = None,
    status: str | None = None,
    error: str = "",
    search: str = "",
    search_trial: int = -1,
) -> dict[str, Any]:
    """One trials.parquet row: the flattened config, the record's summary, its epochs and
    where it ran. `config`: the normalized TrialConfig dict (default the record's); `status`
    overrides the record's (stopped, error); `versions` fill in what the record lacks."""
    row: dict[str, Any] = {"config_id": config_id, "experiment": experiment}
    checkpoint = record.checkpoint if record is not None else None
    config = config if config is not None else record.config
    row.update({k: json.dumps(list(v)) if isinstance(v, (list, tuple)) else v
                for k, v in config.items()})  # fmt: skip
    for col in TRIALS_COLUMNS:  # measurement columns: absent unless measured
        row.setdefault(col.name, ABSENT[col.dtype])
    v = dict(versions)
    if record is not None:
        row.update(record.summary)
        v.update(record.versions)
    row.update(
        status=status or (record.status if record else "running"),
        epochs_trained=record.epochs_trained if record else 0,
        measured_epoch=record.measured_epoch if record else -1,
        num_classes=record.num_classes if record else 0,
        wall_time_s=record.wall_time_s if record else math.nan,
        pid=record.pid if record else -1,
        node=record.node if record else "",
        node_id=record.node_id if record else "",
        error=error,
        search=search,
        search_trial=search_trial,
        config_json=json.dumps(config, sort_keys=True),
        pags_version=v.get("pags", ""),
        torch_version=v.get("torch", ""),
        ray_version=v.get("ray", ""),
    )
    if checkpoint is not None:
        row.update(_checkpoint_columns(checkpoint, record))
    return row


def _checkpoint_columns(ck: dict[str, Any], record: TrialRecord) -> dict[str, Any]:
    """A measured file's columns: its label as `method`, its architecture as `model`, and no
    configured epochs (-1): `epochs_trained` is the checkpoint's epoch."""
    spec = ck["spec"]
    return dict(
        model=ck["arch"],
        method=spec["label"],
        strength=spec["strength"],
        epochs=-1,
        config_json=json.dumps(
            {**spec, "measure": record.config, "checkpoint_sha256": ck["checkpoint_sha256"]},
            sort_keys=True,
        ),
        checkpoint_name=spec["name"],
        checkpoint_path=spec["path"],
        checkpoint_format=spec["format"],
        checkpoint_sha256=ck["checkpoint_sha256"],
        weights_sha256=ck["weights_sha256"],
        input_normalization=ck["input_normalization"],
        input_size=ck["input_size"],
    )
