"""Locate a boundary along log10 strength from level means: threshold crossings and a
segmented (plateau, then linear decline) least-squares fit. Pure numpy, vectorized over
bootstrap replicates.

Inputs are level positions `x` (L,) in log10 strength, ascending, with -inf for the
unregularized baseline (strength 0), and level means `Y` (B, L), one row per replicate.

Every locator returns a `Crossing` with, per replicate, a status code and a *bracket*
[lo, hi] in log10 strength: levels at x <= lo lie before the boundary, levels at x >= hi
after it, levels in between are undetermined. A located boundary has lo = hi = est. Nothing is
extrapolated beyond the swept strengths: a boundary that the sweep does not bracket is NaN
with a censored bracket (BELOW: lo = -inf; ABOVE: hi = +inf).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK, BELOW, ABOVE, UNDEFINED, NO_WINDOW = 0, 1, 2, 3, 4
STATUS_NAMES = {
    OK: "ok",
    BELOW: "below_range",
    ABOVE: "above_range",
    UNDEFINED: "undefined",
    NO_WINDOW: "no_window",
}

# Resolution of the breakpoint grid of the segmented fit, in decades of strength.
GRID_STEP = 0.005
MAX_GRID = 2001


@dataclass
class Crossing:
    """Per-replicate boundary: est (B,), lo (B,), hi (B,) in log10 strength; code (B,) int;
    index (B,) = first level at or beyond the boundary (-1 if none)."""

    est: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    code: np.ndarray
    index: np.ndarray

    def censored(self) -> np.ndarray:
        """(B,) est where located, -inf below the range, +inf above it, NaN otherwise."""
        out = np.full(self.est.shape, np.nan)
        out[self.code == OK] = self.est[self.code == OK]
        out[self.code == BELOW] = -np.inf
        out[self.code == ABOVE] = np.inf
        return out

    def order_key(self) -> np.ndarray:
        """(B,) position used to pick the earlier of two boundaries (see `earliest`)."""
        key = np.where(self.code == OK, self.est, np.nan)
        # -1e6 ranks every BELOW before any located boundary, and a BELOW with a smaller
        # bracket top before another BELOW (log10 strengths are O(10)).
        key = np.where(self.code == BELOW, self.hi - 1e6, key)
        return np.where(self.code == ABOVE, np.inf, key)


def undefined(n: int) -> Crossing:
    nan = np.full(n, np.nan)
    return Crossing(nan, nan.copy(), nan.copy(), np.full(n, UNDEFINED), np.full(n, -1))


def first_crossing(x: np.ndarray, Y: np.ndarray) -> Crossing:
    """First level where Y < 0 (Y >= 0 before), interpolated linearly in x between it and the
    previous level. Levels with Y NaN count as not crossed."""
    B, L = Y.shape
    if L == 0:
        return undefined(B)
    neg = np.nan_to_num(Y, nan=0.0) < 0
    crossed = neg.any(axis=1)
    j = np.argmax(neg, axis=1)
    rows = np.arange(B)
    prev = np.maximum(j - 1, 0)
    y0, y1 = Y[rows, prev], Y[rows, j]
    x0, x1 = x[prev], x[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(y0 - y1 > 0, y0 / (y0 - y1), 0.0)
        est = x0 + t * (x1 - x0)
    located = crossed & (j > 0) & np.isfinite(x0)
    # Crossed at the first level, or between the baseline (x = -inf) and the next level: the
    # boundary is somewhere below x[j]; a log scale has no room to interpolate towards 0.
    below = crossed & ~located
    code = np.where(located, OK, np.where(below, BELOW, ABOVE))
    lo = np.where(located, est, np.where(below, -np.inf, x[-1]))
    hi = np.where(located, est, np.where(below, x1, np.inf))
    est = np.where(located, est, np.nan)
    return Crossing(est, lo, hi, code, np.where(crossed, j, -1))


def earliest(a: Crossing, b: Crossing) -> Crossing:
    """Per replicate, the boundary that comes first along strength (undefined loses)."""
    ka, kb = a.order_key(), b.order_key()
    take_b = np.isnan(ka) | (kb < ka)
    pick = lambda u, v: np.where(take_b, v, u)  # noqa: E731
    return Crossing(
        pick(a.est, b.est),
        pick(a.lo, b.lo),
        pick(a.hi, b.hi),
        pick(a.code, b.code),
        pick(a.index, b.index),
    )


@dataclass
class Segmented(Crossing):
    """A `Crossing` from the segmented fit, plus plateau level (B,) and slope (B,) in units of
    Y per decade of strength."""

    plateau: np.ndarray | None = None
    slope: np.ndarray | None = None


def segmented_fit(x: np.ndarray, Y: np.ndarray, w: np.ndarray, min_decline: float) -> Segmented:
    """Fit y = c for x <= b, y = c + m (x - b) for x > b (continuous hinge), m < 0, by weighted
    least squares over a grid of breakpoints b between the smallest and the second-largest
    positive strength (GRID_STEP decades apart). Weights `w` (L,) are trial counts, which makes
    the fit on level means equal to the fit on individual trials.

    A breakpoint is reported only when the fitted decline from b to the largest strength
    reaches `min_decline` x |c| (else ABOVE: "never left its plateau"). A breakpoint at the
    smallest positive strength is kept only if that level is still within `min_decline` x |c|
    of the baseline (else, or without baseline, BELOW: "already declining").
    """
    B, L = Y.shape
    pos = np.flatnonzero(np.isfinite(x))
    if len(pos) < 2 or L < 3:
        seg = undefined(B)
        return Segmented(seg.est, seg.lo, seg.hi, seg.code, seg.index)
    xp = x[pos]
    n_grid = int(min(MAX_GRID, max(1, np.ceil((xp[-2] - xp[0]) / GRID_STEP) + 1)))
    grid = np.linspace(xp[0], xp[-2], n_grid)  # (G,)
    with np.errstate(invalid="ignore"):
        H = np.maximum(x[None, :] - grid[:, None], 0.0)  # (G, L); -inf baseline -> 0
    H = np.nan_to_num(H, nan=0.0)
    s0 = w.sum()
    s1 = H @ w  # (G,)
    s2 = (H**2) @ w
    t0 = Y @ w  # (B,)
    t1 = Y @ (w[None, :] * H).T  # (B, G)
    det = s0 * s2 - s1**2  # (G,)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (s2[None, :] * t0[:, None] - s1[None, :] * t1) / det
        m = (s0 * t1 - s1[None, :] * t0[:, None]) / det
    sse = (Y**2) @ w
    sse = sse[:, None] - (c * t0[:, None] + m * t1)
    sse = np.where((det[None, :] > 1e-12) & (m < 0), sse, np.inf)
    best = np.argmin(sse, axis=1)
    rows = np.arange(B)
    fitted = np.isfinite(sse[rows, best])
    b, cb, mb = grid[best], c[rows, best], m[rows, best]

    declines = fitted & (-mb * (xp[-1] - b) >= min_decline * np.abs(cb))
    at_edge = declines & (best == 0)
    if np.isneginf(x[0]):
        first_drop = np.abs(Y[:, pos[0]] - Y[:, 0])
        edge_ok = at_edge & (first_drop < min_decline * np.abs(cb))
    else:
        edge_ok = np.zeros(B, dtype=bool)
    located = declines & (~at_edge | edge_ok)
    below = at_edge & ~edge_ok
    code = np.where(located, OK, np.where(below, BELOW, ABOVE))
    est = np.where(located, b, np.nan)
    lo = np.where(located, b, np.where(below, -np.inf, xp[-1]))
    hi = np.where(located, b, np.where(below, xp[1], np.inf))
    index = np.where(located, np.searchsorted(x, b, side="right"), -1)
    index = np.where(below, pos[0], index)
    plateau = np.where(fitted, cb, np.nan)
    slope = np.where(fitted, mb, np.nan)
    return Segmented(est, lo, hi, code, index, plateau, slope)
