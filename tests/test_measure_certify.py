"""Randomized-smoothing certification (trainables/measure/certify.py) against what Cohen,
Rosenfeld & Kolter (2019) prove: closed-form radii for classifiers whose smoothed version is
known exactly."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch import nn

from trainables.measure.certify import ABSTAIN, radius_ladder, smooth_and_certify


class _Constant(nn.Module):
    """Class `c` everywhere: constant in every ball, so every noisy copy votes for c."""

    def __init__(self, c: int, k: int = 3):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x):
        out = torch.zeros(len(x), self.k)
        out[:, self.c] = 1.0
        return out


class _HalfSpace(nn.Module):
    """Class 1 where w.x > b, else 0 (|w| = 1). Its smoothed classifier is itself, and
    P(f(x + delta) = class of x) = Phi(dist / sigma): Cohen's radius sigma * Phi^-1(pA) is the
    distance to the hyperplane exactly when pA is known (their Example / Theorem 1 tightness)."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w.flatten(), b

    def forward(self, x):
        s = (x.flatten(1) @ self.w > self.b).float()
        return torch.stack([1 - s, s], 1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n, alpha, sigma", [(100, 0.001, 0.25), (1000, 0.001, 0.5),
                                             (500, 0.01, 0.12)])  # fmt: skip
def test_constant_classifier_radius_is_sigma_phi_inv_of_clopper_pearson(n, alpha, sigma):
    """All n votes for c: the one-sided Clopper-Pearson lower bound at k = n is alpha^(1/n) in
    closed form, so CERTIFY's radius is sigma * Phi^-1(alpha^(1/n)) at every point."""
    x = torch.rand(5, 1, 4, 4, generator=_gen())
    cert = smooth_and_certify(_Constant(2), x, sigma, 3, _gen(), n0=10, n=n, alpha=alpha)
    expected = sigma * norm.ppf(alpha ** (1 / n))
    assert torch.equal(cert.certified, torch.full((5,), 2))
    torch.testing.assert_close(cert.radius, torch.full((5,), expected, dtype=torch.float64))
    assert torch.equal(cert.predicted, torch.full((5,), 2))


def test_too_few_draws_always_abstain():
    """n = 5, alpha = 0.001: even 5 of 5 votes give pA_lower = 0.001^(1/5) = 0.25 < 1/2."""
    x = torch.rand(4, 1, 4, 4, generator=_gen())
    cert = smooth_and_certify(_Constant(1), x, 0.25, 3, _gen(), n0=5, n=5, alpha=0.001)
    assert torch.equal(cert.certified, torch.full((4,), ABSTAIN))
    assert torch.isnan(cert.radius).all()
    assert float(cert.certify_abstained().mean()) == 1.0


def _half_space_points(m=40):
    gen = _gen(1)
    w = torch.randn(1, 4, 4, generator=gen)
    w = w / w.norm()
    x = torch.rand(m, 1, 4, 4, generator=gen)
    b = float((x.flatten(1) @ w.flatten()).median())
    y = (x.flatten(1) @ w.flatten() > b).long()
    dist = (x.flatten(1) @ w.flatten() - b).abs().double()
    return _HalfSpace(w, b), x, y, dist


def test_half_space_radius_is_the_distance_to_the_hyperplane():
    """With many draws Cohen's radius approaches the exact distance from below: never above it
    (w.p. 1 - alpha per point) and within the bound's slack of it."""
    model, x, y, dist = _half_space_points()
    sigma = 0.25
    cert = smooth_and_certify(model, x, sigma, 2, _gen(), n0=100, n=20000, alpha=0.001)
    ok = cert.certified != ABSTAIN
    assert ok.sum() >= 30
    assert torch.equal(cert.certified[ok], y[ok])
    r, d = cert.radius[ok], dist[ok]
    assert (r <= d + 1e-9).all()
    # the bound's slack: at n = 20000, pA_lower is within ~0.01 of pA
    assert (d - r).max() < 0.08, (d - r).max()


def test_certified_accuracy_never_exceeds_smoothed_accuracy_and_falls_with_radius():
    model, x, y, _ = _half_space_points(60)
    cert = smooth_and_certify(model, x, 0.25, 2, _gen(), n0=100, n=2000, alpha=0.001)
    smoothed = float(cert.smoothed_correct(y).mean())
    accs = [float(cert.certified_correct(y, r).mean()) for r in radius_ladder(16 * 12)]
    assert accs[0] <= smoothed
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False))
    assert accs[-1] < accs[0]


def test_abstention_grows_as_n_shrinks():
    model, x, y, _ = _half_space_points(60)
    rates = []
    for n in (30, 300, 3000):
        cert = smooth_and_certify(model, x, 0.25, 2, _gen(), n0=100, n=n, alpha=0.001)
        rates.append((float(cert.certify_abstained().mean()),
                      float(cert.predict_abstained().mean())))  # fmt: skip
    assert rates[0][0] > rates[1][0] > rates[2][0]
    assert rates[0][1] > rates[1][1] > rates[2][1]
