"""Plain-language sentences for the report, built from the analysis tables (no computation
beyond formatting). Strengths print with 3 significant digits; a CI bound of 0 or inf means
the resamples reach below or above the swept strengths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.regimes import B1, B2

CRITERION_NAMES = {"paper": "paper criterion", "scale_free": "scale-free criterion"}
BOUNDARY_NAMES = {B1: "weak -> Bayes-aligned", B2: "Bayes-aligned -> excessive"}


def g(value: float) -> str:
    """A number with 3 significant digits."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return "inf" if np.isposinf(value) else f"{value:.3g}"


def boundary_sentence(row: pd.Series) -> str:
    """One boundary, e.g. "weak -> Bayes-aligned at lambda=0.52 [0.40, 0.62]"."""
    name = BOUNDARY_NAMES.get(row["boundary"], row["boundary"])
    if row["status"] != "ok":
        return f"{name}: not determined ({row['reason']})"
    text = (
        f"{name} at {row['strength_symbol']}={g(row['estimate'])} "
        f"[{g(row['ci_low'])}, {g(row['ci_high'])}]"
    )
    if row["boundary"] == B2 and np.isfinite(row["accuracy_drop"]):
        text += (
            f", accuracy {g(row['accuracy_plateau'])} before vs {g(row['accuracy_beyond'])} "
            f"beyond it (drop {g(row['accuracy_drop'])})"
        )
    if row["note"]:
        text += f" ({row['note']})"
    return text


def regimes_sentence(bounds: pd.DataFrame, criterion: str) -> str:
    """Both boundaries of one method group under one criterion."""
    rows = bounds[bounds["criterion"] == criterion]
    if rows.empty:
        return ""
    first = rows.iloc[0]
    head = f"{first['method']} on {first['dataset']}/{first['model']}, "
    head += CRITERION_NAMES.get(criterion, criterion)
    return head + ": " + "; ".join(boundary_sentence(r) for _, r in rows.iterrows()) + "."


QUANTITY_NAMES = {
    "relative_off_manifold_robustness": "off/on sensitivity",
    "rho2": "rho2 (the gradient's off-manifold share)",
}


def correlation_sentence(row: pd.Series) -> str:
    scope = "all methods" if row["scope"] == "all" else f"{row['scope']} and baseline"
    quantity = row.get("quantity", "relative_off_manifold_robustness")
    head = (
        f"Spearman correlation of {QUANTITY_NAMES.get(quantity, quantity)} with alignment on "
        f"{row['dataset']}/{row['model']} ({scope}, {row['n']} trials; within each seed, "
        f"{row.get('interval') or 'no interval'})"
    )
    if not np.isfinite(row["spearman_rho"]):
        return f"{head}: not computed ({row['reason']})."
    sign = (
        "negative, as the paper predicts: more off-manifold robustness goes with "
        "more aligned gradients"
        if row["ci_high"] < 0
        else "positive, against the paper's prediction"
        if row["ci_low"] > 0
        else "its interval includes 0"
    )
    return (
        f"{head}: rho = {row['spearman_rho']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        f" ({sign})."
    )


def noise_sentence(rows: pd.DataFrame) -> str:
    """The strength with the largest change of relative noise robustness vs the baseline."""
    method = rows["method"].iloc[0]
    pos = rows[(rows["strength"] > 0) & np.isfinite(rows["ratio_to_baseline"])]
    if pos.empty:
        reasons = sorted(set(rows["reason"]) - {""})
        why = "; ".join(reasons)
        return f"{method}: relative noise robustness vs baseline not computed ({why})."
    best = pos.loc[(np.log(pos["ratio_to_baseline"].clip(lower=1e-12))).abs().idxmax()]
    word = "rises" if best["ratio_to_baseline"] > 1 else "falls"
    return (
        f"{method}: relative noise robustness (signal/distractor) {word} to "
        f"{best['ratio_to_baseline']:.2f}x the unregularized model's "
        f"[{best['ci_low']:.2f}, {best['ci_high']:.2f}] at "
        f"{best['strength_symbol']}={g(best['strength'])}."
    )


# How the report words each status of a trial that did not complete.
VERBS = {"diverged": "diverged", "stopped": "stopped early", "error": "failed"}


def status_sentence(rows: pd.DataFrame, method: str, symbol: str) -> str:
    """Trials that did not complete, by strength, e.g. "2 of 3 trials diverged at lambda=100"."""
    own = rows[rows["method"] == method]
    parts = []
    for strength, cell in own.groupby("strength"):
        for status, verb in VERBS.items():
            k = int((cell["status"] == status).sum())
            if k:
                parts.append(f"{k} of {len(cell)} trials {verb} at {symbol}={g(strength)}")
    return "; ".join(parts)
