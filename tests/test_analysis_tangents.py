"""The report's tangent-estimate tables (analysis/tangent_report.py) from measures rows."""

import math

import pandas as pd
import pytest

from analysis.tangent_report import agreement_table, rho2_by_estimate


def _row(cid, measure, value, tangent="", reference="", gradient="", epoch=2):
    return dict(config_id=cid, epoch=epoch, measure=measure, eps=math.nan, value=value, std=0.0,
                n=10, gradient=gradient, reference=reference, metric="", tangent=tangent)


def _tables():
    trials = pd.DataFrame({"config_id": ["a", "b", "c"], "dataset": "digits-distractor",
                           "method": ["gradnorm", "gradnorm", "none"],
                           "strength": [1.0, 1.0, 0.0]})  # fmt: skip
    rows = []
    for cid, shift in (("a", 0.0), ("b", 0.1), ("c", 0.2)):
        for name, v in (("ae", 0.5), ("ae-seed1", 0.6), ("local-pca", 0.8)):
            rows.append(_row(cid, "rho2", v + shift, name, gradient="pred_logit"))
            rows.append(_row(cid, "rho2", 0.0, name, gradient="pred_logit", epoch=1))  # older
        rows.append(_row(cid, "rho2", 0.9, "ae", gradient="logit_sum"))  # not every estimate
        rows.append(_row(cid, "gradient_distractor_share", 0.2, gradient="pred_logit"))
        rows.append(_row(cid, "gradient_outside_span_share", 0.1, gradient="pred_logit"))
        rows.append(_row(cid, "gradient_in_span_share", 0.7, gradient="pred_logit"))
        rows.append(_row(cid, "tangent_overlap", 0.7, "ae", "ae-seed1"))
        rows.append(_row(cid, "tangent_overlap", 0.5, "ae", "local-pca"))
        rows.append(_row(cid, "tangent_overlap", 0.4, "ae-seed1", "local-pca"))
        rows.append(_row(cid, "tangent_largest_angle", 80.0, "ae", "ae-seed1"))
        rows.append(_row(cid, "tangent_build_time", 12.0, "local-pca"))
        rows.append(_row(cid, "tangent_outside_span_share", 0.39, "ae"))
        rows.append(_row(cid, "tangent_outside_span_share", 0.0, "local-pca"))
    return trials, pd.DataFrame(rows)


def test_rho2_per_estimate_with_spread_and_floor():
    trials, measures = _tables()
    t = rho2_by_estimate(trials, measures).set_index(["method", "strength"])
    g = t.loc[("gradnorm", 1.0)]
    assert g["ae"] == pytest.approx(0.55) and g["local-pca"] == pytest.approx(0.85)
    assert g["spread"] == pytest.approx(0.3)
    assert g["floor"] == pytest.approx(0.3) and g["trials"] == 2
    assert t.loc[("none", 0.0), "ae"] == pytest.approx(0.7)
    assert g["below floor"] == ""  # every estimate reads above the floor 0.3


def test_estimates_below_the_exact_floor_are_named():
    trials, measures = _tables()
    share = measures["measure"] == "gradient_distractor_share"
    measures.loc[share, "value"] = 0.58  # floor 0.68: ae (0.55) and ae-seed1 (0.65) below
    g = rho2_by_estimate(trials, measures).set_index(["method", "strength"]).loc[
        ("gradnorm", 1.0)]  # fmt: skip
    assert g["below floor"] == "ae, ae-seed1"


def test_agreement_against_the_headline_without_exact_tangents():
    trials, measures = _tables()
    t = agreement_table(trials, measures).set_index("estimate")
    assert set(t.index) == {"ae", "ae-seed1", "local-pca"}
    assert (t.drop(index="ae")["against"] == "ae").all()
    assert t.loc["ae", "outside span"] == pytest.approx(0.39)
    assert t.loc["local-pca", "outside span"] == pytest.approx(0.0)
    assert t.loc["ae-seed1", "overlap"] == pytest.approx(0.7)
    assert t.loc["ae-seed1", "largest angle"] == pytest.approx(80.0)
    assert t.loc["local-pca", "overlap"] == pytest.approx(0.5)
    assert t.loc["local-pca", "build s"] == pytest.approx(12.0)
    assert pd.isna(t.loc["ae-seed1", "build s"])


def test_tables_without_the_tangent_column_are_empty():
    trials, measures = _tables()
    assert rho2_by_estimate(trials, measures.drop(columns="tangent")).empty
