"""A synthetic data set on a *curved* manifold with exact tangents, score and Bayes posterior.

The linear set (synthetic.py) cannot tell a tangent estimator that fits one global subspace from
one that follows the manifold. Here each half of the image carries its own curved 2-dimensional
manifold (intrinsic dimension 4 in d = 128), built from circles at random frequencies:

    h(z) = sum_i r (u_i cos(w_i . z + p_i) + v_i sin(w_i . z + p_i)),   z in [-1, 1]^2

(u_i, v_i orthonormal pixel patterns inside the half). The data distribution is a Gaussian
mixture whose centres lie on the manifold, c_g = h(z_g) at the points z_g of a fine latent grid,
each with a small isotropic spread eta (`x_half = c_g + eta n`). The grid is finer than eta
(neighbouring centres are closer than eta in pixels), so the density is a smooth tube around the
manifold, and every quantity is closed form:
  - the tangent space at x is span(dh/dz) (forward-mode AD) at the latent of the component x
    belongs to (the most responsible one);
  - the sigma-smoothed density is the same mixture with eta^2 -> eta^2 + sigma^2, so its score is
    sum_g r_g (c_g - x) / (eta^2 + sigma^2);
  - labels: p(y | z) = softmax(LABEL_SHARPNESS * w_y . z) varies smoothly along the top
    manifold, and the Bayes posterior is sum_g r_g(x_top) p(y | z_g).
The bottom half is the distractor: an independent mixture on its own manifold, unrelated to y.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch.func import jacfwd, vmap

from trainables.data.base import DATASETS, DataBundle
from trainables.data.synthetic import oracle_bundle

SHAPE = (1, 16, 8)  # (C, H, W): top 8x8 = signal half, bottom 8x8 = distractor half
HALF = 64  # pixels per half
NUM_CLASSES = 3
K_HALF = 2  # intrinsic dimension of each half's manifold (4 in all)
N_CIRCLES = 16  # circles per half: 32 orthonormal pixel patterns of the 64
RADIUS = 0.3  # r: per-pixel std about 0.15, like the linear set
FREQUENCY = 0.5  # std of each frequency component; sets the curvature (measured in tests)
GRID = 80  # latent grid points per axis: GRID^2 mixture components per half
OFF_STD = 0.01  # eta: each component's isotropic spread, per pixel (grid spacing <= 1.5 eta)
LABEL_SHARPNESS = 4.0
OFFSET = 0.5
N_TRAIN, N_TEST = 2400, 600


@dataclass
class CircleManifold:
    """One half's curved manifold h: `(2,) -> (64,)` and the mixture along it (float64)."""

    patterns: torch.Tensor  # (64, 2 * N_CIRCLES) orthonormal columns
    freqs: torch.Tensor  # (N_CIRCLES, 2)
    phases: torch.Tensor  # (N_CIRCLES,)
    latents: torch.Tensor = torch.empty(0)  # (G, 2) grid points z_g
    centres: torch.Tensor = torch.empty(0)  # (G, 64) c_g = h(z_g)
    bases: torch.Tensor = torch.empty(0)  # (G, 64, 2) orthonormal bases of span(dh/dz (z_g))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """h(z) for one latent `(2,)` -> `(64,)`."""
        angle = self.freqs @ z + self.phases
        waves = torch.stack([angle.cos(), angle.sin()], dim=1).reshape(-1)  # (2 N_CIRCLES,)
        return RADIUS * (self.patterns @ waves)

    def log_responsibilities(self, x: torch.Tensor, sigma: float, log_w) -> torch.Tensor:
        """log r_g `(B, G)` of x `(B, 64)` under the sigma-smoothed mixture with unnormalized
        log weights `log_w` (`(G,)` or `(B, G)`)."""
        s2 = OFF_STD**2 + sigma**2
        dist2 = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.centres.T + self.centres.pow(2).sum(1)
        return torch.log_softmax(log_w - dist2 / (2 * s2), dim=1)

    def score(self, x: torch.Tensor, sigma: float, log_w) -> torch.Tensor:
        """grad_x log sum_g w_g N(x; c_g, (eta^2 + sigma^2) I), x `(B, 64)` -> `(B, 64)`."""
        resp = self.log_responsibilities(x, sigma, log_w).exp()
        return (resp @ self.centres - x) / (OFF_STD**2 + sigma**2)

    def component_of(self, x: torch.Tensor) -> torch.Tensor:
        """Index `(B,)` of the most responsible component for each x `(B, 64)` (sigma = 0)."""
        return self.log_responsibilities(x, 0.0, torch.zeros(len(self.latents))).argmax(1)


def _make_half(g: torch.Generator) -> CircleManifold:
    f64 = torch.float64
    patterns, _ = torch.linalg.qr(torch.randn(HALF, 2 * N_CIRCLES, generator=g, dtype=f64))
    freqs = FREQUENCY * torch.randn(N_CIRCLES, K_HALF, generator=g, dtype=f64)
    phases = 2 * math.pi * torch.rand(N_CIRCLES, generator=g, dtype=f64)
    half = CircleManifold(patterns, freqs, phases)
    axis = torch.linspace(-1, 1, GRID, dtype=f64)
    half.latents = torch.cartesian_prod(axis, axis)
    half.centres = vmap(half.embed)(half.latents)
    with warnings.catch_warnings():  # torch's one-time jit.script notice on first forward AD
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        jacobians = vmap(jacfwd(half.embed))(half.latents)  # (G, 64, 2): exact tangents
    half.bases = torch.linalg.qr(jacobians).Q
    return half


@dataclass
class CurvedManifoldOracle:
    """Exact quantities of the curved set. float64 on CPU inside; x is `(B, C, H, W)`."""

    signal: CircleManifold  # top half: carries the label
    distractor: CircleManifold  # bottom half: independent of y
    label_probs: torch.Tensor  # (G, K) p(y | z_g)
    shape: tuple[int, int, int] = SHAPE
    offset: float = OFFSET

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(x.shape[0], -1).to(torch.float64) - self.offset
        return flat[:, :HALF], flat[:, HALF:]

    def tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis of the tangent space at each x, `(B, d, 4)`, signal columns first."""
        top, bottom = self._halves(x)
        q = torch.zeros(len(x), 2 * HALF, 2 * K_HALF, dtype=torch.float64)
        q[:, :HALF, :K_HALF] = self.signal.bases[self.signal.component_of(top)]
        q[:, HALF:, K_HALF:] = self.distractor.bases[self.distractor.component_of(bottom)]
        return q

    def signal_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        """Tangent space of the signal manifold at each x, `(B, d, 2)` (Theorem 2's subspace)."""
        return self.tangent_at(x)[:, :, :K_HALF]

    def distractor_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        """Tangent space of the distractor manifold at each x, `(B, d, 2)`."""
        return self.tangent_at(x)[:, :, K_HALF:]

    def bayes_logits(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) `(B, K)` under the generating distribution."""
        top, _ = self._halves(x)
        resp = self.signal.log_responsibilities(top, 0.0, torch.zeros(len(self.label_probs)))
        return torch.logsumexp(resp[:, :, None] + self.label_probs.log()[None], dim=1)

    def bayes_logit_grad(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Gradient of log p(cls_i | x_i) w.r.t. x_i, `(B, C, H, W)`, by autograd of the
        closed form."""
        xd = x.detach().to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            logp = self.bayes_logits(xd).gather(1, cls.long()[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, xd)
        return grad.reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: float, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact score of the sigma-smoothed density, unconditional or given labels y `(B,)`."""
        top, bottom = self._halves(x)
        uniform = torch.zeros(len(self.label_probs), dtype=torch.float64)
        # p(x_top | y) is the mixture reweighted by p(y | z_g)
        log_w = uniform if y is None else self.label_probs[:, y.long()].T.log()
        s_top = self.signal.score(top, sigma, log_w)
        s_bottom = self.distractor.score(bottom, sigma, uniform)
        return torch.cat([s_top, s_bottom], dim=1).reshape(x.shape)


def make_curved_oracle(seed: int = 0) -> CurvedManifoldOracle:
    g = torch.Generator().manual_seed(20_000 + seed)
    signal, distractor = _make_half(g), _make_half(g)
    angles = torch.arange(NUM_CLASSES, dtype=torch.float64) * 2 * math.pi / NUM_CLASSES
    directions = torch.stack([angles.cos(), angles.sin()])  # (2, K): classes 120 degrees apart
    label_probs = torch.softmax(LABEL_SHARPNESS * signal.latents @ directions, dim=1)
    return CurvedManifoldOracle(signal, distractor, label_probs)


def sample_curved(oracle: CurvedManifoldOracle, n: int, g: torch.Generator):
    """n points `(n, C, H, W)` float32 and labels `(n,)` drawn from the generating mixture."""
    n_comp = len(oracle.label_probs)
    comp_s = torch.randint(n_comp, (n,), generator=g)
    comp_t = torch.randint(n_comp, (n,), generator=g)
    y = torch.multinomial(oracle.label_probs[comp_s], 1, generator=g).squeeze(1)
    noise = OFF_STD * torch.randn(n, 2 * HALF, generator=g, dtype=torch.float64)
    centres = torch.cat([oracle.signal.centres[comp_s], oracle.distractor.centres[comp_t]], 1)
    x = oracle.offset + centres + noise
    return x.reshape(n, *SHAPE).float(), y


@DATASETS.register("synthetic-curved")
def load_curved(seed: int = 0, data_root: str = "") -> DataBundle:
    info = {"k_signal": K_HALF, "k_distractor": K_HALF}
    oracle = make_curved_oracle(0)
    return oracle_bundle("synthetic-curved", oracle, sample_curved, N_TRAIN, N_TEST, seed, info)
