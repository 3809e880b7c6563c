"""How much the figures that rest on tangent spaces move between estimates (docs/method.md,
"Tangent estimators"): the estimates' agreement per dataset, rho2 per estimate with its spread
per method and strength, and the estimator-free split of rho2 on digits. Read from the measures
rows with a `tangent` (trainables/measure/tangent_measures.py); simple means over trials (the
uncertainty engine is analysis/study's)."""

from __future__ import annotations

import pandas as pd

from analysis.results.tangents import ESTIMATORS, EXACT, HEADLINE

AGREEMENT = {"tangent_overlap": "overlap", "tangent_mean_angle": "mean angle",
             "tangent_median_angle": "median angle", "tangent_largest_angle": "largest angle"}
BUILD = "tangent_build_time"  # seconds per estimate (reference '')
OUTSIDE = "tangent_outside_span_share"  # digits: an estimate's dimensions where no tangent is
SPLIT = {"gradient_distractor_share": "distractor", "gradient_outside_span_share": "outside span",
         "gradient_in_span_share": "within span"}  # fmt: skip


def _last(measures: pd.DataFrame, names) -> pd.DataFrame:
    m = measures[measures["measure"].isin(list(names))]
    return m[m["epoch"] == m.groupby("config_id")["epoch"].transform("max")]


def agreement_table(trials: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and estimate: its agreement with the exact tangents (oracle sets) or with
    the headline estimate (elsewhere), overlap first; one trial's rows (all share them)."""
    if "tangent" not in measures:
        return pd.DataFrame()
    m = _last(measures, AGREEMENT).merge(trials[["config_id", "dataset"]], on="config_id")
    out = []
    for dataset, rows in m.groupby("dataset", sort=True):
        rows = rows[rows["config_id"] == rows["config_id"].iloc[0]]
        vs = EXACT if (rows["reference"] == EXACT).any() else HEADLINE
        pairs = rows[(rows["reference"] == vs) | ((rows["tangent"] == vs) & (vs == HEADLINE))]
        for _, r in pairs.iterrows():
            other = r["tangent"] if r["reference"] == vs else r["reference"]
            out.append({"dataset": dataset, "estimate": other, "against": vs,
                        AGREEMENT[r["measure"]]: r["value"]})  # fmt: skip
    if not out:
        return pd.DataFrame()
    df = pd.DataFrame(out).groupby(["dataset", "estimate", "against"], sort=False).first()
    figures = [c for c in AGREEMENT.values() if c in df.columns]
    df = df.reset_index()[["dataset", "estimate", "against", *figures]]
    times = _last(measures, [BUILD]).merge(trials[["config_id", "dataset"]], on="config_id")
    times = times.groupby(["dataset", "tangent"])["value"].first().rename("build s")
    leak = _last(measures, [OUTSIDE]).merge(trials[["config_id", "dataset"]], on="config_id")
    if leak.empty:
        return df.join(times, on=["dataset", "estimate"])
    leak = leak.groupby(["dataset", "tangent"])["value"].first().rename("outside span")
    head = leak.reset_index().rename(columns={"tangent": "estimate"})
    head = head[head["estimate"] == HEADLINE].assign(against="-")[["dataset", "estimate",
                                                                   "against"]]  # fmt: skip
    df = pd.concat([df, head], ignore_index=True)  # the headline's own row
    return df.join(times, on=["dataset", "estimate"]).join(leak, on=["dataset", "estimate"])


def rho2_by_estimate(trials: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """Mean rho2 (headline gradient, last epoch) over a group's trials under each estimate,
    per dataset, method and strength, with the spread (max - min across the estimates) and,
    on digits, the estimator-free floor and split."""
    if "tangent" not in measures:
        return pd.DataFrame()
    keys = ["dataset", "method", "strength"]
    m = _last(measures, ["rho2"])
    m = m[m["tangent"] != ""].merge(trials[["config_id", *keys]], on="config_id")
    # the headline gradient: the one every estimate was measured with
    counts = m.groupby(["config_id", "gradient"])["tangent"].transform("nunique")
    m = m[counts == counts.groupby(m["config_id"]).transform("max")]
    if m.empty:
        return pd.DataFrame()
    table = m.pivot_table(index=keys, columns="tangent", values="value", aggfunc="mean")
    names = [n for n in ESTIMATORS if n in table.columns]
    table = table[names]
    table["spread"] = table.max(axis=1) - table.min(axis=1)
    split = _last(measures, SPLIT).merge(trials[["config_id", *keys]], on="config_id")
    if not split.empty:
        shares = split.pivot_table(index=keys, columns="measure", values="value", aggfunc="mean")
        shares = shares.rename(columns=SPLIT)[[c for c in SPLIT.values() if c in shares.rename(
            columns=SPLIT).columns]]  # fmt: skip
        table = table.join(shares)
        table["floor"] = table["distractor"] + table["outside span"]
        # An estimate whose rho2 is below the exact floor provably counts directions as
        # tangent where no tangent exists (on the distractor half or outside the span).
        below = table[names].lt(table["floor"], axis=0)
        table["below floor"] = below.apply(lambda r: ", ".join(r.index[r]), axis=1)
    table["trials"] = m[m["tangent"] == names[0]].groupby(keys)["config_id"].nunique()
    return table.reset_index()


def tangent_section(doc, trials: pd.DataFrame, measures: pd.DataFrame) -> None:
    agree = agreement_table(trials, measures)
    if agree.empty:
        return
    doc.heading("Tangent estimates")
    doc.para(
        "Every estimate of the tangent spaces the artifacts keep, against the exact ones "
        "(oracle sets) or the headline autoencoder's (elsewhere): the projection overlap "
        "tr(P1 P2) / k (1 = the same spaces, k / d = unrelated) and the principal angles in "
        "degrees (mean, median, largest: the largest saturates). The headline is "
        f"'{HEADLINE}'. 'outside span' (digits-distractor): the share of an estimate's "
        "dimensions where no tangent exists (the distractor half, or outside the digit half's "
        "upsampling span), an estimator-free check: the true tangent spaces read 0."
    )
    doc.table(agree)
    rho = rho2_by_estimate(trials, measures)
    if rho.empty:
        return
    doc.para(
        "rho2 of the headline gradient under each estimate (mean over a group's trials, last "
        "epoch) and the spread across estimates. On digits-distractor, 'distractor' and "
        "'outside span' are the gradient's exact shares on the distractor half and outside "
        "the digit half's upsampling span; their sum, 'floor', is part of rho2 under every "
        "estimate, so only rho2 - floor depends on the estimate; 'below floor' names the "
        "estimates whose rho2 is lower than that, which are provably wrong there (they count "
        "directions as tangent where no tangent exists)."
    )
    doc.table(rho)
