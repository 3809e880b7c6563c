"""Bootstrap over seeds and evaluation points, and percentile intervals that allow censoring.

One replicate (i) resamples, with replacement, the trials *within each strength level* (so
every level keeps its number of seeds), and (ii) adds to each resampled trial's value a normal
draw with that trial's standard error over evaluation points, `std / sqrt(n)` from
measures.parquet. (i) covers seed-to-seed variation, (ii) the finite evaluation set. The same
resampled trials are used for every column, so paired quantities (on, off) stay paired.

Boundary replicates may be *censored*: -inf when the boundary lies below the swept range,
+inf above it. Percentiles over such replicates stay honest ("below the smallest strength")
instead of being dropped; undefined replicates (NaN) are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.groups import Levels


def resample_means(
    levels: Levels, columns: Sequence[str], rng: np.random.Generator, n_boot: int
) -> dict[str, np.ndarray]:
    """Bootstrap level means: {column: (n_boot, L)}."""
    out = {c: np.empty((n_boot, len(levels.x))) for c in columns}
    for l, ids in enumerate(levels.config_ids):
        idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        for c in columns:
            noise = rng.standard_normal(idx.shape) * levels.se[c][l][idx]
            out[c][:, l] = (levels.values[c][l][idx] + noise).mean(axis=1)
    return out


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, valid_fraction) of bootstrap `samples` (may hold +-inf and NaN).

    Percentiles use the empirical inverse CDF (no interpolation, so +-inf stay +-inf). The
    interval is reported as the bootstrap gives it, never widened to contain the estimate:
    widening changes its coverage. With few seeds the bootstrap distribution can be skewed
    enough to exclude the estimate; tables say so in `estimate_outside_ci`
    (`estimate_outside`). valid_fraction = share of non-NaN replicates.
    """
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
