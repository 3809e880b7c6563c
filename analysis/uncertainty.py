"""The one uncertainty engine of pags: every interval, p-value and multiplicity correction of
the report (`pags analyze`), the study (RESULTS.md) and the search comes from here, so the same
inputs give the same interval wherever they are printed.

- Across seeds: Student-t intervals of per-seed values (`t_interval`, scipy.stats.t.interval),
  with the matching two-sided one-sample t-test p-value. Seeds are the independent units: each
  has its own initialisation, batch order and baseline.
- Correlations: Spearman within each seed, then a t-interval across seeds (`seed_spearman`);
  trials of one seed share that seed's baseline and strengths are design points, not draws, so
  pooling trials across seeds would count one seed's shift as evidence. `beyond_knob` asks
  whether rho2 predicts alignment beyond the strength knob: the same within-seed correlation
  of residuals with every (method, strength) cell's and every seed's mean removed.
  With a single seed there is nothing to put a t-interval on: a paired bootstrap over that
  seed's trials (scipy.stats.bootstrap, paired=True) stands in and the row says so.
- Bootstrap over seeds and evaluation points (`resample_means`), percentile intervals that keep
  censored (+-inf) replicates (`percentile_ci`), the bootstrap interval of a curve's arg-max
  over resampled seeds (`argmax_interval`).
- Holm's step-down correction across a family of verdicts (`holm`), and the verdict rule
  (`verdict`): holds / does not hold / inconclusive from a p-value and the predicted sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from analysis.groups import Levels

CI = 0.95
HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
MIN_TRIALS_PER_SEED = 3  # a rank correlation of fewer points is +-1 or undefined


class Interval(NamedTuple):
    """An estimate with its interval. `p_value`: two-sided, against 0 (NaN when none);
    `method`: how the interval was made, for the tables."""

    estimate: float
    low: float
    high: float
    n: int
    p_value: float
    method: str


NO_INTERVAL = Interval(np.nan, np.nan, np.nan, 0, np.nan, "")


def t_interval(values, ci: float = CI) -> Interval:
    """Mean of the finite `values` (one per seed) with a Student-t interval and the one-sample
    t-test p-value against 0. One value: no interval; zero spread: a point interval (p 0 unless
    the mean is 0)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return NO_INTERVAL
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, np.nan, np.nan, 1, np.nan, "one seed: no interval")
    sem = float(v.std(ddof=1) / np.sqrt(n))
    if sem == 0:
        return Interval(mean, mean, mean, n, 0.0 if mean != 0 else 1.0, f"t, {n} seeds")
    low, high = stats.t.interval(ci, n - 1, loc=mean, scale=sem)
    p = float(stats.ttest_1samp(v, 0.0).pvalue)
    return Interval(mean, float(low), float(high), n, p, f"t, {n} seeds")


def spearman(a, b) -> float:
    """Spearman's rho of two equal-length arrays (NaN when fewer than 3 or one is constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < MIN_TRIALS_PER_SEED or np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(stats.spearmanr(a, b).statistic)


def _spearman_axis(a, b, axis=-1):
    ra = stats.rankdata(a, axis=axis)
    rb = stats.rankdata(b, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    rb = rb - rb.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis) / np.sqrt((ra**2).sum(axis) * (rb**2).sum(axis))


def spearman_bootstrap(a, b, rng: np.random.Generator, n_boot: int, ci: float = CI) -> Interval:
    """Spearman's rho over pairs with a percentile interval from resampling the pairs
    (scipy.stats.bootstrap, paired). Only for one seed's trials: see the module docstring."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    est = spearman(a, b)
    if not np.isfinite(est):
        return Interval(np.nan, np.nan, np.nan, len(a), np.nan, "")
    res = stats.bootstrap((a, b), _spearman_axis, paired=True, vectorized=True,
                          n_resamples=n_boot, confidence_level=ci, method="percentile",
                          random_state=rng)  # fmt: skip
    p = float(stats.spearmanr(a, b).pvalue)
    low, high = res.confidence_interval
    return Interval(est, float(low), float(high), len(a), p,
                    f"bootstrap over the {len(a)} trials of one seed")  # fmt: skip


def seed_spearman(
    frame: pd.DataFrame, x: str, y: str, *, rng: np.random.Generator, n_boot: int,
    ci: float = CI, seed: str = "seed",
) -> tuple[Interval, dict]:  # fmt: skip
    """Spearman(x, y) within each seed (rows with both finite, at least MIN_TRIALS_PER_SEED),
    summarized across seeds by `t_interval`: (interval, {seed: rho}). One usable seed: the
    paired bootstrap over its trials."""
    ok = frame[np.isfinite(frame[x].to_numpy(float)) & np.isfinite(frame[y].to_numpy(float))]
    per_seed = {}
    for s, rows in ok.groupby(seed, sort=True):
        rho = spearman(rows[x].to_numpy(float), rows[y].to_numpy(float))
        if np.isfinite(rho):
            per_seed[s] = rho
    if len(per_seed) == 1:
        (s,) = per_seed
        rows = ok[ok[seed] == s]
        return spearman_bootstrap(rows[x], rows[y], rng, n_boot, ci), per_seed
    return t_interval(list(per_seed.values()), ci), per_seed


def knob_residuals(frame: pd.DataFrame, cols: Sequence[str], cell=("method", "strength"),
                   seed: str = "seed") -> pd.DataFrame:  # fmt: skip
    """`frame` with `cols` replaced by what the strength knob and the seed do not explain:
    value - its (method, strength) cell's mean - its seed's mean + the grand mean (two-way
    additive fit, iterated to convergence for unbalanced cells). A shift shared by all of a
    seed's trials (e.g. its baseline) and the knob's own effect are both removed."""
    out = frame.copy()
    keys = list(cell)
    for c in cols:
        v = out[c].astype(float)
        fit = pd.Series(0.0, index=out.index)
        for _ in range(20):
            r = v - fit
            fit = fit + r.groupby([out[k] for k in keys]).transform("mean")
            r = v - fit
            fit = fit + r.groupby(out[seed]).transform("mean")
        out[c] = v - fit
    return out


def beyond_knob(
    frame: pd.DataFrame, x: str, y: str, *, rng: np.random.Generator, n_boot: int,
    ci: float = CI, seed: str = "seed",
) -> tuple[Interval, dict]:  # fmt: skip
    """Does x predict y beyond the strength knob: `seed_spearman` of the `knob_residuals`.
    Needs cells with at least 2 seeds (a cell seen once has residual 0)."""
    ok = frame[np.isfinite(frame[x].to_numpy(float)) & np.isfinite(frame[y].to_numpy(float))]
    ok = ok[ok.groupby(["method", "strength"])[seed].transform("nunique") >= 2]
    if ok.empty or ok[seed].nunique() < 2:
        return NO_INTERVAL, {}
    return seed_spearman(knob_residuals(ok, (x, y), seed=seed), x, y, rng=rng, n_boot=n_boot,
                         ci=ci, seed=seed)  # fmt: skip


def resample_means(
    levels: Levels, columns: Sequence[str], rng: np.random.Generator, n_boot: int
) -> dict[str, np.ndarray]:
    """Bootstrap level means: {column: (n_boot, L)}.

    One replicate (i) resamples, with replacement, the trials *within each strength level* (so
    every level keeps its number of seeds), and (ii) adds to each resampled trial's value a
    normal draw with that trial's standard error over evaluation points, `std / sqrt(n)` from
    measures.parquet. The same resampled trials serve every column, so paired quantities (on,
    off) stay paired."""
    out = {c: np.empty((n_boot, len(levels.x))) for c in columns}
    for l, ids in enumerate(levels.config_ids):
        idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        for c in columns:
            noise = rng.standard_normal(idx.shape) * levels.se[c][l][idx]
            out[c][:, l] = (levels.values[c][l][idx] + noise).mean(axis=1)
    return out


def percentile_ci(samples: np.ndarray, level: float = CI) -> tuple[float, float, float]:
    """(low, high, valid_fraction) of bootstrap `samples` (may hold +-inf and NaN).

    Boundary replicates may be censored: -inf below the swept range, +inf above it; the
    percentiles use the empirical inverse CDF (no interpolation), so +-inf stay +-inf.
    The interval is reported as the bootstrap gives it, never widened to contain the estimate
    (widening changes its coverage); `estimate_outside` flags that case. valid_fraction =
    share of non-NaN replicates (NaN = undefined, dropped and counted)."""
    samples = np.asarray(samples, dtype=float).ravel()
    valid = samples[~np.isnan(samples)]
    frac = len(valid) / len(samples) if len(samples) else 0.0
    if not len(valid):
        return np.nan, np.nan, frac
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(low), float(high), frac


def estimate_outside(estimate: float, low: float, high: float) -> bool:
    """True when a located estimate lies outside its (unwidened) interval; False when any of
    the three is NaN (no interval to compare with)."""
    return bool(estimate < low or estimate > high)


def argmax_interval(curves: pd.DataFrame, rng: np.random.Generator, n_boot: int,
                    ci: float = CI) -> tuple[float, float]:  # fmt: skip
    """Percentile interval (`percentile_ci`) of the arg-max of the mean curve over seeds
    resampled with replacement; `curves`: strength x seed."""
    values = curves.to_numpy(float)
    idx = rng.integers(0, values.shape[1], size=(n_boot, values.shape[1]))
    with np.errstate(invalid="ignore"):
        means = np.nanmean(values[:, idx], axis=2)  # (strengths, n_boot)
    means = np.where(np.isnan(means), -np.inf, means)
    picks = np.asarray(curves.index, float)[np.argmax(means, axis=0)]
    low, high, _ = percentile_ci(picks, ci)
    return low, high


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def verdict(estimate: float, p_value: float, predicted: int, ci: float = CI) -> str:
    """holds when p < 1 - ci and the estimate has the predicted sign (+1 above 0, -1 below);
    does not hold when p < 1 - ci on the other side; inconclusive otherwise. With an
    unadjusted t p-value this is exactly "the (1 - ci) interval lies on one side of 0"."""
    if not (np.isfinite(p_value) and np.isfinite(estimate)) or p_value >= 1 - ci:
        return UNSURE
    return HOLDS if np.sign(estimate) == predicted else FAILS


def side(lo: float, hi: float, predicted: int) -> str:
    """Verdict from an interval and the predicted sign (+1 above 0, -1 below 0)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return UNSURE
    if (predicted > 0 and lo > 0) or (predicted < 0 and hi < 0):
        return HOLDS
    if (predicted > 0 and hi < 0) or (predicted < 0 and lo > 0):
        return FAILS
    return UNSURE


def per_seed_text(per_seed: dict) -> str:
    """Per-seed values for a table cell: "0: -0.51, 1: -0.62, ..." (3 significant digits)."""
    return ", ".join(f"{s}: {v:.3g}" for s, v in sorted(per_seed.items()))


def all_hold(tests, predicted: int) -> tuple[float, float]:
    """(signed estimate, p) of "every one of these tests holds", from (estimate, p) pairs: an
    intersection-union test, so p is the largest p when all estimates lie on the predicted
    side; otherwise the wrong-side test with the smallest p decides (it may show the claim
    fails). NaN when there is no test or a deciding p is NaN."""
    tests = [(float(e), float(p)) for e, p in tests]
    if not tests or any(not np.isfinite(e) for e, _ in tests):
        return np.nan, np.nan
    wrong = [(e, p) for e, p in tests if np.sign(e) != predicted]
    if wrong:
        return min(wrong, key=lambda t: (np.nan_to_num(t[1], nan=np.inf), t[0]))
    return float(predicted), float(max(p for _, p in tests))
