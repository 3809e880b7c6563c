"""Split the trials table into method groups and strength levels; attach standard errors.

A *method group* is one (dataset, model, method) with method != "none". Its *baseline* is
the unregularized trials of the same dataset and model (method "none", plus the method's own
strength-0 rows if any): the reference "at strength 0" for every method. A *level* is one
strength; its trials differ by seed. Levels are ordered by strength, and the baseline, when
present, is level 0 at log10 strength = -inf.

Only completed trials with finite values in every requested column enter a level; diverged
and errored trials stay in the tables and are counted, not averaged (a diverged run has no
final model to measure).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.results.tangents import HEADLINE

BASELINE_METHOD = "none"
GROUP_KEYS = ("dataset", "model", "method")

# Columns of trials.parquet whose per-trial evaluation-point error comes from measures.parquet.
_SE_SOURCES = {
    "test_accuracy": "test_accuracy",
    "on_manifold_sensitivity": "on_manifold_sensitivity",
    "off_manifold_sensitivity": "off_manifold_sensitivity",
    "alignment": "alignment",
}


@dataclass
class Levels:
    """Trials of one method group by strength.

    strengths: (L,) strength of each level (0.0 for the baseline).
    x: (L,) log10 strength; -inf for the baseline.
    values[col][l]: (n_l,) per-trial values of `col` at level l.
    se[col][l]: (n_l,) standard error of each trial's value over evaluation points (0 if unknown).
    config_ids[l]: (n_l,) config_id of each trial.
    """

    strengths: np.ndarray
    x: np.ndarray
    values: dict[str, list[np.ndarray]]
    se: dict[str, list[np.ndarray]]
    config_ids: list[np.ndarray]

    @property
    def has_baseline(self) -> bool:
        return bool(len(self.x)) and bool(np.isneginf(self.x[0]))

    @property
    def n_positive(self) -> int:
        """Number of levels at strength > 0."""
        return int(np.isfinite(self.x).sum())

    @property
    def counts(self) -> np.ndarray:
        """(L,) number of trials per level."""
        return np.array([len(ids) for ids in self.config_ids], dtype=float)

    def means(self, col: str) -> np.ndarray:
        """(L,) mean of `col` over the trials of each level."""
        return np.array([v.mean() for v in self.values[col]], dtype=float)


def split_groups(trials: pd.DataFrame) -> Iterator[tuple[tuple[str, str, str], pd.DataFrame]]:
    """Yield ((dataset, model, method), trials of the group incl. its baseline rows)."""
    methods = trials[trials["method"] != BASELINE_METHOD]
    for key, rows in methods.groupby(list(GROUP_KEYS), sort=True):
        dataset, model, _ = key
        base = trials[
            (trials["method"] == BASELINE_METHOD)
            & (trials["dataset"] == dataset)
            & (trials["model"] == model)
        ]
        yield tuple(str(k) for k in key), pd.concat([base, rows])


def is_baseline(rows: pd.DataFrame) -> pd.Series:
    """Rows that count as the unregularized reference: method none or strength <= 0."""
    return (rows["method"] == BASELINE_METHOD) | (rows["strength"] <= 0)


def log_strength(rows: pd.DataFrame) -> np.ndarray:
    """(N,) log10 strength with -inf for baseline rows."""
    s = rows["strength"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log10(np.where(s > 0, s, np.nan))
    return np.where(is_baseline(rows).to_numpy(), -np.inf, x)


def usable(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Completed trials with finite values in all `columns` (and a finite strength)."""
    ok = (rows["status"] == "completed") & np.isfinite(rows["strength"].to_numpy(dtype=float))
    for col in columns:
        ok &= np.isfinite(rows[col].to_numpy(dtype=float))
    return rows[ok]


def build_levels(rows: pd.DataFrame, columns: Sequence[str], se: pd.DataFrame | None) -> Levels:
    """Group usable `rows` by strength. `se` is `standard_errors()` output or None (no noise)."""
    rows = usable(rows, columns).copy()
    rows["_x"] = log_strength(rows)
    # Round so that 0.1 and 0.1000000000001 from two grids form one level.
    rows["_key"] = np.round(rows["_x"], 9)
    strengths, xs, ids = [], [], []
    values: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    errors: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for _, level in rows.groupby("_key", sort=True):
        xs.append(float(level["_x"].iloc[0]))
        strengths.append(0.0 if np.isneginf(xs[-1]) else float(level["strength"].median()))
        ids.append(level["config_id"].to_numpy())
        for col in columns:
            values[col].append(level[col].to_numpy(dtype=float))
            errors[col].append(_lookup_se(se, level["config_id"], col))
    return Levels(np.array(strengths), np.array(xs, dtype=float), values, errors, ids)


def standard_errors(trials: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """Per-trial standard error over evaluation points, `std / sqrt(n)`, from measures.

    Index: config_id. Columns: test_accuracy, on_manifold_sensitivity,
    off_manifold_sensitivity, alignment (same units as in trials). Uses each trial's last
    epoch; sensitivities at the trial's `reference_eps`; alignment with the trial's
    `alignment_gradient`, `alignment_metric` and `alignment_reference`. 0 where measures has no
    matching row or no finite std/n: that trial then enters the
    bootstrap without evaluation-point noise.
    """
    out = pd.DataFrame(index=pd.Index(trials["config_id"].unique(), name="config_id"))
    for col in _SE_SOURCES:
        out[col] = 0.0
    if measures is None or measures.empty or trials.empty:
        return out
    m = measures[measures["measure"].isin(list(_SE_SOURCES.values()))]
    if "tangent" in m:  # the headline estimate's rows (others: analysis/tangent_report.py)
        m = m[m["tangent"].isin(["", HEADLINE])]
    last = m.groupby(["config_id", "measure"])["epoch"].transform("max")
    m = m[m["epoch"] == last].copy()
    n = m["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m["_se"] = m["std"].to_numpy(dtype=float) / np.sqrt(n)
    m = m[np.isfinite(m["_se"]) & (n > 0)]
    keys = ["config_id", "reference_eps", "alignment_gradient", "alignment_metric"]
    t = trials[keys].drop_duplicates("config_id").copy()
    # Tables from before `alignment_reference` existed headlined the conditional "score".
    ref = trials.drop_duplicates("config_id").get("alignment_reference")
    t["_reference"] = "score" if ref is None else ref.replace("", "score").to_numpy()
    for col, name in _SE_SOURCES.items():
        rows = m[m["measure"] == name].merge(t, on="config_id", how="inner")
        if name.endswith("manifold_sensitivity"):
            rows = rows[np.isclose(rows["eps"], rows["reference_eps"], rtol=1e-6, atol=1e-12)]
        elif name == "alignment":
            # trials.alignment is the one of these rows with the trial's headline pair.
            rows = rows[
                (rows["gradient"] == rows["alignment_gradient"])
                & (rows["metric"] == rows["alignment_metric"])
                & (rows["reference"] == rows["_reference"])
            ]
        se = rows.groupby("config_id")["_se"].first()
        out.loc[se.index.intersection(out.index), col] = se
    return out


def _lookup_se(se: pd.DataFrame | None, ids: pd.Series, col: str) -> np.ndarray:
    if se is None or col not in se.columns:
        return np.zeros(len(ids))
    return se[col].reindex(ids.to_numpy()).fillna(0.0).to_numpy(dtype=float)
