"""Regime boundaries refitted at every measured step size (analysis.step_sizes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import fit_regimes
from analysis.results import tables
from analysis.step_sizes import boundaries_by_eps, eps_table

try:
    from test_analysis_fakes import make_tables
except ImportError:
    from tests.test_analysis_fakes import make_tables

N_BOOT = 100


def _tables():
    trials, measures = make_tables(methods=("gradnorm",))
    return tables.coerce(trials, "trials"), tables.coerce(measures, "measures")


def test_scaled_sensitivities_keep_the_boundaries():
    """The fakes scale on and off alike with eps (off/on fixed): the paper crossing and the
    scale-free boundaries cannot move, and the headline rank equals `fit_regimes`."""
    trials, measures = _tables()
    by_eps = boundaries_by_eps(trials, measures, rng=np.random.default_rng(0), n_boot=N_BOOT)
    assert sorted(by_eps["eps"].unique()) == [1.0, 2.0, 4.0]
    head = by_eps[by_eps["headline"]]
    assert (head["eps"] == 2.0).all()
    direct = fit_regimes(trials, measures, rng=np.random.default_rng(0), n_boot=N_BOOT)
    key = ["criterion", "boundary"]
    merged = head.merge(direct, on=key, suffixes=("", "_direct"))
    np.testing.assert_allclose(merged["estimate"], merged["estimate_direct"])
    b1 = by_eps[(by_eps["criterion"] == "paper") & (by_eps["boundary"] == "weak_to_bayes_aligned")]
    np.testing.assert_allclose(b1["estimate"], b1["estimate"].iloc[0], rtol=1e-9)
    table = eps_table(by_eps)
    assert list(table.columns[-4:]) == ["eps=1", "eps=2*", "eps=4", "moves"]
    row = table[(table["criterion"] == "paper") & (table["boundary"] == "weak_to_bayes_aligned")]
    assert row["moves"].item() == "no"


def test_a_boundary_that_moves_at_another_step_size_is_flagged():
    """Off-manifold sensitivity staying above on-manifold at the largest step removes the
    paper crossing there: the table must say the boundary moves."""
    trials, measures = _tables()
    big = (measures["measure"] == "off_manifold_sensitivity") & (measures["eps"] == 4.0)
    measures = measures.copy()
    measures.loc[big, "value"] = 5.0  # above on (at most 2 + noise there): never crosses
    by_eps = boundaries_by_eps(trials, measures, rng=np.random.default_rng(0), n_boot=N_BOOT)
    at4 = by_eps[(by_eps["eps"] == 4.0) & (by_eps["criterion"] == "paper")
                 & (by_eps["boundary"] == "weak_to_bayes_aligned")]  # fmt: skip
    assert at4["status"].item() != "ok"
    table = eps_table(by_eps)
    row = table[(table["criterion"] == "paper") & (table["boundary"] == "weak_to_bayes_aligned")]
    assert row["moves"].item() == "yes"
    assert isinstance(table, pd.DataFrame)
