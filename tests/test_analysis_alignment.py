"""Peak alignment, its regime check, the Spearman correlation and noise robustness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import (
    alignment_correlation,
    fit_regimes,
    noise_robustness,
    peak_alignment,
)
from analysis.results import tables
from analysis.uncertainty import estimate_outside, percentile_ci

try:
    from test_analysis_fakes import Truth, make_tables
except ImportError:
    from tests.test_analysis_fakes import Truth, make_tables

N_BOOT = 200


@pytest.fixture(scope="module")
def data():
    trials, measures = make_tables(methods=("gradnorm", "randsmooth"))
    trials, measures = tables.coerce(trials, "trials"), tables.coerce(measures, "measures")
    bounds = fit_regimes(trials, measures, rng=np.random.default_rng(0), n_boot=N_BOOT)
    return trials, measures, bounds


def test_peak_is_found_and_lies_in_the_bayes_aligned_regime(data):
    trials, measures, bounds = data
    peaks = peak_alignment(trials, measures, bounds, rng=np.random.default_rng(0), n_boot=N_BOOT)
    assert list(peaks["method"]) == ["gradnorm", "randsmooth"]
    for _, r in peaks.iterrows():
        # Truth peaks at 10**0.25 between the swept 1.0 and 3.16; both sit in the plateau.
        assert r["peak_strength"] in (1.0, pytest.approx(10**0.5))
        # Resamples put the peak only at the two levels around the truth.
        for bound in (r["ci_low"], r["ci_high"]):
            assert bound == 1.0 or bound == pytest.approx(10**0.5)
        assert not r["estimate_outside_ci"]
        assert bool(r["in_bayes_aligned_paper"])  # pd.NA would raise: must be decided
        assert "inside the Bayes-aligned regime (paper criterion)" in r["finding"]
    assert peaks["in_bayes_aligned_paper"].dtype == "boolean"


def test_peak_outside_the_bayes_aligned_regime_is_flagged():
    truth = Truth(peak=-2.0)  # alignment best at the weakest strengths
    trials, measures = make_tables(truth=truth, baseline=False)
    trials = tables.coerce(trials, "trials")
    bounds = fit_regimes(trials, None, rng=np.random.default_rng(0), n_boot=N_BOOT)
    peaks = peak_alignment(trials, None, bounds, rng=np.random.default_rng(0), n_boot=N_BOOT)
    r = peaks.iloc[0]
    assert r["peak_strength"] == pytest.approx(0.01)
    assert not bool(r["in_bayes_aligned_paper"])
    assert "weak regime, not Bayes-aligned" in r["finding"]
    assert "smallest swept strength" in r["note"]


def test_peak_alignment_is_reproducible(data):
    trials, measures, bounds = data
    a = peak_alignment(trials, measures, bounds, rng=np.random.default_rng(3), n_boot=N_BOOT)
    b = peak_alignment(trials, measures, bounds, rng=np.random.default_rng(3), n_boot=N_BOOT)
    pd.testing.assert_frame_equal(a, b)


def test_mixed_alignment_metrics_are_not_compared(data):
    trials, measures, bounds = data
    mixed = trials.copy()
    mixed.loc[mixed.index[:4], "alignment_metric"] = "cosine"
    peaks = peak_alignment(mixed, None, bounds, rng=np.random.default_rng(0), n_boot=50)
    assert (peaks["alignment_metric"] == "stlpips-alex").all()
    assert peaks["note"].str.contains("another alignment metric").any()


def test_spearman_is_negative_on_paper_like_data(data):
    trials, _, _ = data
    corr = alignment_correlation(trials, rng=np.random.default_rng(0), n_boot=N_BOOT)
    assert list(corr["scope"]) == ["all", "gradnorm", "randsmooth"]
    r = corr.iloc[0]
    assert r["n"] == len(trials) and r["spearman_rho"] < 0
    assert -1 < r["ci_low"] < r["spearman_rho"] < r["ci_high"] < 0  # excludes no correlation
    assert not r["estimate_outside_ci"]
    # within each seed, a t-interval across seeds: no resampling, the seed of the rng is moot
    assert r["n_seeds"] == trials["seed"].nunique() and r["interval"].startswith("t, ")
    a = alignment_correlation(trials, rng=np.random.default_rng(1), n_boot=N_BOOT)
    assert a.iloc[0]["ci_low"] == r["ci_low"]
    # one seed: a paired bootstrap over its trials stands in, and the row says so
    one = alignment_correlation(trials[trials["seed"] == 0], rng=np.random.default_rng(1),
                                n_boot=N_BOOT).iloc[0]  # fmt: skip
    assert one["n_seeds"] == 1 and one["interval"].startswith("bootstrap")
    assert one["ci_low"] < one["spearman_rho"] < one["ci_high"]


def test_spearman_needs_three_trials(data):
    trials, _, _ = data
    corr = alignment_correlation(trials.iloc[:2], rng=np.random.default_rng(0), n_boot=10)
    assert corr["spearman_rho"].isna().all()
    assert corr["reason"].str.contains("need at least 3").all()


def test_noise_robustness_relative_to_baseline(data):
    trials, _, _ = data
    noise = noise_robustness(trials, rng=np.random.default_rng(0), n_boot=N_BOOT)
    base = noise[noise["strength"] == 0]
    assert np.allclose(base["ratio_to_baseline"], 1.0)
    top = noise[noise["strength"] == noise["strength"].max()]
    assert (top["ratio_to_baseline"] > 5).all()  # distractor sensitivity fell ~10x
    # The baseline's ratio to itself is 1 in every resample; elsewhere the interval has width,
    # and at the strongest setting it excludes 1 by far.
    assert (base["ci_low"] == 1.0).all() and (base["ci_high"] == 1.0).all()
    rest = noise[noise["strength"] > 0]
    assert (rest["ci_low"] < rest["ci_high"]).all()
    assert (top["ci_low"] > 5).all()
    ok = noise.dropna(subset=["ratio_to_baseline"])
    outside = (ok["ratio_to_baseline"] < ok["ci_low"]) | (ok["ratio_to_baseline"] > ok["ci_high"])
    assert (ok["estimate_outside_ci"] == outside).all()


def test_noise_robustness_without_masks_says_so(data):
    trials, _, _ = data
    no_masks = trials.assign(relative_noise_robustness=np.nan, signal_sensitivity=np.nan)
    noise = noise_robustness(no_masks, rng=np.random.default_rng(0), n_boot=10)
    assert len(noise) == 2 and noise["reason"].str.contains("no signal/distractor masks").all()


def test_percentile_interval_keeps_censoring_and_is_not_widened():
    samples = np.array([-np.inf] * 30 + list(np.linspace(0, 1, 60)) + [np.nan] * 10)
    low, high, frac = percentile_ci(samples)
    # 90 valid replicates: the 2.5% point is a censored one, the 97.5% one the 88th of 90
    # (sorted), the 58th of the 60 finite ones: 57/59.
    assert np.isneginf(low) and high == pytest.approx(57 / 59) and frac == pytest.approx(0.9)
    low, high, _ = percentile_ci(np.linspace(0, 1, 101))
    assert (low, high) == (pytest.approx(0.02), pytest.approx(0.98))
    # An estimate of 2.0 is not pulled in: the interval stays, and the flag says so.
    assert estimate_outside(2.0, low, high) and not estimate_outside(0.5, low, high)
    assert not estimate_outside(np.nan, low, high)
    assert np.isnan(percentile_ci(np.full(5, np.nan))[0])


def test_percentile_interval_has_its_nominal_coverage():
    """Over normal samples the 95% interval is (-1.96, 1.96) up to sampling error."""
    low, high, _ = percentile_ci(np.random.default_rng(0).standard_normal(200_000))
    assert low == pytest.approx(-1.96, abs=0.02) and high == pytest.approx(1.96, abs=0.02)
    low, high, _ = percentile_ci(np.random.default_rng(0).standard_normal(200_000), 0.5)
    assert low == pytest.approx(-0.674, abs=0.01) and high == pytest.approx(0.674, abs=0.01)


def test_spearman_of_rho2_with_alignment(data):
    """The rho2 correlation: scipy's Spearman within each seed, the mean over seeds."""
    from scipy import stats

    trials, _, _ = data
    corr = alignment_correlation(
        trials, rng=np.random.default_rng(0), n_boot=N_BOOT, quantity="rho2"
    )
    r = corr.iloc[0]
    assert r["quantity"] == "rho2" and r["scope"] == "all" and r["n"] == len(trials)
    want = np.mean([stats.spearmanr(s["rho2"], s["alignment"]).statistic
                    for _, s in trials.groupby("seed")])
    assert r["spearman_rho"] == pytest.approx(want)
    assert -1 < r["ci_low"] < r["spearman_rho"] < r["ci_high"] < 0  # excludes no correlation
    assert not r["estimate_outside_ci"]
    # tables from before rho2 was measured: a reason, no crash
    old = alignment_correlation(
        trials.drop(columns="rho2"), rng=np.random.default_rng(0), n_boot=10, quantity="rho2"
    )
    assert old["spearman_rho"].isna().all() and (old["reason"] != "").all()
