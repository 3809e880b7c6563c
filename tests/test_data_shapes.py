"""synthetic-shapes against independent computations of its exact quantities.

Each check was broken on purpose once (issue 21; the report names the breaks): a flipped sign or
a sigma off by 2 in the score, the distractor tangent put in the signal rows, the Newton step's
sign flipped in the Bayes gradient. The quadrature's numerical error is printed (`-s`).
"""

from __future__ import annotations

import pytest
import torch

from trainables.data import load_dataset
from trainables.data import shapes as S

SIGMA = 0.25  # the set's score sigma (its facts record)


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("synthetic-shapes", seed=0)


@pytest.fixture(scope="module")
def points(bundle):
    """4 clean test images and the same with sigma noise, with their labels."""
    x, y = bundle.test.tensors[0][:4].double(), bundle.test.tensors[1][:4]
    noisy = x + SIGMA * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype
    )
    return torch.cat([x, noisy]), torch.cat([y, y])


def test_the_set_is_rendered_on_its_manifold_seeded_and_overlapping(bundle):
    x, y = bundle.train.tensors
    assert x.shape[1:] == (3, 32, 32) and bundle.shape == (3, 32, 32)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    o = bundle.oracle
    top, bottom = o._halves(x[:16])
    for half, part in ((o.signal, top), (o.distractor, bottom)):  # exactly rendered images
        z = half.mode(part, 0.0)
        assert float((half.renders(z) - part).abs().max()) < 1e-5
    again = load_dataset("synthetic-shapes", seed=0).train.tensors[0]
    other = load_dataset("synthetic-shapes", seed=1).train.tensors[0]
    assert torch.equal(again, x) and not torch.equal(other, x)
    assert bundle.signal_mask_test[0, 0, :16].all() and not bundle.signal_mask_test[0, 0, 16:].any()
    share = S.ambiguous_fraction(o, bundle.test.tensors[0][:100])
    assert 0.2 < share < 0.9, share  # labels overlap: the Bayes gradient is informative


def test_exact_tangents_match_finite_differences_of_the_renderer(bundle):
    """tangent_at(x) spans the renderer's finite-difference derivatives at the data's latents,
    each half in its own rows."""
    g = torch.Generator().manual_seed(3)
    zs, zt = (
        torch.randn(5, 2, generator=g, dtype=torch.float64),
        torch.randn(5, 2, generator=g, dtype=torch.float64),
    )
    o = bundle.oracle
    x = o._join(o.signal.renders(zs)[..., None], o.distractor.renders(zt)[..., None])
    x = x.reshape(5, 3, 32, 32)
    q = o.tangent_at(x)  # (5, 3072, 4)
    h = 1e-5
    for half, z, cols in ((o.signal, zs, slice(0, 2)), (o.distractor, zt, slice(2, 4))):
        for k in range(2):
            dz = torch.zeros(2, dtype=torch.float64)
            dz[k] = h
            fd_half = (half.renders(z + dz) - half.renders(z - dz)) / (2 * h)  # (5, 1536)
            zeros = torch.zeros_like(fd_half)
            parts = (fd_half, zeros) if half is o.signal else (zeros, fd_half)
            fd = o._join(parts[0][..., None], parts[1][..., None]).squeeze(-1)  # (5, 3072)
            torch.testing.assert_close(half.jacobian(z)[..., k], fd_half, atol=1e-7, rtol=1e-6)
            inside = (q[:, :, cols].transpose(1, 2) @ fd[..., None]).squeeze(-1)
            residual = (fd - (q[:, :, cols] @ inside[..., None]).squeeze(-1)).norm(dim=1)
            assert float((residual / fd.norm(dim=1)).max()) < 1e-6


@pytest.mark.parametrize("cond", [False, True], ids=["unconditional", "conditional"])
def test_score_matches_finite_differences_of_the_log_density(bundle, points, cond):
    """score . v against (log p(x + h v) - log p(x - h v)) / 2h, clean and noisy points."""
    o, (x, y) = bundle.oracle, points
    yy = y if cond else None
    score = o.score(x, SIGMA, yy).flatten(1)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = v / v.flatten(1).norm(dim=1)[:, None, None, None]
    h = 1e-3
    fd = (o.log_density(x + h * v, SIGMA, yy) - o.log_density(x - h * v, SIGMA, yy)) / (2 * h)
    along = (score * v.flatten(1)).sum(1)
    err = (along - fd).abs() / score.norm(dim=1)
    print(f"\nscore . v vs finite differences (cond={cond}): max error / |score| {err.max():.2e}")
    assert float(err.max()) < 2e-3, err


def test_score_quadrature_converges_to_a_brute_force_integral(bundle, points):
    """The default Gauss-Hermite rule against a fine trapezoid rule (whitened) and against a
    brute-force Riemann sum on a plain latent box (no Laplace step): the numerical error."""
    o, (x, _) = bundle.oracle, points
    x = x[[1, 5]]  # one clean, one noisy
    top, _ = o._halves(x)
    half = o.signal
    default = (half.posterior_means(top, SIGMA)[:, 0] - top) / SIGMA**2
    fine = (half.posterior_means(top, SIGMA, n=61, radius=12.0)[:, 0] - top) / SIGMA**2
    centre = half.mode(top, SIGMA)
    brute = []
    axis = torch.linspace(-2.0, 2.0, 161, dtype=torch.float64)
    box = torch.cartesian_prod(axis, axis)
    for i in range(len(x)):
        nodes = centre[i] + box
        log_w = torch.cat([
            -(top[i] - half.renders(chunk)).pow(2).sum(1) / (2 * SIGMA**2) - chunk.pow(2).sum(1) / 2
            for chunk in nodes.split(6000)])  # fmt: skip
        r = torch.softmax(log_w, 0)
        edge = r.reshape(161, 161)
        edge_mass = float(edge[[0, -1]].sum() + edge[:, [0, -1]].sum())
        assert edge_mass < 1e-6  # the box holds the posterior (a prior-like tail leaves it)
        mean = sum(
            r[j : j + 6000] @ half.renders(nodes[j : j + 6000]) for j in range(0, len(r), 6000)
        )
        brute.append((mean - top[i]) / SIGMA**2)
    brute = torch.stack(brute)

    def rel(a, b):
        return float(((a - b).norm(dim=1) / b.norm(dim=1)).max())

    print(
        f"\nquadrature error (max relative, a clean and a noisy point): default vs brute force "
        f"{rel(default, brute):.1e}, fine trapezoid vs brute force {rel(fine, brute):.1e}"
    )
    assert rel(fine, brute) < 1e-4
    assert rel(default, brute) < 3e-3


def test_bayes_gradient_matches_the_posterior_it_differentiates(bundle, points):
    """grad_x log p(y | x) (implicit-function autograd) against (a) finite differences of
    log p(y | pi(x)) with pi by the full Gauss-Newton projection, (b) the closed form
    J (J^T J)^-1 grad_z log p(y | z) on the manifold, (c) the sigma -> 0 limit of the smoothed
    posterior's gradient score(x | y) - score(x) (an integral over the latent)."""
    o, (x, y) = bundle.oracle, points
    xc, yc = x[:4], y[:4]
    g = o.bayes_logit_grad(xc, yc).flatten(1)
    v = torch.randn(xc.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-4

    def logp(xx):
        with torch.no_grad():
            top, _ = o._halves(xx)
            return S.label_log_probs(o.signal.mode(top, 0.0)).gather(1, yc[:, None]).squeeze(1)

    fd = (logp(xc + h * v) - logp(xc - h * v)) / (2 * h)
    torch.testing.assert_close((g * v.flatten(1)).sum(1), fd, atol=1e-6, rtol=1e-4)
    top, _ = o._halves(xc)
    z = o.signal.mode(top, 0.0).requires_grad_(True)
    gz = torch.autograd.grad(S.label_log_probs(z).gather(1, yc[:, None]).sum(), z)[0]
    j = o.signal.jacobian(z.detach())
    closed = j @ torch.linalg.solve(j.transpose(1, 2) @ j, gz[..., None])
    closed = o._join(closed, torch.zeros_like(closed)).squeeze(-1)
    torch.testing.assert_close(g, closed, atol=1e-8, rtol=1e-6)
    small = 0.01
    limit = (o.score(xc, small, yc) - o.score(xc, small)).flatten(1)
    cos = torch.nn.functional.cosine_similarity(g, limit, dim=1)
    keep = g.norm(dim=1) > 1e-3  # a confident point's gradient is ~0 and its direction noise
    assert keep.any() and float(cos[keep].min()) > 0.99, cos
    ratio = limit.norm(dim=1)[keep] / g.norm(dim=1)[keep]
    assert float((ratio - 1).abs().max()) < 0.05, ratio
