"""The study's statistics (analysis/study.py, analysis/verdicts.py, analysis/uncertainty.py) on
constructed per-trial frames with a planted truth: where alignment peaks, by how much it beats
the baseline, which way rho2 moves, a link planted within seeds vs a confound across seeds,
Holm's correction, and the same interval on the report's and the study's path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import study, uncertainty, verdicts
from analysis.alignment import alignment_correlation

STRENGTHS = tuple(float(s) for s in np.logspace(-2, 2, 9))
SEEDS = (0, 1, 2, 3, 4, 5)
PRED, SUM = study.align_col("pred_logit", "score"), study.align_col("logit_sum", "score_uncond")


def frame(alignment, rho2=lambda x: 0.5, accuracy=lambda x: 0.9, noise=0.003, seed=0):
    """One trial row per (method gradnorm at STRENGTHS + baseline, seed); columns are functions
    of log10 strength (-inf for the baseline) plus seed noise of sd `noise`."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, strengths in (("none", (0.0,)), ("gradnorm", STRENGTHS)):
        for s in strengths:
            x = np.log10(s) if s > 0 else -np.inf
            for seed_ in SEEDS:
                a = alignment(x) + noise * rng.standard_normal()
                r = rho2(x) + noise * rng.standard_normal()
                rows.append({
                    "dataset": "d", "model": "cnn", "method": method, "strength": s,
                    "seed": seed_, "status": "completed",
                    "test_accuracy": accuracy(x), "rho2": r, study.OFF_ON: r / 2,
                    study.SIGNAL_DISTRACTOR: 1.0 + max(x, -2) + 2 + 0.01 * rng.standard_normal(),
                    PRED: a, SUM: a, study.rho2_col("pred_logit"): r,
                    study.rho2_col("logit_sum"): r,
                })  # fmt: skip
    return pd.DataFrame(rows)


def labels(df, regime="bayes_aligned"):
    out = df[["dataset", "method", "strength"]].copy()
    out["regime_paper"] = out["regime_scale_free"] = regime
    return out


def peaked(x):  # baseline 0.50, maximum 0.60 at strength 1, falls to 0.40 at 100
    return np.where(np.isinf(x), 0.5, 0.6 - 0.05 * x**2)


def f2(df, regime="bayes_aligned"):
    out = study.finding_2(df, labels(df, regime), np.random.default_rng(0), n_boot=200)
    return out[(out["gradient"] == "pred_logit")].iloc[0]


def test_interior_peak_is_found_with_its_gain_and_holds():
    r = f2(frame(peaked))
    assert r["peak_strength"] == 1.0 and r["position"] == "interior"
    assert r["gain"] == pytest.approx(0.1, abs=0.01) and r["gain_ci_low"] > 0
    assert r["fall"] == pytest.approx(0.2, abs=0.01) and r["fall_ci_low"] > 0
    assert r["verdict"] == uncertainty.HOLDS
    assert len(r["gain_per_seed"].split(",")) == len(SEEDS)  # per-seed values in the table


def test_the_regime_is_reported_but_does_not_decide_the_peak_test():
    r = f2(frame(peaked), regime="excessive")
    assert r["regime_paper"] == r["regime_scale_free"] == "excessive"
    assert r["verdict"] == uncertainty.HOLDS


def test_a_peak_at_the_edge_of_the_grid_is_reported_as_such():
    # rises from the baseline up to the smallest swept strength, then falls: the true peak
    # may lie below the grid (RESULTS.md: gradnorm lambda 0.01 on the curved set)
    r = f2(frame(lambda x: np.where(np.isinf(x), 0.4, 0.6 - 0.03 * (x + 2))))
    assert r["peak_strength"] == STRENGTHS[0] and r["gain_ci_low"] > 0 and r["fall_ci_low"] > 0
    assert r["position"] == f"{study.EDGE} (lowest swept strength)"
    assert r["verdict"] == uncertainty.UNSURE
    top = f2(frame(lambda x: np.where(np.isinf(x), 0.4, 0.5 + 0.03 * x)))
    assert top["position"] == f"{study.EDGE} (largest swept strength)"
    assert top["verdict"] == uncertainty.UNSURE
    table = verdicts.verdict_table(_tables(f2_rows=[r]))
    assert "at the edge of the grid" in table["numbers"].iloc[0]


def test_alignment_falling_from_the_baseline_does_not_hold():
    r = f2(frame(lambda x: np.where(np.isinf(x), 0.6, 0.55 - 0.02 * (x + 2))))
    assert r["peak_strength"] == STRENGTHS[0]  # the best robust model, still below baseline
    assert r["gain"] == pytest.approx(-0.05, abs=0.01) and r["gain_ci_high"] < 0
    assert r["verdict"] == uncertainty.FAILS


def test_peak_gain_is_chosen_leave_one_seed_out():
    # Each seed has a spike at a different strength and is flat (= its baseline) elsewhere:
    # picking each seed's own maximum would report a gain of 0.1; scored at the other seeds'
    # peak, every seed's gain is 0.
    rows = frame(lambda x: np.full_like(np.asarray(x, float), 0.5), noise=0.0)
    for seed_, s in zip(SEEDS, (0.1, 1.0, 10.0, 0.1, 1.0, 10.0), strict=True):
        hit = (rows["seed"] == seed_) & (rows["strength"] == s) & (rows["method"] == "gradnorm")
        rows.loc[hit, PRED] = 0.6
    r = f2(rows)
    assert r["gain"] == pytest.approx(0.0, abs=1e-12)
    assert r["verdict"] != uncertainty.HOLDS


def test_peak_interval_uses_its_confidence_level():
    rng = np.random.default_rng(0)
    curves = pd.DataFrame(rng.standard_normal((5, 6)), index=[0.1, 0.3, 1.0, 3.0, 10.0])
    wide = uncertainty.argmax_interval(curves, np.random.default_rng(1), 400, 0.95)
    narrow = uncertainty.argmax_interval(curves, np.random.default_rng(1), 400, 0.2)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1] and wide != narrow


def test_f1_rho2_falling_while_accuracy_holds():
    df = frame(peaked, rho2=lambda x: np.where(np.isinf(x), 0.6, 0.5 - 0.05 * x),
               accuracy=lambda x: np.where(x > 1.2, 0.5, 0.9))  # fmt: skip
    out = study.finding_1(df)
    r = out[out["quantity"] == "rho2 change"].iloc[0]
    assert r["strength"] == pytest.approx(10.0)  # largest strength that keeps accuracy
    assert r["estimate"] == pytest.approx(0.5 - 0.05 - 0.6, abs=0.01)
    assert set(out["verdict"]) == {uncertainty.HOLDS}
    assert set(out["role"]) == {"test", "support"}


def test_f1_rho2_rising_does_not_hold():
    out = study.finding_1(frame(peaked, rho2=lambda x: np.where(np.isinf(x), 0.3, 0.4 + 0.01 * x)))
    assert set(out["verdict"]) == {uncertainty.FAILS}


def test_f1_tests_every_tangent_estimator_and_needs_all_of_them():
    df = frame(peaked, rho2=lambda x: np.where(np.isinf(x), 0.6, 0.4))
    df["rho2@ae"] = df["rho2"]
    df["rho2@local-pca"] = df["rho2"].where(df["method"] == "none", 0.7)  # rises here
    out = study.finding_1(df)
    tested = out[out["role"] == "test"].set_index("tangent")["verdict"]
    assert tested.to_dict() == {"ae": uncertainty.HOLDS, "local-pca": uncertainty.FAILS}
    line = verdicts.verdict_table(_tables(f1=out)).iloc[0]
    assert line["verdict"] == uncertainty.FAILS
    # off/on is support: its own verdict does not gate F1
    only_ae = out[out["tangent"] != "local-pca"]
    only_ae.loc[only_ae["role"] == "support", ["estimate", "p_value"]] = (0.5, 1e-9)
    assert verdicts.verdict_table(_tables(f1=only_ae)).iloc[0]["verdict"] == uncertainty.HOLDS
    # on an oracle set the exact tangents are the estimator
    exact = df.assign(rho2_exact=df["rho2"])
    assert set(study.finding_1(exact).query("role == 'test'")["tangent"]) == {"exact"}


def test_f3_reads_the_change_of_the_signal_distractor_ratio():
    out = study.finding_3(frame(peaked)).iloc[0]
    # ratio 1 + x + 2 at x = 2 (strength 100, accurate) over the baseline's 1 + (-2) + 2 = 1
    assert out["estimate"] == pytest.approx(np.log(5.0), abs=0.02)
    assert out["verdict"] == uncertainty.HOLDS


def planted_link(within: float, confound: float, seed: int = 0) -> pd.DataFrame:
    """rho2 and alignment with no effect of the strength knob on average: within a seed,
    alignment = -within * rho2-deviation + noise; across seeds, every trial of seed s (its
    baseline too) is shifted by c_s in rho2 and by -c_s in alignment (`confound`)."""
    df = frame(lambda x: np.zeros_like(np.asarray(x, float)), noise=0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    dev = rng.standard_normal(len(df))
    shift = df["seed"].map({s: confound * (s - 2.5) for s in SEEDS})
    rho2 = 0.5 + 0.05 * dev + shift
    align = 0.5 - within * 0.05 * dev + 0.02 * rng.standard_normal(len(df)) - shift
    return df.assign(**{study.rho2_col("pred_logit"): rho2, PRED: align})


def _link_row(df, test):
    out = study.link(df, np.random.default_rng(0), n_boot=100)
    return out[(out["scope"] == "all trials") & (out["test"] == test)
               & (out["quantity"] == "rho2") & (out["gradient"] == "pred_logit")].iloc[0]


def test_a_link_planted_within_seeds_is_found_with_its_sign():
    for test in study.LINK_TESTS:
        r = _link_row(planted_link(within=1.0, confound=0.0), test)
        assert r["spearman"] < -0.3 and r["ci_high"] < 0 and r["verdict"] == uncertainty.HOLDS
        assert r["n_seeds"] == len(SEEDS) and len(r["per_seed"].split(",")) == len(SEEDS)
        flipped = _link_row(planted_link(within=-1.0, confound=0.0), test)
        assert flipped["spearman"] > 0.3 and flipped["verdict"] == uncertainty.FAILS


def test_a_confound_across_seeds_does_not_make_the_link_hold():
    df = planted_link(within=0.0, confound=0.2)
    pooled = stats.spearmanr(df[study.rho2_col("pred_logit")], df[PRED]).statistic
    assert pooled < -0.8  # what pooling trials over seeds (the old link) would have reported
    for test in study.LINK_TESTS:
        assert _link_row(df, test)["verdict"] != uncertainty.HOLDS


def test_link_beyond_the_knob_removes_what_the_strength_explains():
    # rho2 falls and alignment rises with strength, with no within-cell association: the
    # within-seed Spearman finds the knob's link, the residual test finds nothing
    def align(x):
        return np.where(np.isinf(x), 0.3, 0.5 + 0.05 * x)

    df = frame(align, rho2=lambda x: np.where(np.isinf(x), 0.9, 0.5 - 0.1 * x), noise=0.01)
    assert _link_row(df, "within seeds")["verdict"] == uncertainty.HOLDS
    assert _link_row(df, "beyond the knob")["verdict"] != uncertainty.HOLDS


def test_t_interval_is_scipys_student_t():
    est = uncertainty.t_interval([1.0, 2.0, 3.0])
    assert (est.estimate, est.n) == (2.0, 3)
    assert est.high - est.estimate == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))
    assert est.p_value == pytest.approx(stats.ttest_1samp([1.0, 2.0, 3.0], 0).pvalue)
    assert uncertainty.verdict(est.estimate, est.p_value, +1) == uncertainty.UNSURE  # 2 +- 2.48
    assert uncertainty.side(est.low, est.high, +1) == uncertainty.UNSURE


def test_holm_adjusts_step_down_and_flips_a_borderline_verdict():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    assert uncertainty.holm(p)[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(uncertainty.holm(p)[3])
    # three F3 verdicts, each "holds" alone at p < 0.05; corrected (x3, x2, x1 step-down), the
    # two borderline ones (0.03 -> 0.06) are not; a clear one stays
    f3 = pd.DataFrame({"dataset": "d", "method": ["a", "b", "c"], "quantity": "q",
                       "estimate": [1.0, 1.0, 1.0], "ci_low": 0.1, "ci_high": 2.0,
                       "p_value": [0.001, 0.03, 0.03], "strength": 1.0})  # fmt: skip
    table = verdicts.verdict_table(_tables(f3=f3)).set_index("method / pair")
    assert (table["verdict uncorrected"] == uncertainty.HOLDS).all()
    assert table.loc["a", "verdict"] == uncertainty.HOLDS
    assert table.loc[["b", "c"], "verdict"].tolist() == [uncertainty.UNSURE, uncertainty.UNSURE]
    assert table.loc[["b", "c"], "p (Holm)"].tolist() == pytest.approx([0.06, 0.06])
    assert "3 verdicts: 1 holds, 0 does not hold, 2 inconclusive, 0 not testable" in (
        verdicts.summary_counts(table.reset_index()))


def test_report_and_study_give_identical_link_intervals():
    df = planted_link(within=1.0, confound=0.1)
    report = df.assign(alignment=df[PRED], rho2=df[study.rho2_col("pred_logit")],
                       alignment_metric="cosine", alignment_gradient="pred_logit")  # fmt: skip
    r = alignment_correlation(report, rng=np.random.default_rng(5), n_boot=100,
                              quantity="rho2").iloc[0]  # fmt: skip
    s = _link_row(df, "within seeds")
    assert r["scope"] == "all" and r["n_seeds"] == s["n_seeds"] == len(SEEDS)
    assert (r["spearman_rho"], r["ci_low"], r["ci_high"], r["p_value"]) == (
        s["spearman"], s["ci_low"], s["ci_high"], s["p_value"])
    assert r["per_seed"] == s["per_seed"]


def _tables(f1=None, f2_rows=(), f3=None, link=None) -> dict:
    empty = pd.DataFrame(columns=["dataset", "method", "role", "quantity", "estimate",
                                  "p_value", "ci_low", "ci_high", "strength", "tangent"])
    link_cols = ["dataset", "role", "test", "yardstick", "gradient", "reference", "spearman",
                 "p_value", "ci_low", "ci_high", "n_seeds", "per_seed", "verdict"]
    return {
        "f1": empty if f1 is None else f1,
        "f2": pd.DataFrame(list(f2_rows)),
        "f3": empty if f3 is None else f3,
        "link": pd.DataFrame(columns=link_cols) if link is None else link,
    }


def test_study_frame_reads_rho2_under_every_tangent_estimator():
    """The tangent interface (HELPERS.md): measures rows with a `tangent` name give
    `rho2@<name>` of the headline gradient (the one rho1 is measured for); the headline rows
    (tangent "", or else the estimator trials.rho2 reports) give `rho2:<gradient>`."""
    from analysis.load import Results

    trials = pd.DataFrame({"config_id": ["a", "b"], "status": "completed", "method": "none",
                           "strength": 0.0, "seed": [0, 1], "dataset": "d",
                           "rho2": [0.5, 0.6]})  # fmt: skip
    rows = []
    for cid, r in (("a", 0.5), ("b", 0.6)):
        rows.append(dict(config_id=cid, epoch=1, measure="rho1", gradient="log_prob", value=r))
        for tangent, v in (("ae", r), ("local-pca", r - 0.2)):
            for g, shift in (("log_prob", 0.0), ("pred_logit", 0.1)):
                rows.append(dict(config_id=cid, epoch=1, measure="rho2", gradient=g,
                                 value=v + shift, tangent=tangent))  # fmt: skip
    measures = pd.DataFrame(rows).assign(reference="", metric="")
    df = study.study_frame(Results(trials, measures, ()))
    assert df["rho2@local-pca"].tolist() == pytest.approx([0.3, 0.4])  # log_prob's, not pred's
    assert df["rho2:pred_logit"].tolist() == pytest.approx([0.6, 0.7])  # "ae" is the headline
    assert study.rho2_estimators(df) == [("rho2@ae", "ae"), ("rho2@local-pca", "local-pca")]
