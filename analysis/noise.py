"""Signal vs distractor robustness (paper section 4.3) relative to the unregularized model.

`relative_noise_robustness` = signal_sensitivity / distractor_sensitivity of one trial
(higher = the model reacts to the label-carrying part more than to the distractor, as the
Bayes-optimal classifier does). Per method and strength we report its mean over seeds and
the ratio to the baseline's mean (> 1: the method shifted sensitivity towards the signal).
Only datasets with signal/distractor masks have these values; others get a single row
saying so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.groups import build_levels, is_baseline, split_groups
from analysis.report_tables import NOISE_COLUMNS
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.uncertainty import estimate_outside, percentile_ci, resample_means

RNR = "relative_noise_robustness"
COLUMNS = (RNR, "signal_sensitivity", "distractor_sensitivity")


def noise_robustness(
    trials: pd.DataFrame, *, rng: np.random.Generator, n_boot: int = 1000, ci: float = 0.95
) -> pd.DataFrame:
    """One row per (dataset, model, method, strength); strength 0 is the baseline.

    Columns: dataset, model, method, strength_symbol, strength, n_trials, signal_sensitivity,
    distractor_sensitivity, relative_noise_robustness (means over seeds), ratio_to_baseline
    with ci_low/ci_high (bootstrap over seeds within each strength and within the baseline),
    reason (why a value is missing).
    """
    rows = []
    for (dataset, model, method), group in split_groups(trials):
        head = {"dataset": dataset, "model": model, "method": method,
                "strength_symbol": STRENGTH_SYMBOL.get(method, "strength")}  # fmt: skip
        levels = build_levels(group, COLUMNS, None)
        if not len(levels.x):
            has_values = np.isfinite(group[RNR].to_numpy(dtype=float)).any()
            reason = (
                "no completed trial with finite signal and distractor sensitivity"
                if has_values
                else f"no signal/distractor masks for dataset {dataset} (values are NaN)"
            )
            rows.append(head | {"strength": np.nan, "n_trials": 0, "reason": reason})
            continue
        means = {c: levels.means(c) for c in COLUMNS}
        ratio = np.full(len(levels.x), np.nan)
        low, high = ratio.copy(), ratio.copy()
        reason = ""
        if not levels.has_baseline and is_baseline(group).any():
            reason = "the unregularized baseline has no completed trial with finite values"
        elif not levels.has_baseline:
            reason = "no unregularized baseline (method none) to compare with"
        elif means[RNR][0] <= 0:
            reason = "baseline relative noise robustness is 0"
        else:
            ratio = means[RNR] / means[RNR][0]
            boot = resample_means(levels, (RNR,), rng, n_boot)[RNR]
            with np.errstate(divide="ignore", invalid="ignore"):
                boot_ratio = boot / boot[:, :1]
            for l in range(len(ratio)):
                low[l], high[l], _ = percentile_ci(boot_ratio[:, l], ci)
        for l, strength in enumerate(levels.strengths):
            rows.append(
                head
                | {"strength": float(strength), "n_trials": len(levels.config_ids[l])}
                | {c: float(means[c][l]) for c in COLUMNS}
                | {"ratio_to_baseline": ratio[l], "ci_low": low[l], "ci_high": high[l]}
                | {"estimate_outside_ci": estimate_outside(ratio[l], low[l], high[l])}
                | {"reason": reason}
            )
    return pd.DataFrame(rows, columns=list(NOISE_COLUMNS))
