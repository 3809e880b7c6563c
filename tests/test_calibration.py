"""Calibration of alignment yardsticks (analysis.calibration, trainables.measure.calibration):
planted broken metrics must fail the rule that a working one passes, and the rule picks the
headline. Exact scores of the linear oracle set stand in for the denoiser (no training)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from torch import nn

from analysis.calibration import calibration_table
from analysis.results.calibration import BAYES_EST, LADDER_SNRS, choose_headline, judge
from trainables.data import load_dataset
from trainables.measure.bayes import exact_bayes_gradient
from trainables.measure.calibration import calibrate, verdicts
from trainables.measure.perceptual import scale_maxabs

try:
    from score_oracles import ExactScore
except ImportError:  # run from the repository root
    from tests.score_oracles import ExactScore


class PlantedMetric:
    """A `PerceptualMetric` stand-in: distance(a, b) = 1 - similarity(a, b), per image."""

    def __init__(self, name, similarity):
        self.name, self.similarity = name, similarity

    def distances(self, maps, pairs):
        return {(a, b): 1 - self.similarity(maps[a], maps[b]) for a, b in pairs}


def _cos(a, b):
    return nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def sign_blind(a, b):
    """Cosine of |a| and |b|: blind to the sign of either map."""
    return _cos(a.abs(), b.abs())


def noise_rewarding(a, b):
    """Rewards rough maps: mean |difference of neighbouring pixels| of the (max-abs scaled)
    probe, which grows as noise is added, whatever b is."""
    return (a[..., 1:] - a[..., :-1]).abs().flatten(1).mean(1)


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    bundle = load_dataset("synthetic-manifold", 0)
    x, y = bundle.test.tensors[0][:64], bundle.test.tensors[1][:64]
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 32), nn.Tanh(), nn.Linear(32, 3))
    return bundle.oracle, x, y, ExactScore(bundle.oracle), model


def _rows(linear, metric):
    oracle, x, y, score, model = linear
    return calibrate(score, x, y, oracle, 0.25, model, metric, metric.name)


def test_cosine_calibrates_and_sign_blind_metric_does_not(linear):
    rows = _rows(linear, PlantedMetric("sign-blind", sign_blind))
    ok = verdicts(rows, oracle=True)
    assert ok[("cosine", BAYES_EST)] and ok[("cosine", "bayes_exact")]
    table = calibration_table(pd.DataFrame(rows).assign(dataset="synthetic-manifold"))
    blind = table[table.metric == "sign-blind"]
    assert len(blind) == 5 and not blind.calibrated.any()
    assert blind.reason.str.contains("negated target").all()
    # a sign-blind metric sees the negated target as the target itself
    assert (blind.negated > 0.999).all()


def test_noise_rewarding_metric_fails_the_ladder(linear):
    rows = _rows(linear, PlantedMetric("noisy", noise_rewarding))
    table = calibration_table(pd.DataFrame(rows).assign(dataset="synthetic-manifold"))
    noisy = table[table.metric == "noisy"].set_index("reference")
    assert not noisy.calibrated.any()
    assert noisy.reason.str.contains("noise ladder").all()
    rung = noisy.loc[BAYES_EST, [f"ladder@{s:g}" for s in LADDER_SNRS]].to_numpy(float)
    assert rung[0] < rung[1] < rung[2]  # it rises as the noise grows


def test_judge_needs_every_part_of_the_rule():
    good = {"ladder@3": 0.9, "ladder@1": 0.7, "ladder@0.3": 0.3, "negated": -1.0,
            "null_input": 0.1, "null_noise": 0.0, "null_other_point": 0.05,
            "null_random_init": 0.0, "bayes_exact": 0.8}  # fmt: skip
    assert judge(good, oracle=True) == (True, "")
    assert not judge({**good, "ladder@1": 0.95}, oracle=True)[0]
    assert not judge({**good, "negated": 0.1}, oracle=True)[0]  # ties a null
    assert not judge({**good, "bayes_exact": 0.04}, oracle=True)[0]
    assert judge({**good, "bayes_exact": 0.04}, oracle=False)[0]


def test_headline_rule():
    stl = "stlpips-alex@x3"
    assert choose_headline({(stl, "score"): True}, stl, ("pred_logit", "score"), True)[:3] == (
        "pred_logit", "score", stl)  # fmt: skip
    assert choose_headline({(stl, BAYES_EST): True}, stl, ("pred_logit", "score"), True)[:3] == (
        "log_prob", BAYES_EST, stl)  # fmt: skip
    g, ref, metric, why = choose_headline({}, stl, ("pred_logit", "score"), True)
    assert (g, ref, metric) == ("log_prob", BAYES_EST, "cosine") and stl in why


def test_exact_bayes_gradient_is_grad_log_softmax(linear):
    """Finite differences of log p(y|x) (the log-softmaxed Bayes logits) on the linear set."""
    oracle, x, y, *_ = linear
    x64 = x[:4].double()
    g = exact_bayes_gradient(oracle, x64, y[:4])
    v = torch.randn_like(x64)
    h = 1e-5

    def logp(z):
        return oracle.bayes_logits(z).log_softmax(1).gather(1, y[:4, None])[:, 0]

    fd = (logp(x64 + h * v) - logp(x64 - h * v)) / (2 * h)
    torch.testing.assert_close((g * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-7)
    # and it is not the unnormalized logit's gradient (they differ by grad logsumexp)
    assert not torch.allclose(g, oracle.bayes_logit_grad(x64, y[:4]), atol=1e-3)
    assert math.isfinite(float(scale_maxabs(g).abs().max()))


def _calibration_rows(cid: str, metric: str, negated: float) -> list[dict]:
    """The probes of one yardstick (metric, "score"): a falling ladder, nulls at 0.1-0.3."""
    values = {("ladder", 3.0): 0.9, ("ladder", 1.0): 0.7, ("ladder", 0.3): 0.4,
              ("negated", math.nan): negated, ("null_input", math.nan): 0.3,
              ("null_noise", math.nan): 0.1, ("null_other_point", math.nan): 0.2,
              ("null_random_init", math.nan): 0.1}  # fmt: skip
    return [{"config_id": cid, "epoch": 3, "measure": "calibration", "eps": eps, "value": v,
             "std": 0.0, "n": 64, "gradient": probe, "reference": "score", "metric": metric}
            for (probe, eps), v in values.items()]  # fmt: skip


def test_report_prints_the_table_and_sets_uncalibrated_findings_apart(tmp_path):
    """`pags analyze`'s report: the fakes' headline is stlpips-alex against the score; with a
    sign-blind calibration (negated target 0.97) every finding on it is not testable."""
    try:
        from test_analysis_fakes import make_tables, write_results
    except ImportError:
        from tests.test_analysis_fakes import make_tables, write_results
    from analysis.report import write_report

    trials, measures = make_tables(seeds=(0, 1))
    cid = trials["config_id"].iloc[0]
    extra = _calibration_rows(cid, "stlpips-alex", 0.97) + _calibration_rows(cid, "cosine", -1.0)
    write_results(tmp_path, trials, pd.concat([measures, pd.DataFrame(extra)]))
    paths = write_report(tmp_path, n_boot=50)
    table = paths["calibration_text"].read_text()
    assert "| stlpips-alex | score |" in table and "| cosine | score |" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| stlpips-alex") or line.startswith("| cosine")}  # fmt: skip
    assert "FAIL" in rows["stlpips-alex"] and "pass" in rows["cosine"]
    text = paths["markdown"].read_text()
    summary = text.split("## Calibration of the alignment yardsticks")[0]
    assert "-- stlpips-alex is not calibrated against score on digits" in summary
    assert re.search(r"counted apart\): [1-9]\d* of the findings", summary)
