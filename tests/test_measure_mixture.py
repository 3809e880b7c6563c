"""The mixture-of-local-Gaussians baseline: its closed-form posterior mean against a reference
written from the definition, and its choice of components and rank on data with a known answer.
(Its score against the exact one on the ground-truth sets: tests/test_ground_truth.py.)"""

from __future__ import annotations

import math

import torch

from trainables.measure.mixture import MixtureParams, fit_mixture, posterior_mean


def _random_params(m: int, d: int, r: int, classes: list[int], seed: int) -> MixtureParams:
    g = torch.Generator().manual_seed(seed)
    bases = torch.zeros(m, d, r, dtype=torch.float64)
    variances = torch.zeros(m, r, dtype=torch.float64)
    rest = 0.05 + 0.1 * torch.rand(m, generator=g, dtype=torch.float64)
    for i in range(m):
        used = r - (i % 2)  # odd components: one padded column, as fit_mixture pads them
        q, _ = torch.linalg.qr(torch.randn(d, used, generator=g, dtype=torch.float64))
        bases[i, :, :used] = q
        variances[i] = rest[i]
        variances[i, :used] = 0.5 + torch.rand(used, generator=g, dtype=torch.float64)
    weights = torch.rand(m, generator=g, dtype=torch.float64) + 0.2
    return MixtureParams(
        means=torch.randn(m, d, generator=g, dtype=torch.float64),
        bases=bases,
        variances=variances,
        rest=rest,
        log_weights=(weights / weights.sum()).log(),
        classes=torch.tensor(classes),
    )


def _reference(p: MixtureParams, x: torch.Tensor, sigma: torch.Tensor, y) -> torch.Tensor:
    """E[x0 | x] from full covariance matrices, one point and one component at a time."""
    d = x.shape[1]
    out = []
    for b in range(len(x)):
        s2 = float(sigma[b]) ** 2
        logs, means = [], []
        for m in range(len(p.means)):
            if y is not None and y[b] >= 0 and p.classes[m] != y[b]:
                continue
            v = p.bases[m]
            cov = v @ torch.diag(p.variances[m]) @ v.T + p.rest[m] * (torch.eye(d) - v @ v.T)
            smoothed = cov + s2 * torch.eye(d, dtype=torch.float64)
            dist = torch.distributions.MultivariateNormal(p.means[m], smoothed)
            logs.append(p.log_weights[m] + dist.log_prob(x[b]))
            means.append(p.means[m] + cov @ torch.linalg.solve(smoothed, x[b] - p.means[m]))
        resp = torch.softmax(torch.stack(logs), 0)
        out.append((resp[:, None] * torch.stack(means)).sum(0))
    return torch.stack(out)


def test_posterior_mean_matches_the_full_covariance_reference():
    p = _random_params(4, 6, 3, classes=[0, 0, 1, 2], seed=0)
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(7, 6, generator=g, dtype=torch.float64)
    sigma = 0.2 + torch.rand(7, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, -1, 0, 2, 1])  # -1: no label, every class
    for labels in (None, y):
        got = posterior_mean(p, x, sigma, labels)
        torch.testing.assert_close(got, _reference(p, x, sigma, labels), rtol=1e-9, atol=1e-9)
    # labels matter: class 2's single component vs all four
    assert (posterior_mean(p, x, sigma, y) - posterior_mean(p, x, sigma)).abs().max() > 1e-3


def test_an_unconditional_fit_ignores_labels():
    p = _random_params(3, 5, 2, classes=[-1, -1, -1], seed=2)
    x = torch.randn(4, 5, dtype=torch.float64)
    sigma = torch.full((4,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(
        posterior_mean(p, x, sigma, torch.tensor([0, 1, 2, 0])), posterior_mean(p, x, sigma)
    )


def _images(x: torch.Tensor) -> torch.Tensor:
    return x.float().reshape(len(x), 1, 1, -1)


def test_one_flat_gaussian_is_fitted_by_one_component_of_its_rank():
    """Data from one Gaussian with 3 strong directions in d = 24 (spread 1.0 along them,
    0.05 elsewhere): one component of rank 3 is the truth, and the held-out choice finds it."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(24, 3, generator=g, dtype=torch.float64))
    x = torch.randn(1500, 3, generator=g, dtype=torch.float64) @ q.T
    x = x + 0.05 * torch.randn(1500, 24, generator=g, dtype=torch.float64)
    p, chosen = fit_mixture(_images(x), None, 0, sigma=0.1, seed=0)
    assert chosen[0][0] == 1 and chosen[0][1] >= 3, chosen  # RANKS has 4, not 3
    # the fitted strong directions span the true ones
    v = p.bases[0, :, :3].double()
    assert torch.linalg.svdvals(q.T @ v).min() > 0.99


def test_separated_clusters_get_one_component_each():
    """Eight tight clusters far apart (distance ~ 6, spread 0.1): one Gaussian cannot model
    them; the choice goes to at least eight components, and each class of a labelled fit gets
    its own."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(8, 16, generator=g, dtype=torch.float64)
    labels = torch.arange(8).repeat_interleave(150)
    x = centres[labels] + 0.1 * torch.randn(1200, 16, generator=g, dtype=torch.float64)
    _, chosen = fit_mixture(_images(x), None, 0, sigma=0.1, seed=0)
    assert chosen[0][0] >= 8, chosen
    y = labels % 2  # two classes of four clusters each
    p, chosen = fit_mixture(_images(x), y, 2, sigma=0.1, seed=0)
    assert len(chosen) == 2 and all(k >= 4 for k, _ in chosen), chosen
    assert sorted(p.classes.unique().tolist()) == [0, 1]
    assert math.isclose(float(p.log_weights.exp().sum()), 1.0, rel_tol=1e-5)
