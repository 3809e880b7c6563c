"""The calibration table of a report, and lookups in it (docs/method.md, "Calibration"); the
rule itself is `analysis.results.calibration` (shared with the trial side). pandas only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.results.calibration import (
    BAYES_EST,
    CALIBRATED_AS,
    CALIBRATION,
    COSINE,
    IDEAL,
    LADDER,
    LADDER_SNRS,
    NEGATED,
    NOT_TESTABLE,
    NULLS,
    judge,
    probe_key,
)

__all__ = ["BAYES_EST", "COSINE", "IDEAL", "NOT_TESTABLE", "calibration_table", "is_calibrated"]


def calibration_table(measures: pd.DataFrame, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, metric, reference): every probe's mean value (columns
    `probe_key`s), `calibrated` and `reason`. `measures` rows of measure "calibration" (with a
    `dataset` column, or joined from `trials` on config_id). Every trial of an artifact set
    records the same probes; they are averaged (the random-init null differs per model)."""
    cols = ["dataset", "metric", "reference"]
    rows = measures[measures["measure"] == CALIBRATION] if len(measures) else measures
    if rows is None or rows.empty:
        return pd.DataFrame(columns=[*cols, "calibrated", "reason"])
    if "dataset" not in rows:
        rows = rows.merge(trials[["config_id", "dataset"]], on="config_id", how="inner")
    rows = rows.assign(probe=[probe_key(p, e) for p, e in zip(rows["gradient"], rows["eps"],
                                                               strict=True)])  # fmt: skip
    wide = rows.pivot_table(index=cols, columns="probe", values="value", aggfunc="mean")
    out = []
    for key, r in wide.iterrows():
        values = {k: float(v) for k, v in r.items() if np.isfinite(v)}
        ok, why = judge(values, oracle=IDEAL in values)
        out.append(dict(zip(cols, key, strict=True)) | values | {"calibrated": ok, "reason": why})
    order = [*cols, *(probe_key(LADDER, s) for s in LADDER_SNRS), NEGATED, *NULLS, IDEAL,
             "calibrated", "reason"]  # fmt: skip
    df = pd.DataFrame(out)
    return df.reindex(columns=[c for c in order if c in df.columns])


def is_calibrated(table: pd.DataFrame, dataset: str, metric: str, reference: str) -> bool | None:
    """True/False from the table; None when that yardstick was not calibrated at all (results
    from before calibration existed): the caller says so rather than guessing."""
    if table.empty:
        return None
    reference = CALIBRATED_AS.get(reference, reference)
    hit = table[(table["dataset"] == dataset) & (table["metric"] == metric)
                & (table["reference"] == reference)]  # fmt: skip
    return bool(hit["calibrated"].iloc[0]) if len(hit) else None
