"""Peak perceptual alignment per method, and its rank correlation with relative off-manifold
robustness (paper section 5: alignment peaks in the Bayes-aligned regime).

Alignment is `trials.alignment`, the dataset's calibrated yardstick (docs/method.md,
"Calibration": 1 - (ST-)LPIPS or a pixel cosine), higher = more aligned. Within a
group only one (alignment_metric, alignment_gradient) pair is compared: the most frequent one
(values from different metrics are not on one scale); the choice is named in every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.groups import BASELINE_METHOD, build_levels, split_groups, standard_errors, usable
from analysis.regimes import B1, B2, regime_at
from analysis.report_tables import CORRELATION_COLUMNS, PEAK_COLUMNS
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.uncertainty import (
    MIN_TRIALS_PER_SEED,
    estimate_outside,
    per_seed_text,
    percentile_ci,
    resample_means,
    seed_spearman,
)

ALIGN = "alignment"
ROBUST = "relative_off_manifold_robustness"
RHO2 = "rho2"


def dominant_metric(rows: pd.DataFrame) -> tuple[pd.DataFrame, str, str, int]:
    """Rows of the most frequent (metric, gradient) pair among usable alignment rows:
    (rows, metric, gradient, number of usable rows dropped for using another pair)."""
    ok = usable(rows, (ALIGN,))
    if ok.empty:
        return ok, "", "", 0
    pairs = ok.groupby(["alignment_metric", "alignment_gradient"]).size()
    metric, gradient = pairs.sort_values(ascending=False, kind="stable").index[0]
    keep = (ok["alignment_metric"] == metric) & (ok["alignment_gradient"] == gradient)
    return ok[keep], str(metric), str(gradient), int((~keep).sum())


def peak_alignment(
    trials: pd.DataFrame,
    measures: pd.DataFrame | None = None,
    boundaries: pd.DataFrame | None = None,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The strength with the highest mean alignment over seeds, per method group.

    The baseline (strength 0) is a candidate. CI: percentile interval of the arg-max strength
    over bootstrap resamples (seeds within strength + evaluation-point noise); ci_low = 0
    means some resamples peak at the baseline. With `boundaries` from `fit_regimes`, the peak
    is checked against the Bayes-aligned regime of each criterion (NA when that regime is
    undetermined there).
    """
    se = standard_errors(trials, measures) if measures is not None else None
    rows = []
    for (dataset, model, method), group in split_groups(trials):
        sym = STRENGTH_SYMBOL.get(method, "strength")
        kept, metric, gradient, dropped = dominant_metric(group)
        levels = build_levels(kept, (ALIGN,), se)
        row = {
            "dataset": dataset, "model": model, "method": method, "strength_symbol": sym,
            "alignment_metric": metric, "alignment_gradient": gradient,
            "n_strengths": levels.n_positive, "n_trials": int(levels.counts.sum()),
            "peak_strength": np.nan, "ci_low": np.nan, "ci_high": np.nan,
            "log10_peak": np.nan, "log10_ci_low": np.nan, "log10_ci_high": np.nan,
            "estimate_outside_ci": False,
            "peak_alignment": np.nan, "baseline_alignment": np.nan,
            "regime_paper": "unknown", "regime_scale_free": "unknown",
            "in_bayes_aligned_paper": pd.NA, "in_bayes_aligned_scale_free": pd.NA,
            "finding": "", "reason": "",
            "note": f"{dropped} trial(s) with another alignment metric left out" if dropped else "",
        }  # fmt: skip
        rows.append(row)
        if levels.n_positive == 0:
            row["reason"] = "no completed trial at strength > 0 with a finite alignment"
            continue
        if len(levels.x) < 2:
            row["reason"] = "a single strength level and no baseline: no peak to locate"
            continue
        means = levels.means(ALIGN)
        j = int(np.argmax(means))
        boot = resample_means(levels, (ALIGN,), rng, n_boot)[ALIGN]
        low, high, _ = percentile_ci(levels.x[np.argmax(boot, axis=1)], ci)
        row.update(
            peak_strength=float(levels.strengths[j]),
            log10_peak=float(levels.x[j]),
            log10_ci_low=low,
            log10_ci_high=high,
            estimate_outside_ci=estimate_outside(levels.x[j], low, high),
            ci_low=float(10.0**low),
            ci_high=float(10.0**high),
            peak_alignment=float(means[j]),
            baseline_alignment=float(means[0]) if levels.has_baseline else np.nan,
        )
        if j == len(means) - 1:
            row["note"] = _join(row["note"], "peak at the largest swept strength (not bracketed)")
        elif j == 0 and not levels.has_baseline:
            row["note"] = _join(row["note"], "peak at the smallest swept strength (not bracketed)")
        if boundaries is not None:
            _check_regimes(row, boundaries)
        row["finding"] = _finding(row)
    out = pd.DataFrame(rows, columns=PEAK_COLUMNS)
    for criterion in ("paper", "scale_free"):
        out[f"in_bayes_aligned_{criterion}"] = out[f"in_bayes_aligned_{criterion}"].astype(
            "boolean"
        )
    return out


def _check_regimes(row: dict, boundaries: pd.DataFrame) -> None:
    for criterion in ("paper", "scale_free"):
        b = boundaries[
            (boundaries["dataset"] == row["dataset"])
            & (boundaries["model"] == row["model"])
            & (boundaries["method"] == row["method"])
            & (boundaries["criterion"] == criterion)
        ].set_index("boundary")
        if B1 not in b.index or B2 not in b.index:
            continue
        regime = regime_at(
            row["log10_peak"], b.at[B1, "bracket_low"], b.at[B1, "bracket_high"],
            b.at[B2, "bracket_low"], b.at[B2, "bracket_high"],
        )[0]  # fmt: skip
        row[f"regime_{criterion}"] = str(regime)
        if regime != "unknown":
            row[f"in_bayes_aligned_{criterion}"] = bool(regime == "bayes_aligned")


def _finding(row: dict) -> str:
    sym = row["strength_symbol"]
    where = (
        "strength 0 (the unregularized baseline)"
        if row["peak_strength"] == 0
        else (f"{sym}={row['peak_strength']:.3g}")
    )
    text = (
        f"peak alignment for {row['method']} at {where} "
        f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}] (mean {row['peak_alignment']:.3f}"
    )
    if np.isfinite(row["baseline_alignment"]):
        text += f" vs {row['baseline_alignment']:.3f} unregularized"
    text += ")"
    checks = []
    for criterion, label in (("paper", "paper criterion"), ("scale_free", "scale-free criterion")):
        regime = row[f"regime_{criterion}"]
        if regime == "unknown":
            checks.append(f"regime undetermined ({label})")
        elif regime == "bayes_aligned":
            checks.append(f"inside the Bayes-aligned regime ({label})")
        else:
            checks.append(f"in the {regime} regime, not Bayes-aligned ({label})")
    return text + ": " + "; ".join(checks)


def alignment_correlation(
    trials: pd.DataFrame,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    ci: float = 0.95,
    quantity: str = ROBUST,
) -> pd.DataFrame:
    """Spearman correlation between `quantity` and alignment, per (dataset, model) over all
    methods ("all", baseline included) and per method (its trials plus the baseline).
    `quantity`: relative off-manifold robustness (off/on at the headline step) or RHO2, the
    gradient's off-manifold share; lower = more robust off-manifold for both.

    The paper predicts a negative rho (more off-manifold robustness, i.e. a smaller value,
    goes with higher alignment); with RHO2 this is its central claim in one number.
    Computed within each seed and summarized across seeds (`analysis.uncertainty.seed_spearman`,
    the same function RESULTS.md uses): spearman_rho is the mean of the per-seed values, the
    interval a t-interval across seeds (one seed: a paired bootstrap over its trials).
    """
    if quantity not in trials:  # tables from before the quantity was measured
        trials = trials.assign(**{quantity: np.nan})
    rows = []
    for (dataset, model), data in trials.groupby(["dataset", "model"], sort=True):
        scopes = [("all", data)] + [
            (m, data[data["method"].isin([m, BASELINE_METHOD])])
            for m in sorted(set(data["method"]) - {BASELINE_METHOD})
        ]
        for scope, rows_ in scopes:
            kept, metric, _, _ = dominant_metric(usable(rows_, (quantity,)))
            rows.append(
                {"dataset": dataset, "model": model, "scope": scope, "quantity": quantity,
                 "alignment_metric": metric}
                | _spearman(kept, quantity, rng, n_boot, ci)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def _spearman(kept: pd.DataFrame, quantity: str, rng, n_boot: int, ci: float) -> dict:
    out = {"n": len(kept), "n_seeds": 0, "spearman_rho": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "estimate_outside_ci": False, "p_value": np.nan,
           "interval": "", "per_seed": "", "reason": ""}  # fmt: skip
    if len(kept) < MIN_TRIALS_PER_SEED:
        out["reason"] = f"{len(kept)} usable trial(s); need at least {MIN_TRIALS_PER_SEED}"
        return out
    if np.ptp(kept[quantity].to_numpy(float)) == 0 or np.ptp(kept[ALIGN].to_numpy(float)) == 0:
        out["reason"] = "one of the two quantities is constant across trials"
        return out
    est, per_seed = seed_spearman(kept, quantity, ALIGN, rng=rng, n_boot=n_boot, ci=ci)
    if not np.isfinite(est.estimate):
        out["reason"] = (f"no seed has {MIN_TRIALS_PER_SEED} trials with both quantities "
                         "varying")  # fmt: skip
        return out
    out.update(n_seeds=len(per_seed), spearman_rho=est.estimate, ci_low=est.low,
               ci_high=est.high, p_value=est.p_value, interval=est.method,
               estimate_outside_ci=estimate_outside(est.estimate, est.low, est.high),
               per_seed=per_seed_text(per_seed))  # fmt: skip
    return out


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b
