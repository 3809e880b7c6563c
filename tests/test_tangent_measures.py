"""rho2 and on/off sensitivity under every tangent estimate, and the estimator-free split of
rho2 on digits (trainables/measure/tangent_measures.py)."""

import pandas as pd
import pytest
import torch

import trainables.measure.artifacts as art_mod
from analysis.results import tables
from tests.test_measure_rho import BayesClassifier
from trainables.config import TrialConfig
from trainables.data import load_dataset
from trainables.data.digits import upsampling_basis
from trainables.measure.evaluate import build_measurer
from trainables.measure.protocol import headline_for
from trainables.measure.tangent_estimators import ESTIMATORS, HEADLINE
from trainables.measure.tangent_measures import basis_outside_span, gradient_split, usable


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setitem(art_mod.AE_MAX_EPOCHS, "synthetic-manifold", 15)
    mp.setitem(art_mod.DENOISER_MAX_EPOCHS, "synthetic-manifold", 8)
    cfg = TrialConfig.from_dict({"dataset": "synthetic-manifold", "eval_points": 32,
                                 "noise_draws": 2})  # fmt: skip
    bundle = load_dataset("synthetic-manifold", 0)
    art = art_mod.prepare_artifacts(cfg, str(tmp_path_factory.mktemp("cache")), bundle,
                                    log=lambda *_: None)  # fmt: skip
    yield cfg, bundle, art
    mp.undo()


def test_every_estimate_is_kept_and_measured(linear):
    cfg, bundle, art = linear
    assert set(art.tangents) == set(ESTIMATORS)  # the oracle set keeps "exact" too
    assert torch.equal(art.tangents[HEADLINE], art.tangent)
    # kept through the cache: a reload gives the same bases
    again = art_mod.load_artifacts(art.path)
    for name, q in art.tangents.items():
        assert torch.equal(again.tangents[name], q), name
    summary, rows = build_measurer(cfg, bundle, torch.device("cpu"), art)(
        BayesClassifier(bundle.oracle), epoch=1
    )
    df = tables.coerce(pd.DataFrame(rows).assign(config_id=cfg.config_id), "measures")
    head = headline_for(cfg.dataset).gradient  # the gradient rho2 is measured on
    r2 = df[(df.measure == "rho2") & (df.gradient == head)].set_index("tangent")["value"]
    assert set(r2.index) == set(ESTIMATORS)
    assert r2[HEADLINE] == pytest.approx(summary["rho2"])
    assert r2["exact"] == pytest.approx(summary["rho2_exact"])
    assert summary["rho2_tangent_spread"] == pytest.approx(r2.max() - r2.min())
    for kind in ("on", "off"):
        sens = df[(df.measure == f"{kind}_manifold_sensitivity") & (df.eps == summary[
            "reference_eps"])].set_index("tangent")["value"]  # fmt: skip
        assert set(sens.index) == set(ESTIMATORS)
    # The Bayes classifier's gradient lies on the flat manifold: under the exact tangents
    # rho2 is 0, and every estimate within a few degrees of them reads close to it.
    assert r2["exact"] < 1e-6
    overlap = df[(df.measure == "tangent_overlap") & (df.reference == "exact")]
    overlap = overlap.set_index("tangent")["value"]
    for name in overlap.index[overlap > 0.999]:
        assert r2[name] < 0.02, (name, r2[name])
    assert summary["tangent_exact_overlap"] == pytest.approx(overlap[HEADLINE])
    assert summary["tangent_seed_overlap"] > 0.99  # the flat set: both seeds find it
    assert pd.isna(summary["rho2_floor"])  # no exactly known span on this set


def test_upsampling_span_holds_every_digit_half():
    """The digits' halves lie in the 64-dimensional span (up to the uint8 rounding, 1/510);
    another upsampling (align_corners=True) fails the bound (it leaves 5% of their norm out)."""
    bundle = load_dataset("digits-distractor", 0)
    x, mask = bundle.test.tensors[0][:50], bundle.signal_mask_test[:50]
    halves = x.reshape(50, -1)[mask.reshape(50, -1)].view(50, -1).double()
    u = upsampling_basis()
    assert u.shape == (196, 64)
    residual = halves - (halves @ u) @ u.T
    assert residual.abs().max() < 1 / 255
    wrong = torch.nn.functional.interpolate(torch.eye(64, dtype=torch.float64).view(64, 1, 8, 8),
                                            size=(14, 14), mode="bilinear", align_corners=True)
    w = torch.linalg.qr(wrong.view(64, -1).T).Q
    assert (halves - (halves @ w) @ w.T).abs().max() > 0.1


def test_gradient_split_shares():
    bundle = load_dataset("digits-distractor", 0)
    mask = bundle.signal_mask_test[:3]
    u = upsampling_basis()
    g = torch.zeros(3, 1, 28, 14, dtype=torch.float64)
    g[0][mask[0]] = u[:, 0]  # in the span
    g[1][~mask[1]] = 1.0  # on the distractor half
    g[2] = torch.randn(1, 28, 14, generator=torch.Generator().manual_seed(0), dtype=g.dtype)
    s = gradient_split(g, mask, u)
    assert s["gradient_in_span_share"][0] == pytest.approx(1.0)
    assert s["gradient_distractor_share"][1] == pytest.approx(1.0)
    total = sum(s.values())
    torch.testing.assert_close(total, torch.ones(3, dtype=torch.float64))
    # a random gradient: half its energy on the distractor, (196 - 64) / 392 outside the span
    assert float(s["gradient_outside_span_share"][2]) == pytest.approx(132 / 392, abs=0.08)
    # no known span (mnist-distractor): nothing is outside it
    assert float(gradient_split(g, mask, None)["gradient_outside_span_share"].abs().max()) < 1e-12


def test_a_jacobian_without_an_eigenvalue_gap_is_not_measured_under():
    assert not usable("denoiser-jacobian", {"jacobian_eigenvalue_gap": 0.003})  # digits
    assert usable("denoiser-jacobian", {"jacobian_eigenvalue_gap": 0.26})  # curved
    assert not usable("denoiser-jacobian", {})
    assert usable("local-pca", {})


def test_basis_outside_span_reads_zero_for_a_basis_in_the_span_and_one_on_the_distractor():
    bundle = load_dataset("digits-distractor", 0)
    mask = bundle.signal_mask_test[:2]
    u = upsampling_basis()
    q = torch.zeros(2, 392, 4, dtype=torch.float64)
    q[0][mask[0].reshape(-1)] = u[:, :4]  # a tangent space inside the span
    distractor = (~mask[1].reshape(-1)).nonzero().squeeze(1)[:4]
    q[1][distractor, torch.arange(4)] = 1.0  # four pixels of the fixed glyph
    out = basis_outside_span(q, mask, u)
    assert float(out[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(out[1]) == pytest.approx(1.0)
