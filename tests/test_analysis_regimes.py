"""Regime boundaries: recovery of known boundaries, bootstrap invariants, no extrapolation.

Tolerance: with 3 seeds, seed noise sd 0.02 and strengths 0.5 decades apart, every located
boundary lies within TOL = 0.15 decades (log10 strength) of the truth; observed worst case
over 30 data sets was 0.11.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from analysis import crossing as cx
from analysis import fit_regimes, label_trials
from analysis.regimes import B1, B2
from analysis.results import tables

try:
    from test_analysis_fakes import STRENGTHS, Truth, make_tables
except ImportError:
    from tests.test_analysis_fakes import STRENGTHS, Truth, make_tables

TOL = 0.15
N_BOOT = 200


def fit(trials, measures=None, seed=0, **kw):
    trials = tables.coerce(trials, "trials")
    measures = None if measures is None else tables.coerce(measures, "measures")
    return fit_regimes(trials, measures, rng=np.random.default_rng(seed), n_boot=N_BOOT, **kw)


def row(bounds: pd.DataFrame, criterion: str, boundary: str, method="gradnorm") -> pd.Series:
    sel = bounds[
        (bounds["criterion"] == criterion)
        & (bounds["boundary"] == boundary)
        & (bounds["method"] == method)
    ]
    assert len(sel) == 1
    return sel.iloc[0]


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_recovers_known_boundaries(data_seed):
    truth = Truth()
    bounds = fit(*make_tables(methods=("gradnorm", "pgd_l2"), seed=data_seed))
    expected = {
        ("paper", B1): truth.b1,
        ("paper", B2): truth.b2,
        ("scale_free", B1): truth.scale_free_b1,
        ("scale_free", B2): truth.scale_free_b2,
    }
    for method in ("gradnorm", "pgd_l2"):
        for (criterion, boundary), value in expected.items():
            r = row(bounds, criterion, boundary, method)
            assert r["status"] == "ok", r["reason"]
            assert abs(r["log10_estimate"] - value) < TOL, (method, criterion, boundary)
            assert r["log10_ci_low"] <= value <= r["log10_ci_high"]
            assert np.isclose(r["estimate"], 10 ** r["log10_estimate"])
    assert set(bounds["strength_symbol"]) == {"lambda", "epsilon"}
    # The accuracy drop beyond boundary 2: 0.95 on the plateau, about 0.74 beyond.
    drop = row(bounds, "paper", B2)["accuracy_drop"]
    assert 0.15 < drop < 0.3


def test_intervals_cover_the_truth_and_flag_an_estimate_outside():
    """Intervals are the bootstrap's own (not widened): ordered, informative, covering the
    known boundary, and `estimate_outside_ci` says where the estimate falls outside."""
    truth = Truth()
    bounds = fit(*make_tables(methods=("gradnorm", "randsmooth", "smoothness"), noise=0.06))
    ok = bounds[bounds["status"] == "ok"]
    assert len(ok) == 12
    assert (ok["log10_ci_low"] < ok["log10_ci_high"]).all()
    assert (ok["log10_ci_high"] - ok["log10_ci_low"] < 0.8).all()  # informative: < 0.8 decades
    value = {
        ("paper", B1): truth.b1,
        ("paper", B2): truth.b2,
        ("scale_free", B1): truth.scale_free_b1,
        ("scale_free", B2): truth.scale_free_b2,
    }
    covered = [
        r["log10_ci_low"] <= value[(r["criterion"], r["boundary"])] <= r["log10_ci_high"]
        for _, r in ok.iterrows()
    ]
    assert sum(covered) >= 10  # 95% intervals: at most 2 of 12 may miss
    outside = (ok["log10_estimate"] < ok["log10_ci_low"]) | (
        ok["log10_estimate"] > ok["log10_ci_high"]
    )
    assert (ok["estimate_outside_ci"] == outside).all()
    assert ok["located_fraction"].between(0.9, 1).all()


def test_same_seed_same_output_and_different_seed_differs():
    trials, measures = make_tables()
    a = fit(trials, measures, seed=7)
    b = fit(trials, measures, seed=7)
    c = fit(trials, measures, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["log10_ci_low"], c["log10_ci_low"], equal_nan=True)
    # The point estimates do not depend on the generator, only the intervals do.
    np.testing.assert_array_equal(a["log10_estimate"], c["log10_estimate"])


def test_without_measures_intervals_cover_seeds_only():
    trials, measures = make_tables()
    with_points = row(fit(trials, measures), "paper", B1)
    seeds_only = row(fit(trials), "paper", B1)
    assert with_points["log10_estimate"] == seeds_only["log10_estimate"]
    width = lambda r: r["log10_ci_high"] - r["log10_ci_low"]  # noqa: E731
    assert width(seeds_only) <= width(with_points)


def test_crossing_between_baseline_and_smallest_strength_is_not_interpolated():
    strengths = STRENGTHS[4:]  # from 1.0: off is already below on there
    bounds = fit(*make_tables(strengths=strengths))
    r = row(bounds, "paper", B1)
    assert r["status"] == "below_range" and np.isnan(r["estimate"])
    assert "between strength 0 and the smallest strength lambda=1" in r["reason"]
    assert np.isnan(r["ci_low"]) and np.isnan(r["ci_high"])
    no_base = row(fit(*make_tables(strengths=strengths, baseline=False)), "paper", B1)
    assert no_base["status"] == "below_range"
    assert "already crossed at the smallest strength lambda=1" in no_base["reason"]


def test_baseline_already_crossed_uses_scale_free_criterion():
    truth = Truth(off_cap=0.9)  # small tangent dimension: baseline already off < on
    bounds = fit(*make_tables(truth=truth))
    paper = row(bounds, "paper", B1)
    assert paper["status"] == "below_range"
    assert "already crossed at strength 0" in paper["reason"]
    scale_free = row(bounds, "scale_free", B1)
    assert scale_free["status"] == "ok"
    assert abs(scale_free["log10_estimate"] - truth.scale_free_b1) < TOL


def test_sweep_that_stops_before_the_decline():
    strengths = STRENGTHS[:6]  # up to 10**0.5 < b2 = 10**0.8
    bounds = fit(*make_tables(strengths=strengths))
    for criterion in ("paper", "scale_free"):
        r = row(bounds, criterion, B2)
        assert r["status"] == "above_range" and np.isnan(r["estimate"])
        assert "lambda=3.16" in r["reason"]
    assert "never left its plateau" in row(bounds, "paper", B2)["reason"]
    trials, measures = make_tables(strengths=strengths)
    labels = label_trials(tables.coerce(trials, "trials"), bounds)
    assert "excessive" not in set(labels["regime_paper"])


def test_no_bayes_aligned_window_under_scale_free_criterion():
    truth = Truth(b2=-2.5)  # on-manifold sensitivity falls before off-manifold does
    r = row(fit(*make_tables(truth=truth)), "scale_free", B1)
    assert r["status"] == "no_window" and "no Bayes-aligned window" in r["reason"]
    assert "on-manifold sensitivity (more than 25%)" in r["reason"]  # with accuracy, here


@dataclass(frozen=True)
class EarlyAccuracyLoss(Truth):
    """Accuracy falls from log10 strength -1.9 on, 0.05 below baseline at -1.73, before
    off-manifold sensitivity has dropped 20 % (at -1.4); on-manifold stays on its plateau."""

    def accuracy(self, x):
        return np.where(x <= -1.9, 0.95, np.maximum(0.95 - 0.3 * (x + 1.9), 0.1))


def test_no_window_when_accuracy_falls_first():
    """Boundary 1 must not land beyond boundary 2: with accuracy already 0.05 below baseline
    where off-manifold sensitivity first drops 20 %, there is no Bayes-aligned window."""
    bounds = fit(*make_tables(truth=EarlyAccuracyLoss()))
    r1, r2 = row(bounds, "scale_free", B1), row(bounds, "scale_free", B2)
    assert r1["status"] == "no_window" and np.isnan(r1["estimate"])
    assert "where the model had already lost accuracy (more than 0.05)" in r1["reason"]
    assert "on-manifold" not in r1["reason"]
    assert r2["status"] == "ok" and abs(r2["log10_estimate"] - (-1.9 + 0.05 / 0.3)) < 0.15


def test_missing_baseline_gives_reasons_not_errors():
    bounds = fit(*make_tables(baseline=False))
    assert row(bounds, "paper", B1)["status"] == "ok"
    for boundary in (B1, B2):
        r = row(bounds, "scale_free", boundary)
        assert r["status"] == "undefined" and "no unregularized baseline" in r["reason"]


def test_labels_follow_the_boundaries():
    trials, measures = make_tables()
    trials = tables.coerce(trials, "trials")
    bounds = fit(trials, measures)
    labels = label_trials(trials, bounds)
    assert len(labels) == len(trials) and labels["config_id"].is_unique
    order = {"weak": 0, "bayes_aligned": 1, "excessive": 2}
    for criterion in ("paper", "scale_free"):
        method = labels[labels["method"] == "gradnorm"].sort_values("strength")
        ranks = method[f"regime_{criterion}"].map(order)
        assert ranks.notna().all() and ranks.is_monotonic_increasing
        assert set(method[f"regime_{criterion}"]) == set(order)
    baseline = labels[labels["method"] == "none"]
    assert set(baseline["regime_paper"]) == {"weak"}  # baseline off 1.8 > on 1.0


def test_diverged_trials_are_kept_labelled_and_excluded_from_means():
    trials, measures = make_tables()
    last = trials["strength"] == trials["strength"].max()
    trials.loc[last, "status"] = "diverged"
    trials.loc[last, ["on_manifold_sensitivity", "test_accuracy"]] = np.nan
    bounds = fit(trials, measures)
    assert (bounds["n_excluded"] == last.sum()).all()
    assert row(bounds, "paper", B2)["status"] == "ok"
    labels = label_trials(tables.coerce(trials, "trials"), bounds)
    assert (labels.loc[last.to_numpy(), "regime_paper"] == "excessive").all()


# --- the numeric core -----------------------------------------------------------------------


def test_first_crossing_interpolates_linearly_and_censors():
    x = np.array([-np.inf, 0.0, 1.0, 2.0])
    Y = np.array(
        [
            [1.0, 0.5, -0.5, -1.0],  # crosses at 0.5
            [-1.0, -1.0, -1.0, -1.0],  # already below at the baseline
            [1.0, -1.0, -1.0, -1.0],  # between baseline and x = 0
            [1.0, 1.0, 1.0, 1.0],  # never
        ]
    )
    c = cx.first_crossing(x, Y)
    assert c.est[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(c.code, [cx.OK, cx.BELOW, cx.BELOW, cx.ABOVE])
    assert np.isneginf(c.hi[1]) and c.hi[2] == 0.0 and c.lo[3] == 2.0
    np.testing.assert_array_equal(c.censored()[1:], [-np.inf, -np.inf, np.inf])


def test_segmented_fit_recovers_an_exact_hinge():
    x = np.concatenate([[-np.inf], np.linspace(-2, 2, 9)])
    b = 0.63
    y = np.where(x <= b, 1.0, 1.0 - 0.5 * (x - b))
    flat = np.ones_like(x)
    seg = cx.segmented_fit(x, np.vstack([y, flat]), np.full(len(x), 3.0), min_decline=0.2)
    assert seg.code[0] == cx.OK and abs(seg.est[0] - b) <= cx.GRID_STEP
    assert seg.plateau[0] == pytest.approx(1.0, abs=1e-6)
    assert seg.slope[0] == pytest.approx(-0.5, abs=0.01)
    assert seg.code[1] == cx.ABOVE and np.isnan(seg.est[1])
