"""The three regimes (docs/method.md "The three regimes", paper section 5) along log10 strength.

For every method group (dataset, model, method; see `analysis.groups`) two boundaries are
located from the means over seeds at each strength, under two criteria:

Paper criterion ("paper")
  weak -> bayes_aligned: the first strength where off-manifold sensitivity falls below
    on-manifold sensitivity (off/on < 1), interpolated linearly in log10 strength between the
    two bracketing strengths on the difference off - on (a difference, not the ratio, stays
    defined when a collapsed model is insensitive in both directions).
  bayes_aligned -> excessive: where on-manifold sensitivity leaves its plateau: the breakpoint
    of a continuous segmented fit (constant plateau, then linear decline in log10 strength),
    see `analysis.crossing.segmented_fit`; only if the fitted decline reaches
    `Criteria.min_decline` of the plateau.

Scale-free criterion ("scale_free"), relative to the unregularized baseline (the paper's
crossing can already hold at strength 0 when the tangent dimension is small, so it cannot
always separate weak from Bayes-aligned):
  weak -> bayes_aligned: the first strength where off-manifold sensitivity has fallen
    `off_drop` (20 %) below the baseline's, interpolated in log10 strength, provided the
    model is not yet excessive there: on-manifold sensitivity has stayed above (1 - `on_drop`)
    = 75 % of the baseline's and accuracy within `accuracy_drop` of the baseline's up to that
    strength (otherwise status "no_window": the method goes from weak straight to excessive;
    so boundary 1 never lies beyond boundary 2).
  bayes_aligned -> excessive: the first strength where test accuracy falls more than
    `accuracy_drop` (0.05, absolute) below the baseline's or on-manifold sensitivity falls
    below (1 - `on_drop`) of the baseline's, whichever comes first (interpolated likewise).

Boundaries are never extrapolated: one the sweep does not bracket is NaN with a reason
("already crossed at ...", "never crossed up to ..."). Each located boundary carries a
bootstrap interval over seeds and evaluation points (`analysis.uncertainty`). Values are in
strength units (lambda, sigma or epsilon); `log10_*` columns hold log10 strength.

Regime of a trial: from its log10 strength and the boundary brackets (see
`analysis.crossing`): excessive at or beyond boundary 2, weak before boundary 1,
bayes_aligned between them, unknown where a boundary is undetermined. Labels describe where a
trial's strength lies, so diverged trials get one too (their `status` says they diverged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis import crossing as cx
from analysis.groups import (
    BASELINE_METHOD,
    Levels,
    build_levels,
    is_baseline,
    log_strength,
    split_groups,
    standard_errors,
    usable,
)
from analysis.report_tables import BOUNDARY_COLUMNS, LABEL_COLUMNS
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.uncertainty import estimate_outside, percentile_ci, resample_means

ON, OFF, ACC = "on_manifold_sensitivity", "off_manifold_sensitivity", "test_accuracy"
FIT_COLUMNS = (ON, OFF, ACC)
B1, B2 = "weak_to_bayes_aligned", "bayes_aligned_to_excessive"
CRITERIA = ("paper", "scale_free")
REGIMES = ("weak", "bayes_aligned", "excessive", "unknown")


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the boundary definitions (fractions; accuracy_drop in accuracy units)."""

    off_drop: float = 0.2
    on_drop: float = 0.25
    accuracy_drop: float = 0.05
    min_decline: float = 0.2


def fit_regimes(
    trials: pd.DataFrame,
    measures: pd.DataFrame | None = None,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    criteria: Criteria = Criteria(),
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per (dataset, model, method, criterion, boundary); columns BOUNDARY_COLUMNS.

    estimate / ci_low / ci_high are strengths (ci_low = 0 means "below the smallest swept
    strength", ci_high = inf "above the largest", in resamples); `status` is ok, below_range,
    above_range, undefined or no_window, with `reason` when not ok. `bracket_low/high` (log10)
    feed `label_trials`. `located_fraction` = share of resamples that located the boundary.
    """
    se = standard_errors(trials, measures) if measures is not None else None
    rows = []
    for key, group in split_groups(trials):
        levels = build_levels(group, FIT_COLUMNS, se)
        sym = STRENGTH_SYMBOL.get(key[2], "strength")
        point = {c: levels.means(c)[None, :] for c in FIT_COLUMNS} if len(levels.x) else {}
        boot = resample_means(levels, FIT_COLUMNS, rng, n_boot) if len(levels.x) else {}
        context = {
            "levels": levels, "sym": sym, "criteria": criteria,
            "baseline_rows": bool(is_baseline(group).any()),
        }  # fmt: skip
        for criterion in CRITERIA:
            for boundary in (B1, B2):
                locate = _LOCATORS[(criterion, boundary)]
                p = locate(levels, point, criteria) if point else cx.undefined(1)
                r = locate(levels, boot, criteria) if boot else cx.undefined(n_boot)
                row = _row(key, criterion, boundary, p, r, context, ci)
                row["n_trials"] = int(levels.counts.sum())
                row["n_excluded"] = len(group) - row["n_trials"]
                rows.append(row)
    return pd.DataFrame(rows, columns=list(BOUNDARY_COLUMNS))


def regime_at(x, b1_lo, b1_hi, b2_lo, b2_hi) -> np.ndarray:
    """Regime name(s) at log10 strength(s) `x` given the two boundary brackets."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    after2, before2 = x >= b2_hi, x <= b2_lo
    after1, before1 = x >= b1_hi, x <= b1_lo
    return np.select(
        [after2, before1, ~before2, after1],
        ["excessive", "weak", "unknown", "bayes_aligned"],
        "unknown",
    )


def label_trials(trials: pd.DataFrame, boundaries: pd.DataFrame) -> pd.DataFrame:
    """Regime of every trial under both criteria.

    Columns: config_id, dataset, model, method, strength, seed, status, regime_paper,
    regime_scale_free. Baseline trials (method none) are labelled from the baseline means:
    paper criterion bayes_aligned if off < on there, else weak; scale-free always weak (it
    is the reference the criterion measures from).
    """
    trials = trials.reset_index(drop=True)  # positional indexing below
    out = trials[list(LABEL_COLUMNS[:7])].copy()
    x = log_strength(trials)
    for criterion in CRITERIA:
        out[f"regime_{criterion}"] = "unknown"
    groups = trials.groupby(["dataset", "model", "method"]).groups
    for (dataset, model, method), idx in groups.items():
        pos = trials.index.get_indexer(idx)
        if method == BASELINE_METHOD:
            base = usable(trials.loc[idx], (ON, OFF))
            paper = "unknown"
            if len(base):
                below = base[OFF].mean() < base[ON].mean()
                paper = "bayes_aligned" if below else "weak"
            out.iloc[pos, out.columns.get_loc("regime_paper")] = paper
            out.iloc[pos, out.columns.get_loc("regime_scale_free")] = "weak"
            continue
        for criterion in CRITERIA:
            if boundaries.empty:
                continue
            b = boundaries[
                (boundaries["dataset"] == dataset)
                & (boundaries["model"] == model)
                & (boundaries["method"] == method)
                & (boundaries["criterion"] == criterion)
            ].set_index("boundary")
            if B1 not in b.index or B2 not in b.index:
                continue
            labels = regime_at(
                x[pos], b.at[B1, "bracket_low"], b.at[B1, "bracket_high"],
                b.at[B2, "bracket_low"], b.at[B2, "bracket_high"],
            )  # fmt: skip
            out.iloc[pos, out.columns.get_loc(f"regime_{criterion}")] = labels
    return out


def criteria_table(criteria: Criteria = Criteria()) -> dict[str, float]:
    """The thresholds in force, for reports."""
    return asdict(criteria)


# --- locators: (levels, {column: (B, L) means}, criteria) -> Crossing ------------------------


def _paper_b1(levels: Levels, means: dict, criteria: Criteria) -> cx.Crossing:
    if levels.n_positive == 0:
        return cx.undefined(means[ON].shape[0])
    return cx.first_crossing(levels.x, means[OFF] - means[ON])


def _paper_b2(levels: Levels, means: dict, criteria: Criteria) -> cx.Crossing:
    return cx.segmented_fit(levels.x, means[ON], levels.counts, criteria.min_decline)


def _relative(levels: Levels, means: dict, col: str) -> np.ndarray | None:
    """(B, L) means divided by the baseline mean (level 0); None without a usable baseline."""
    if not levels.has_baseline or levels.n_positive == 0:
        return None
    base = means[col][:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, means[col] / base, np.nan)


def _scale_free_b1(levels: Levels, means: dict, criteria: Criteria) -> cx.Crossing:
    off, on = _relative(levels, means, OFF), _relative(levels, means, ON)
    if off is None or np.isnan(off[:, 0]).all():
        return cx.undefined(means[ON].shape[0])
    c = cx.first_crossing(levels.x, off - (1.0 - criteria.off_drop))
    # Not excessive yet: on-manifold sensitivity and accuracy within tolerance (boundary 2's
    # two triggers) up to and including the crossing level.
    on_min = np.minimum.accumulate(np.nan_to_num(on, nan=-np.inf), axis=1)
    acc_margin = means[ACC] - (means[ACC][:, :1] - criteria.accuracy_drop)
    acc_min = np.minimum.accumulate(np.nan_to_num(acc_margin, nan=-np.inf), axis=1)
    j = np.maximum(c.index, 0)
    rows = np.arange(len(j))
    excessive = (on_min[rows, j] < 1.0 - criteria.on_drop) | (acc_min[rows, j] < 0)
    lost = (c.index >= 0) & excessive
    code = np.where(lost, cx.NO_WINDOW, c.code)
    prev = levels.x[np.maximum(j - 1, 0)]
    return cx.Crossing(
        np.where(lost, np.nan, c.est),
        np.where(lost, prev, c.lo),
        np.where(lost, np.inf, c.hi),
        code,
        c.index,
    )


def _scale_free_b2_parts(levels: Levels, means: dict, criteria: Criteria):
    on = _relative(levels, means, ON)
    if on is None or np.isnan(on[:, 0]).all():
        return None
    acc = means[ACC] - (means[ACC][:, :1] - criteria.accuracy_drop)
    return (
        cx.first_crossing(levels.x, acc),
        cx.first_crossing(levels.x, on - (1.0 - criteria.on_drop)),
    )


def _scale_free_b2(levels: Levels, means: dict, criteria: Criteria) -> cx.Crossing:
    parts = _scale_free_b2_parts(levels, means, criteria)
    if parts is None:
        return cx.undefined(means[ON].shape[0])
    return cx.earliest(*parts)


_LOCATORS = {
    ("paper", B1): _paper_b1,
    ("paper", B2): _paper_b2,
    ("scale_free", B1): _scale_free_b1,
    ("scale_free", B2): _scale_free_b2,
}


# --- rows and reasons ---------------------------------------------------------------------


def _row(key, criterion, boundary, p: cx.Crossing, r: cx.Crossing, ctx, ci) -> dict:
    levels: Levels = ctx["levels"]
    est = float(p.est[0])
    code = int(p.code[0])
    low = high = np.nan
    if code == cx.OK:
        low, high, _ = percentile_ci(r.censored(), ci)
    row = {
        "dataset": key[0],
        "model": key[1],
        "method": key[2],
        "criterion": criterion,
        "boundary": boundary,
        "strength_symbol": ctx["sym"],
        "estimate": _strength(est),
        "ci_low": _strength(low),
        "ci_high": _strength(high),
        "log10_estimate": est,
        "log10_ci_low": low,
        "log10_ci_high": high,
        "estimate_outside_ci": estimate_outside(est, low, high),
        "status": cx.STATUS_NAMES[code],
        "reason": "" if code == cx.OK else _reason(criterion, boundary, p, ctx),
        "note": _note(criterion, boundary, r, ctx),
        "bracket_low": float(p.lo[0]),
        "bracket_high": float(p.hi[0]),
        "located_fraction": float(np.mean(r.code == cx.OK)),
        "n_strengths": levels.n_positive,
        "has_baseline": levels.has_baseline,
        "accuracy_plateau": np.nan,
        "accuracy_beyond": np.nan,
        "accuracy_drop": np.nan,
    }
    if boundary == B2 and len(levels.x):
        row.update(_accuracy_drop(levels, p))
    if criterion == "scale_free" and boundary == B2 and code == cx.OK:
        row["note"] = "; ".join(filter(None, [_b2_trigger(levels, ctx["criteria"]), row["note"]]))
    return row


def _strength(log10_value: float) -> float:
    # log10 -> strength; -inf (below the range) -> 0, +inf -> inf, NaN stays NaN.
    return float(10.0**log10_value) if not np.isnan(log10_value) else np.nan


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _reason(criterion: str, boundary: str, p: cx.Crossing, ctx) -> str:
    levels: Levels = ctx["levels"]
    crit: Criteria = ctx["criteria"]
    sym, code = ctx["sym"], int(p.code[0])
    if code == cx.UNDEFINED:
        return _undefined_reason(criterion, levels, ctx["baseline_rows"])
    pos = levels.strengths[np.isfinite(levels.x)]
    smin, smax = f"{sym}={_fmt(pos[0])}", f"{sym}={_fmt(pos[-1])}"
    at_base = np.isneginf(p.hi[0])
    between = levels.has_baseline and not at_base
    if (criterion, boundary) == ("paper", B1):
        if code == cx.BELOW and at_base:
            return "already crossed at strength 0: the baseline is less sensitive off than on"
        if code == cx.BELOW and between:
            return (
                f"crossed between strength 0 and the smallest strength {smin} "
                "(no log-scale interpolation towards 0)"
            )
        if code == cx.BELOW:
            return f"already crossed at the smallest strength {smin} (no baseline)"
        return f"never crossed up to {smax}: off-manifold sensitivity stays above on-manifold"
    if (criterion, boundary) == ("paper", B2):
        if code == cx.BELOW:
            extra = "" if levels.has_baseline else " (no baseline to define the plateau)"
            return f"on-manifold sensitivity already declining at the smallest strength {smin}" + (
                extra
            )
        return (
            f"on-manifold sensitivity never left its plateau up to {smax} "
            f"(fitted decline below {crit.min_decline:.0%} of the plateau)"
        )
    if (criterion, boundary) == ("scale_free", B1):
        if code == cx.NO_WINDOW:
            j = int(p.index[0])
            acc, on = levels.means(ACC), levels.means(ON)
            lost = []
            if (acc[: j + 1] < acc[0] - crit.accuracy_drop).any():
                lost.append(f"accuracy (more than {crit.accuracy_drop:g})")
            if (on[: j + 1] < (1.0 - crit.on_drop) * on[0]).any():
                lost.append(f"on-manifold sensitivity (more than {crit.on_drop:.0%})")
            return (
                f"off-manifold sensitivity fell {crit.off_drop:.0%} below baseline only at "
                f"{sym}={_fmt(levels.strengths[j])}, where the model had already lost "
                f"{' and '.join(lost)}: no Bayes-aligned window"
            )
        if code == cx.BELOW:
            return (
                f"off-manifold sensitivity already {crit.off_drop:.0%} below baseline at the "
                f"smallest strength {smin} (no log-scale interpolation towards 0)"
            )
        drop = f"{crit.off_drop:.0%}"
        return f"off-manifold sensitivity never fell {drop} below baseline up to {smax}"
    if code == cx.BELOW:
        return (
            f"accuracy or on-manifold sensitivity already beyond tolerance at the smallest "
            f"strength {smin} (no log-scale interpolation towards 0)"
        )
    return (
        f"accuracy stayed within {crit.accuracy_drop:g} of baseline and on-manifold "
        f"sensitivity above {1 - crit.on_drop:.0%} of baseline up to {smax}"
    )


def _undefined_reason(criterion: str, levels: Levels, baseline_rows: bool) -> str:
    if not len(levels.x):
        return "no completed trials with finite accuracy and on/off-manifold sensitivity"
    if levels.n_positive == 0:
        return "no completed trial at strength > 0"
    if criterion == "scale_free" and not levels.has_baseline and baseline_rows:
        return (
            "the unregularized baseline has no completed trial with finite accuracy and "
            "on/off-manifold sensitivity"
        )
    if criterion == "scale_free" and not levels.has_baseline:
        return "no unregularized baseline (method none) for this dataset and model"
    if criterion == "scale_free":
        return "baseline sensitivity is 0: relative changes undefined"
    return (
        "the segmented fit needs 2 strengths > 0 and 3 levels including the baseline; "
        f"have {levels.n_positive} strength(s) > 0"
        + (" and a baseline" if levels.has_baseline else " and no baseline")
    )


def _note(criterion: str, boundary: str, r: cx.Crossing, ctx) -> str:
    below = float(np.mean(r.code == cx.BELOW))
    above = float(np.mean(r.code == cx.ABOVE))
    parts = []
    if below:
        parts.append(f"{below:.0%} of resamples below the swept range")
    if above:
        parts.append(f"{above:.0%} of resamples above the swept range")
    return "; ".join(parts)


def _b2_trigger(levels: Levels, criteria: Criteria) -> str:
    point = {c: levels.means(c)[None, :] for c in FIT_COLUMNS}
    acc, on = _scale_free_b2_parts(levels, point, criteria)
    first_acc = acc.order_key()[0] <= on.order_key()[0]
    return "set by the accuracy drop" if first_acc else "set by the on-manifold drop"


def _accuracy_drop(levels: Levels, p: cx.Crossing) -> dict:
    """Baseline accuracy (plateau mean without baseline) minus mean accuracy of the trials
    beyond boundary 2 (fraction)."""
    code = int(p.code[0])
    if code not in (cx.OK, cx.BELOW):
        return {}
    edge = p.est[0] if code == cx.OK else p.hi[0]
    acc = levels.values[ACC]
    if levels.has_baseline:
        plateau = float(acc[0].mean())
    elif code == cx.BELOW:
        plateau = np.nan  # no level is known to lie on the plateau
    else:
        inside = [a for a, x in zip(acc, levels.x, strict=True) if x <= edge]
        plateau = float(np.concatenate(inside).mean()) if inside else np.nan
    beyond_values = [a for a, x in zip(acc, levels.x, strict=True) if x > edge or x >= p.hi[0]]
    beyond = float(np.concatenate(beyond_values).mean()) if beyond_values else np.nan
    drop = plateau - beyond
    return {"accuracy_plateau": plateau, "accuracy_beyond": beyond, "accuracy_drop": drop}
