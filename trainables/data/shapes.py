"""An oracle set at CIFAR's shape: 3x32x32 images rendered from a 4-dimensional latent.

The curved set (curved.py) is 16x8 white-pixel patterns, where perceptual metrics compare
texture. This set draws coloured shapes on a smooth background at CIFAR's 3x32x32, and keeps
every quantity exact by making the data lie ON a rendered manifold (no spread at all):

    x = render(z_s, z_t),   z_s, z_t ~ N(0, I_2) independently

The renderer is differentiable (soft-edged superellipses, a fixed smooth background):
  - top half (rows 0-15, the *signal* region): one orange glyph whose shape morphs with
    m = z_s[0] from a tall diamond (m << 0) through a disc to a wide bar (m >> 0), at the
    horizontal position set by z_s[1];
  - bottom half (rows 16-31, the *distractor* region): a disc whose position (z_t[0]) and
    colour, blue to green (z_t[1]), are independent of the label.
Labels: p(y | z) = softmax_y(-LABEL_SHARPNESS (m - mu_y)^2), mu = (-1, 0, 1): the class is the
glyph, and neighbouring glyphs overlap smoothly near the class boundaries.

Exact quantities (docs/method.md, "The synthetic-shapes set"):
  - tangent space at x: span(d render / dz) (forward-mode AD) at the latent pi(x) of the nearest
    rendered image (Gauss-Newton from a coarse grid of renders);
  - score of the sigma-smoothed density p_sigma(x) = int N(x; render(z), sigma^2 I) p(z) dz:
    grad log p_sigma(x) = (E[render(z) | x] - x) / sigma^2 with the posterior over z; the two
    halves' latents are independent and their pixels disjoint, so each half is a 2-d integral,
    done by the trapezoid rule on a grid in the Laplace-whitened coordinates around the
    posterior mode (QUAD_POINTS^2 nodes over +-QUAD_RADIUS standard deviations). Conditional
    on y the weights carry p(y | z);
  - Bayes posterior: the data have no spread, so p(y | x) = p(y | pi(x)), the sigma -> 0 limit of
    the smoothed posterior; its input gradient is J H^-1 grad_z log p(y | z) (implicit function
    theorem, H the Hessian of ||x - render(z)||^2 / 2), J (J^T J)^-1 grad_z on the manifold.
The numerical error of the quadrature (against a finer grid, a brute-force grid and finite
differences of log p_sigma) is measured in tests/test_data_shapes.py.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import hessian, jacfwd, vmap
from torch.utils.data import TensorDataset

from trainables.data.base import DATASETS, DataBundle

SHAPE = (3, 32, 32)  # (C, H, W): top 16 rows = signal region, bottom 16 rows = distractor
HALF_ROWS = 16
HALF = 3 * HALF_ROWS * 32  # values per half (1536)
NUM_CLASSES = 3
K_HALF = 2  # latent dimension of each half (4 in all)
CLASS_CENTRES = (-1.0, 0.0, 1.0)  # mu_y on the morph axis m = z_s[0]
LABEL_SHARPNESS = 3.0  # p(y|z) = softmax(-LABEL_SHARPNESS (m - mu_y)^2): overlapping classes
# Latents enter through tanh(z / SOFT): bounded glyphs, and soft enough that the likelihood
# never goes flat within the prior's range (a flat tail makes the posterior heavy-tailed).
SOFT = 2.5
EDGE = 4.0  # soft edge: alpha = sigmoid(EDGE (1 - level)), level 1 on the superellipse
GLYPH_COLOUR = (0.95, 0.55, 0.15)
COARSE = 49  # coarse latent grid per axis over [-COARSE_SPAN, COARSE_SPAN] (mode search)
COARSE_SPAN = 4.0
NEWTON_STEPS = 6
QUAD_POINTS, QUAD_RADIUS = 10, 0.0  # Gauss-Hermite, 10 nodes per axis (error: tests)
N_TRAIN, N_TEST = 1800, 600
_F64 = torch.float64


def _grid(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.arange(rows, dtype=_F64)[:, None] + 0.5, torch.arange(32, dtype=_F64)[None] + 0.5)


def _alpha(ci, cj, a, b, p) -> torch.Tensor:
    """Soft superellipse `(16, 32)`: centre (ci, cj), half-axes (a, b) in pixels, exponent p."""
    rows, cols = _grid(HALF_ROWS)
    di2, dj2 = ((rows - ci) / b) ** 2 + 1e-6, ((cols - cj) / a) ** 2 + 1e-6
    level = (di2 ** (p / 2) + dj2 ** (p / 2)) ** (1 / p)
    return torch.sigmoid(EDGE * (1 - level))


def background() -> torch.Tensor:
    """The fixed smooth background `(3, 32, 32)`: gentle colour ramps, the same in every image."""
    rows, cols = _grid(32)
    rows, cols = rows / 32, cols / 32
    return torch.stack([0.25 + 0.2 * rows + 0 * cols, 0.3 + 0.15 * cols + 0 * rows,
                        0.45 - 0.1 * rows + 0.1 * cols])  # fmt: skip


def render_signal(z: torch.Tensor) -> torch.Tensor:
    """Top half `(1536,)` for one signal latent z = (m, u): the glyph morphs with m."""
    t = torch.tanh(z[0] / SOFT)
    a, b, p = 5.0 + 2.5 * t, 5.0 - 2.5 * t, 2.5 + 1.5 * t  # tall diamond -> disc -> wide bar
    alpha = _alpha(torch.tensor(8.0, dtype=_F64), 16 + 9 * torch.tanh(z[1] / SOFT), a, b, p)
    colour = torch.tensor(GLYPH_COLOUR, dtype=_F64)[:, None, None]
    bg = background()[:, :HALF_ROWS]
    return (bg + alpha * (colour - bg)).reshape(-1)


def render_distractor(z: torch.Tensor) -> torch.Tensor:
    """Bottom half `(1536,)` for one distractor latent z = (position, colour)."""
    alpha = _alpha(torch.tensor(8.0, dtype=_F64), 16 + 11 * torch.tanh(z[0] / SOFT),
                   torch.tensor(4.0, dtype=_F64), torch.tensor(4.0, dtype=_F64), 2.0)  # fmt: skip
    c = torch.tanh(z[1] / SOFT)
    colour = torch.stack([0.15 + 0 * c, 0.55 + 0.3 * c, 0.6 - 0.3 * c])[:, None, None]
    bg = background()[:, HALF_ROWS:]
    return (bg + alpha * (colour - bg)).reshape(-1)


def _quiet(fn):
    with warnings.catch_warnings():  # torch's one-time jit.script notice on first forward AD
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        return fn()


@dataclass
class RenderedManifold:
    """One half: the renderer `(2,) -> (1536,)` with the prior N(0, I_2), and everything
    computed by integrating over its latent. x is `(B, 1536)` float64."""

    embed: object  # render_signal or render_distractor
    coarse_latents: torch.Tensor = torch.empty(0)  # (G, 2)
    coarse_renders: torch.Tensor = torch.empty(0)  # (G, 1536)

    def renders(self, z: torch.Tensor) -> torch.Tensor:
        return vmap(self.embed)(z.reshape(-1, K_HALF)).reshape(*z.shape[:-1], HALF)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """d render / dz at each latent `(B, 2)` -> `(B, 1536, 2)` (forward-mode AD)."""
        return _quiet(lambda: vmap(jacfwd(self.embed))(z))

    def mode(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """argmin_z ||x - render(z)||^2 / (2 sigma^2) + |z|^2 / 2 `(B, 2)`; sigma = 0: the
        latent of the nearest rendered image (the prior drops out). Best coarse-grid render,
        then Levenberg-Marquardt steps."""
        prior = 0.0 if sigma == 0 else sigma**2
        dist2 = torch.cdist(x, self.coarse_renders).pow(2)
        z = self.coarse_latents[(dist2 + prior * self.coarse_latents.pow(2).sum(1)).argmin(1)]
        eye = torch.eye(K_HALF, dtype=_F64)
        for _ in range(NEWTON_STEPS):
            j = self.jacobian(z)
            resid = x - self.renders(z)
            grad = -(j.transpose(1, 2) @ resid[..., None]).squeeze(-1) + prior * z
            h = j.transpose(1, 2) @ j + prior * eye
            damp = 1e-9 * h.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye
            z = z - torch.linalg.solve(h + damp, grad)
        return z

    def posterior_grid(
        self, x: torch.Tensor, sigma: float, n: int = QUAD_POINTS, radius: float = QUAD_RADIUS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quadrature nodes `(B, n^2, 2)` and log weights `(B, n^2)` of the posterior over z given
        x under the sigma-smoothed density (unnormalized; the node spacing is the same for all
        nodes of one x and cancels in every ratio)."""
        z0 = self.mode(x, sigma)
        j = self.jacobian(z0)
        precision = j.transpose(1, 2) @ j / sigma**2 + torch.eye(K_HALF, dtype=_F64)
        chol = torch.linalg.cholesky(torch.linalg.inv(precision))  # (B, 2, 2) Laplace scale
        u, log_rule = _rule(n, radius)  # (n^2, 2) whitened nodes and their log weights
        nodes = z0[:, None] + u @ chol.transpose(1, 2)
        resid2 = (x[:, None] - self.renders(nodes)).pow(2).sum(-1)
        log_det = chol.diagonal(dim1=1, dim2=2).log().sum(1, keepdim=True)  # dz = |L| du
        log_w = -resid2 / (2 * sigma**2) - nodes.pow(2).sum(-1) / 2 + log_rule + log_det
        return nodes, log_w

    def log_density(
        self,
        x: torch.Tensor,
        sigma: float,
        log_lik=None,
        n: int = QUAD_POINTS,
        radius: float = QUAD_RADIUS,
    ) -> torch.Tensor:
        """log int N(x; render(z), sigma^2 I) N(z; 0, I) L(z) dz `(B,)`, by the same rule (the
        tests take its finite differences)."""
        nodes, log_w = self.posterior_grid(x, sigma, n, radius)
        if log_lik is not None:
            log_w = log_w + log_lik(nodes)
        norm = HALF / 2 * math.log(2 * math.pi * sigma**2) + math.log(2 * math.pi)
        return torch.logsumexp(log_w, dim=1) - norm

    def posterior_means(
        self,
        x: torch.Tensor,
        sigma: float,
        log_lik=None,
        n: int = QUAD_POINTS,
        radius: float = QUAD_RADIUS,
    ) -> torch.Tensor:
        """E[render(z) | x] under the sigma-smoothed density, `(B, M, 1536)`: M = 1 (the
        unconditional posterior) or, with `log_lik(nodes) -> (B, n^2, K)` (log p(y | z)), 1 + K
        (then also given each class). One pass over the nodes serves every class."""
        out = []
        for i in range(0, len(x), 16):  # chunks: n^2 renders per point
            nodes, log_w = self.posterior_grid(x[i : i + 16], sigma, n, radius)
            log_w = log_w[..., None]
            if log_lik is not None:
                log_w = torch.cat([log_w, log_w + log_lik(nodes)], dim=2)
            r = torch.softmax(log_w, dim=1)  # (b, n^2, M)
            out.append(r.transpose(1, 2) @ self.renders(nodes))
        return torch.cat(out)

    def differentiable_projection(self, x: torch.Tensor) -> torch.Tensor:
        """pi(x) `(B, 2)` in value, with d pi / dx = H^-1 J^T under autograd (implicit function
        theorem for argmin ||x - render(z)||^2 / 2): one Newton step from the detached optimum,
        whose gradient there is zero in value."""
        z = self.mode(x.detach(), 0.0)
        j = self.jacobian(z)

        def objective(zz, xx):
            return 0.5 * (xx - self.embed(zz)).pow(2).sum()

        h = _quiet(lambda: vmap(hessian(objective))(z, x.detach()))
        grad = -(j.transpose(1, 2) @ (x - self.renders(z))[..., None]).squeeze(-1)
        return z - torch.linalg.solve(h, grad[..., None]).squeeze(-1)

    def tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis `(B, 1536, 2)` of span(d render / dz) at pi(x)."""
        return torch.linalg.qr(self.jacobian(self.mode(x, 0.0))).Q


@functools.lru_cache(maxsize=8)
def _rule(n: int, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Product rule on the whitened latent u: radius 0 = Gauss-Hermite with n nodes per axis
    (the log weights include exp(|u|^2 / 2): the rule integrates f(u) N(u; 0, I), and the
    posterior is close to that Gaussian); radius > 0 = the trapezoid rule over [-radius, radius]
    (slower, no Gaussian assumption: the tests' reference)."""
    if radius == 0:
        nodes, weights = np.polynomial.hermite_e.hermegauss(n)
        axis, log_w1 = (
            torch.tensor(nodes),
            torch.tensor(np.log(weights)) + torch.tensor(nodes) ** 2 / 2,
        )
    else:
        axis = torch.linspace(-radius, radius, n, dtype=_F64)
        log_w1 = torch.full((n,), math.log(2 * radius / (n - 1)), dtype=_F64)
    u = torch.cartesian_prod(axis, axis)
    return u, torch.cartesian_prod(log_w1, log_w1).sum(1)


def _make_half(embed) -> RenderedManifold:
    half = RenderedManifold(embed)
    axis = torch.linspace(-COARSE_SPAN, COARSE_SPAN, COARSE, dtype=_F64)
    half.coarse_latents = torch.cartesian_prod(axis, axis)
    half.coarse_renders = half.renders(half.coarse_latents)
    return half


def label_log_probs(z_signal: torch.Tensor) -> torch.Tensor:
    """log p(y | z) `(..., K)` from the signal latent `(..., 2)`."""
    centres = torch.tensor(CLASS_CENTRES, dtype=z_signal.dtype)
    return torch.log_softmax(-LABEL_SHARPNESS * (z_signal[..., :1] - centres) ** 2, dim=-1)


@dataclass
class ShapesOracle:
    """Exact quantities of synthetic-shapes, the interface the other oracle sets share. float64
    on CPU inside; x is `(B, C, H, W)`."""

    signal: RenderedManifold
    distractor: RenderedManifold
    shape: tuple[int, int, int] = SHAPE
    _memo: dict = field(default_factory=dict)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.to(_F64).reshape(len(x), 3, 32, 32)
        top = flat[:, :, :HALF_ROWS].reshape(len(x), -1)
        return top, flat[:, :, HALF_ROWS:].reshape(len(x), -1)

    @staticmethod
    def _join(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """Two halves' columns `(B, 1536, ...)` -> image-ordered `(B, 3072, ...)`."""
        n, rest = len(top), top.shape[2:]
        t, b = top.reshape(n, 3, HALF_ROWS * 32, *rest), bottom.reshape(n, 3, -1, *rest)
        return torch.cat([t, b], dim=2).reshape(n, 3 * 32 * 32, *rest)

    def tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis of the tangent space at each x, `(B, 3072, 4)`, signal first."""
        top, bottom = self._halves(x)
        zeros = torch.zeros(len(x), HALF, K_HALF, dtype=_F64)
        sig = self._join(self.signal.tangent_at(top), zeros)
        dis = self._join(zeros, self.distractor.tangent_at(bottom))
        return torch.cat([sig, dis], dim=2)

    def signal_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        top, _ = self._halves(x)
        zeros = torch.zeros(len(x), HALF, K_HALF, dtype=_F64)
        return self._join(self.signal.tangent_at(top), zeros)

    def distractor_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        _, bottom = self._halves(x)
        zeros = torch.zeros(len(x), HALF, K_HALF, dtype=_F64)
        return self._join(zeros, self.distractor.tangent_at(bottom))

    def bayes_logits(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) = log p(y | pi(x)) `(B, K)`; differentiable in x (implicit function)."""
        top, _ = self._halves(x)
        return label_log_probs(self.signal.differentiable_projection(top))

    def bayes_logit_grad(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Gradient of log p(cls_i | x_i) w.r.t. x_i, `(B, C, H, W)` float64."""
        xd = x.detach().to(_F64).requires_grad_(True)
        with torch.enable_grad():
            logp = self.bayes_logits(xd).gather(1, cls.long()[:, None]).sum()
            (grad,) = torch.autograd.grad(logp, xd)
        return grad.reshape(x.shape)

    def posterior_means(self, x: torch.Tensor, sigma: float, **grid) -> tuple[torch.Tensor, ...]:
        """(top `(B, 1 + K, 1536)`, bottom `(B, 1, 1536)`) posterior means of the renders given
        x (top: unconditional, then given each class). Memoized on the bytes of x: a trial asks
        for the unconditional score, the score at the predicted class and at the labels."""
        top, bottom = self._halves(x)
        key = (hashlib.sha256(top.numpy().tobytes() + bottom.numpy().tobytes()).hexdigest(),
               sigma, tuple(sorted(grid.items())))  # fmt: skip
        if key not in self._memo:
            if len(self._memo) >= 4:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = (self.signal.posterior_means(top, sigma, label_log_probs, **grid),
                               self.distractor.posterior_means(bottom, sigma, **grid))  # fmt: skip
        return self._memo[key]

    def log_density(
        self, x: torch.Tensor, sigma: float, y: torch.Tensor | None = None, **grid
    ) -> torch.Tensor:
        """log p_sigma(x) `(B,)`, or log p_sigma(x | y) + log p(y) given labels y `(B,)`."""
        top, bottom = self._halves(x.detach().cpu())
        log_lik = None
        if y is not None:
            yl = y.long().cpu()

            def log_lik(nodes):
                return label_log_probs(nodes)[torch.arange(len(yl)), :, yl]

        return (self.signal.log_density(top, sigma, log_lik, **grid)
                + self.distractor.log_density(bottom, sigma, **grid))  # fmt: skip

    def score(
        self, x: torch.Tensor, sigma: float, y: torch.Tensor | None = None, **grid
    ) -> torch.Tensor:
        """Exact score of the sigma-smoothed density, unconditional or given labels y `(B,)`,
        `(B, C, H, W)` float64 (latent quadrature; `grid`: n, radius of the trapezoid rule)."""
        x = x.detach().cpu()
        top, bottom = self._halves(x)
        m_top, m_bottom = self.posterior_means(x, sigma, **grid)
        pick = torch.zeros(len(x), dtype=torch.long) if y is None else 1 + y.long().cpu()
        s_top = (m_top[torch.arange(len(x)), pick] - top) / sigma**2
        s_bottom = (m_bottom[:, 0] - bottom) / sigma**2
        return self._join(s_top[..., None], s_bottom[..., None]).reshape(len(x), *SHAPE)


@functools.lru_cache(maxsize=1)
def make_shapes_oracle() -> ShapesOracle:
    """The oracle (deterministic: the renderer has no random parts); cached per process."""
    return ShapesOracle(_make_half(render_signal), _make_half(render_distractor))


def sample_shapes(oracle: ShapesOracle, n: int, g: torch.Generator):
    """n rendered images `(n, 3, 32, 32)` float32 (exactly on the manifold) and labels `(n,)`."""
    zs = torch.randn(n, K_HALF, generator=g, dtype=_F64)
    zt = torch.randn(n, K_HALF, generator=g, dtype=_F64)
    y = torch.multinomial(label_log_probs(zs).exp(), 1, generator=g).squeeze(1)
    top, bottom = oracle.signal.renders(zs), oracle.distractor.renders(zt)
    x = oracle._join(top[..., None], bottom[..., None]).reshape(n, *SHAPE)
    return x.float(), y


def signal_mask(n: int) -> torch.Tensor:
    """`(n, 1, 32, 32)` bool, True on the top (signal) rows."""
    mask = torch.zeros(n, 1, 32, 32, dtype=torch.bool)
    mask[:, :, :HALF_ROWS] = True
    return mask


@functools.lru_cache(maxsize=4)
def _draw(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    oracle = make_shapes_oracle()
    return (*sample_shapes(oracle, N_TRAIN, g), *sample_shapes(oracle, N_TEST, g))


@DATASETS.register("synthetic-shapes")
def load_shapes(seed: int = 0, data_root: str = "") -> DataBundle:
    """Generated, no download; the samples are cached per process and seed (a few seconds)."""
    x_train, y_train, x_test, y_test = _draw(seed)
    return DataBundle(
        name="synthetic-shapes",
        train=TensorDataset(x_train, y_train),
        test=TensorDataset(x_test, y_test),
        num_classes=NUM_CLASSES,
        shape=SHAPE,
        signal_mask_train=signal_mask(N_TRAIN),
        signal_mask_test=signal_mask(N_TEST),
        oracle=make_shapes_oracle(),
        info={"k_signal": K_HALF, "k_distractor": K_HALF},
    )


def ambiguous_fraction(oracle: ShapesOracle, x: torch.Tensor, low=0.05, high=0.95) -> float:
    """Share of points whose Bayes posterior p(y|x) has a class in [low, high] (max prob below
    `high` and a runner-up above `low`): where the Bayes gradient is informative."""
    with torch.no_grad():
        p = oracle.bayes_logits(x).exp()
    return float(((p >= low) & (p <= high)).any(1).double().mean())


__all__ = ["SHAPE", "ShapesOracle", "load_shapes", "make_shapes_oracle"]
