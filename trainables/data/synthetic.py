"""A synthetic data set with a known linear manifold: the oracle for every measurement.

    x = c + A s + B t          (docs/method.md, "Ground truth")

A (d x k_s) and B (d x k_t) have orthonormal columns; A lives on the top half of the image
(the *signal* half), B on the bottom half (the *distractor* half), so the two are orthogonal and
the dataset also has exact signal/distractor masks. s | y ~ N(mu_y, sa^2 I) carries the label,
t ~ N(0, sb^2 I) is independent of y, c = 0.5 is a constant offset so pixels sit around [0, 1].
Everything the paper reasons about is then closed-form:
  - tangent space everywhere: span[A B]; signal manifold: span[A];
  - Bayes logits (equal priors): -||A^T (x - c) - mu_y||^2 / (2 sa^2), gradient in span[A];
  - score of the sigma-smoothed density, a Gaussian mixture with covariance
    Sigma = sa^2 AA^T + sb^2 BB^T + sigma^2 I.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from trainables.data.base import DATASETS, DataBundle

SHAPE = (1, 16, 8)  # (C, H, W): top 8x8 = signal half, bottom 8x8 = distractor half
NUM_CLASSES = 3
K_SIGNAL = 4
K_DISTRACTOR = 4
SIGNAL_STD = 0.15  # sa: within-class spread along the signal directions
DISTRACTOR_STD = 0.6  # sb: the distractor varies more than the signal, as in the paper's setup
CLASS_SEPARATION = 0.5  # norm of each class mean mu_y
OFFSET = 0.5
N_TRAIN, N_TEST = 2400, 600


@dataclass
class LinearManifoldOracle:
    """Exact quantities for x = c + A s + B t. All tensors float64 on CPU; x is `(B, C, H, W)`."""

    A: torch.Tensor  # (d, k_s) signal basis
    B: torch.Tensor  # (d, k_t) distractor basis
    means: torch.Tensor  # (K, k_s) class means mu_y
    signal_std: float
    distractor_std: float
    offset: float
    shape: tuple[int, int, int]

    def tangent_basis(self) -> torch.Tensor:
        """Orthonormal basis of the tangent space, `(d, k_s + k_t)`; the same at every x."""
        return torch.cat([self.A, self.B], dim=1)

    def signal_basis(self) -> torch.Tensor:
        return self.A

    def distractor_basis(self) -> torch.Tensor:
        return self.B

    # Per-point bases `(B, d, k)`, the interface the curved set shares (it has no global one).
    def tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        return self.tangent_basis().expand(len(x), -1, -1)

    def signal_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        return self.A.expand(len(x), -1, -1)

    def distractor_tangent_at(self, x: torch.Tensor) -> torch.Tensor:
        return self.B.expand(len(x), -1, -1)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).to(torch.float64) - self.offset

    def bayes_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Log-posterior up to a per-example constant, `(B, K)`."""
        s = self._flat(x) @ self.A  # (B, k_s)
        sq = ((s[:, None, :] - self.means[None]) ** 2).sum(-1)
        return -sq / (2 * self.signal_std**2)

    def bayes_logit_grad(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Gradient of logit `cls[i]` w.r.t. x_i, `(B, C, H, W)`; lies in span[A]."""
        s = self._flat(x) @ self.A
        g = -(s - self.means[cls]) @ self.A.T / self.signal_std**2
        return g.reshape(x.shape)

    def _precision_times(self, v: torch.Tensor, sigma: float) -> torch.Tensor:
        """Sigma^{-1} v for rows v `(B, d)` (Sigma of the sigma-smoothed density)."""
        va, vb = v @ self.A, v @ self.B
        perp = v - va @ self.A.T - vb @ self.B.T
        return (
            va @ self.A.T / (self.signal_std**2 + sigma**2)
            + vb @ self.B.T / (self.distractor_std**2 + sigma**2)
            + perp / sigma**2
        )

    def score(self, x: torch.Tensor, sigma: float, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact score grad_x log p_sigma(x) (unconditional) or log p_sigma(x | y), `(B,C,H,W)`."""
        xf = self._flat(x)
        centers = self.means @ self.A.T  # (K, d)
        if y is None:
            s = xf @ self.A
            var = self.signal_std**2 + sigma**2
            w = torch.softmax(-((s[:, None] - self.means[None]) ** 2).sum(-1) / (2 * var), dim=1)
            center = w @ centers
        else:
            center = centers[y]
        return -self._precision_times(xf - center, sigma).reshape(x.shape)


def make_oracle(seed: int) -> LinearManifoldOracle:
    g = torch.Generator().manual_seed(10_000 + seed)
    c, h, w = SHAPE
    d, half = c * h * w, c * h * w // 2

    def half_basis(k: int, rows: slice) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(half, k, generator=g, dtype=torch.float64))
        basis = torch.zeros(d, k, dtype=torch.float64)
        basis[rows] = q
        return basis

    A = half_basis(K_SIGNAL, slice(0, half))
    B = half_basis(K_DISTRACTOR, slice(half, d))
    means = torch.randn(NUM_CLASSES, K_SIGNAL, generator=g, dtype=torch.float64)
    means = CLASS_SEPARATION * means / means.norm(dim=1, keepdim=True)
    return LinearManifoldOracle(A, B, means, SIGNAL_STD, DISTRACTOR_STD, OFFSET, SHAPE)


def sample(oracle: LinearManifoldOracle, n: int, g: torch.Generator):
    """n points `(n, C, H, W)` float32 and labels `(n,)`, balanced classes."""
    y = torch.arange(n) % NUM_CLASSES
    y = y[torch.randperm(n, generator=g)]
    s = oracle.means[y] + oracle.signal_std * torch.randn(
        n, K_SIGNAL, generator=g, dtype=torch.float64
    )
    t = oracle.distractor_std * torch.randn(n, K_DISTRACTOR, generator=g, dtype=torch.float64)
    x = oracle.offset + s @ oracle.A.T + t @ oracle.B.T
    return x.reshape(n, *oracle.shape).float(), y


def signal_mask(n: int) -> torch.Tensor:
    """`(n, 1, H, W)` bool, True on the top (signal) half."""
    mask = torch.zeros(n, *SHAPE, dtype=torch.bool)
    mask[:, :, : SHAPE[1] // 2] = True
    return mask


def oracle_bundle(name: str, oracle, draw, n_train: int, n_test: int, seed: int, info: dict):
    """The DataBundle of a synthetic set: `draw(oracle, n, generator) -> (x, y)` gives n_train
    training then n_test test points from a generator seeded with `seed`. The geometry (the
    oracle) is the caller's, fixed across seeds, so every seed of a sweep studies the same
    problem and only the samples differ. Both sets share the signal-half/distractor-half masks."""
    g = torch.Generator().manual_seed(seed)
    x_train, y_train = draw(oracle, n_train, g)
    x_test, y_test = draw(oracle, n_test, g)
    return DataBundle(
        name=name,
        train=TensorDataset(x_train, y_train),
        test=TensorDataset(x_test, y_test),
        num_classes=int(y_train.max()) + 1,
        shape=tuple(x_train.shape[1:]),
        signal_mask_train=signal_mask(n_train),
        signal_mask_test=signal_mask(n_test),
        oracle=oracle,
        info=info,
    )


@DATASETS.register("synthetic-manifold")
def load_synthetic(seed: int = 0, data_root: str = "") -> DataBundle:
    info = {"k_signal": K_SIGNAL, "k_distractor": K_DISTRACTOR}
    return oracle_bundle("synthetic-manifold", make_oracle(0), sample, N_TRAIN, N_TEST, seed, info)
