"""Do the regime boundaries move with the step size? (docs/method.md, "Sensitivity")

The regimes are fitted at the headline step size (`trials.reference_eps`, the paper's 2.64 on
CIFAR-10, scaled by sqrt(d / 3072)). measures.parquet holds the on/off-manifold sensitivities at
every step size a trial measured (the reference's four); softmax L1 change saturates at 2, so
where off and on cross can depend on eps. `boundaries_by_eps` refits the boundaries with the
sensitivities at each measured step size, everything else unchanged, and `eps_table` puts
them side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.regimes import OFF, ON, Criteria, fit_regimes
from analysis.report_tables import EPS_COLUMNS


def _at_eps(trials: pd.DataFrame, measures: pd.DataFrame, rank: int) -> pd.DataFrame:
    """Trials with on/off sensitivity (and reference_eps) replaced by their values at the
    `rank`-th smallest step size each trial measured, from its last measured epoch."""
    m = measures[measures["measure"].isin([ON, OFF])]
    m = m[m["epoch"] == m.groupby("config_id")["epoch"].transform("max")]
    m = m.assign(_rank=m.groupby(["config_id", "measure"])["eps"].rank(method="dense") - 1)
    m = m[m["_rank"] == rank]
    wide = m.pivot_table(index="config_id", columns="measure", values="value", aggfunc="first")
    eps = m.groupby("config_id")["eps"].first()
    out = trials.copy()
    for col in (ON, OFF):
        values = wide[col] if col in wide else pd.Series(dtype=float)
        out[col] = out["config_id"].map(values).astype(float)
    out["reference_eps"] = out["config_id"].map(eps).astype(float)
    return out


def boundaries_by_eps(
    trials: pd.DataFrame,
    measures: pd.DataFrame,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    criteria: Criteria | None = None,
) -> pd.DataFrame:
    """One row per method group, criterion, boundary and step-size rank; columns EPS_COLUMNS.

    `eps` is the median over the group's trials of the step size at that rank (the same for
    all trials of a dataset unless configs differ); `headline` marks the rank whose step size is
    the trials' `reference_eps`. Estimates and intervals as in `regimes.fit_regimes`."""
    m = measures[measures["measure"] == ON]
    n_ranks = int(m.groupby("config_id")["eps"].nunique().max()) if len(m) else 0
    parts = []
    for rank in range(n_ranks):
        at = _at_eps(trials, measures, rank)
        # measures as they are: the bootstrap reads each trial's evaluation-point error at the
        # trial's reference_eps, which _at_eps has set to this step size.
        bounds = fit_regimes(at, measures, rng=rng, n_boot=n_boot, criteria=criteria or Criteria())
        headline = np.isclose(at["reference_eps"], trials["reference_eps"], rtol=1e-6)
        by_ds = at.assign(_head=headline).groupby("dataset")
        eps = by_ds["reference_eps"].median()
        head = by_ds["_head"].mean() > 0.5
        bounds = bounds.assign(
            eps_rank=rank, eps=bounds["dataset"].map(eps), headline=bounds["dataset"].map(head)
        )
        parts.append(bounds[list(EPS_COLUMNS)])
    if not parts:
        return pd.DataFrame(columns=list(EPS_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def eps_table(by_eps: pd.DataFrame) -> pd.DataFrame:
    """Wide table for the report (one dataset at a time: step sizes differ between datasets):
    per method group, criterion and boundary, the estimate at
    each step size ("eps=0.94*" marks the headline) and `moves`: "no" when every located
    estimate at another step size lies inside the headline's interval, "yes" when one lies
    outside, "n/a" when the headline boundary was not located."""
    if by_eps.empty:
        return pd.DataFrame()
    keys = ["dataset", "model", "method", "criterion", "boundary"]
    rows = []
    for key, g in by_eps.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True))
        head = g[g["headline"].astype(bool)]
        for _, r in g.sort_values("eps").iterrows():
            name = f"eps={r['eps']:.3g}" + ("*" if r["headline"] else "")
            row[name] = f"{r['estimate']:.3g}" if r["status"] == "ok" else r["status"]
        if head.empty or head.iloc[0]["status"] != "ok":
            row["moves"] = "n/a"
        else:
            h = head.iloc[0]
            other = g[~g["headline"].astype(bool)]
            outside = (
                (other["status"] != "ok")
                | (other["estimate"] < h["ci_low"])
                | (other["estimate"] > h["ci_high"])
            )
            row["moves"] = "yes" if outside.any() else "no"
        rows.append(row)
    return pd.DataFrame(rows)
