"""Randomized-smoothing certification (Cohen, Rosenfeld & Kolter 2019, "Certified Adversarial
Robustness via Randomized Smoothing"; docs/method.md, "Certified radii").

The smoothed classifier g(x) = argmax_c P(f(x + delta) = c), delta ~ N(0, sigma^2 I), of a base
classifier f. Both procedures are the paper's (its Pseudocode, section 3.2):

    PREDICT(f, sigma, x, n, alpha): counts of f's classes over n noisy copies; the top two
        cA, cB; return cA if the two-sided binomial test of nA out of nA + nB at p = 1/2 has
        p-value <= alpha, else abstain. (Returns a class other than g(x) w.p. <= alpha.)
    CERTIFY(f, sigma, x, n0, n, alpha): cA = the top class over n0 noisy copies; pA_lower =
        the one-sided (1 - alpha) Clopper-Pearson lower bound on P(f(x + delta) = cA) from n
        more copies; if pA_lower > 1/2 return cA with radius sigma * Phi^-1(pA_lower), else
        abstain. (g is then constant within that L2 radius, w.p. >= 1 - alpha.)

Binomial tests and bounds come from scipy (`binomtest`, its exact Clopper-Pearson interval at
confidence 1 - 2 alpha, whose lower end is the one-sided 1 - alpha bound; Cohen's code uses
statsmodels' proportion_confint(alpha=2 alpha, method="beta"), the same interval).

Defaults, for a CPU trial's budget (BENCHMARKS.md: at most +30% on a digits-quick trial):
alpha = 0.001 as Cohen's; n0 = 32 and n = 200 instead of their 100 and 100,000 (`certify_n0`,
`certify_n`; raise them on a GPU). PREDICT reads the same n draws as CERTIFY's estimation
step: each procedure's guarantee holds for any n i.i.d. draws on its own (Cohen et al. ran them
as separate experiments), and sharing halves the cost. With n = 200 and alpha = 0.001 the
largest certifiable radius is sigma * Phi^-1(0.001^(1/200)) = 1.83 sigma (Cohen's n: 3.81
sigma), and more points near the decision boundary abstain: compare certified accuracies only
at the same n.

Certified accuracy at radius r: the share of points where CERTIFY returns the true label with
a radius >= r (abstentions count as wrong). Radii: Cohen's CIFAR-10 ladder 0, 0.25, 0.5, 0.75,
1.0 (d = 3072) scaled by sqrt(d / 3072) as every L2 size here; the headline is the standard L2
radius of the robust accuracy (`robustness.standard_radius`), so the two sit on one axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.stats import binomtest, norm
from torch import nn

from trainables.measure.protocol import CIFAR_DIM

CERTIFY_N0, CERTIFY_N, CERTIFY_ALPHA = 32, 200, 0.001
CIFAR_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)  # Cohen et al.'s CIFAR-10 table, L2, pixels in [0, 1]
ABSTAIN = -1


def radius_ladder(d: int) -> list[float]:
    """Cohen's CIFAR-10 radii scaled to images with d values: r * sqrt(d / 3072)."""
    return [r * math.sqrt(d / CIFAR_DIM) for r in CIFAR_RADII]


@torch.no_grad()
def class_counts(
    model: nn.Module, x: torch.Tensor, sigma: float, n: int, num_classes: int,
    gen: torch.Generator, batch: int = 512,
) -> torch.Tensor:  # fmt: skip
    """`(N, K)` int64: how often f(x_i + delta) = c over n draws delta ~ N(0, sigma^2 I)."""
    counts = torch.zeros(len(x), num_classes, dtype=torch.int64, device=x.device)
    per = max(1, batch // max(1, len(x)))  # draws per point in one forward pass
    done = 0
    while done < n:
        m = min(per, n - done)
        noisy = x.unsqueeze(1) + sigma * torch.randn(
            (len(x), m, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype
        )
        pred = model(noisy.flatten(0, 1)).argmax(1).view(len(x), m)
        counts += nn.functional.one_hot(pred, num_classes).sum(1)
        done += m
    return counts.cpu()


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion (k of n)."""
    return float(binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha,
                                               method="exact").low)  # fmt: skip


def predict(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """PREDICT from counts `(N, K)`: the top class, or ABSTAIN. `(N,)` int64."""
    top2 = counts.topk(2, dim=1)
    out = torch.full((len(counts),), ABSTAIN, dtype=torch.int64)
    for i, ((na, nb), (ca, _)) in enumerate(zip(top2.values.tolist(), top2.indices.tolist(),
                                                strict=True)):  # fmt: skip
        if binomtest(na, na + nb, 0.5).pvalue <= alpha:
            out[i] = ca
    return out


def certify(
    counts0: torch.Tensor, counts: torch.Tensor, sigma: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """CERTIFY from the selection counts `(N, K)` (n0 draws) and the estimation counts (n
    draws): (class `(N,)` int64 or ABSTAIN, radius `(N,)` float64, NaN where abstained)."""
    n = int(counts[0].sum())
    ca = counts0.argmax(1)
    cls = torch.full((len(counts),), ABSTAIN, dtype=torch.int64)
    radius = torch.full((len(counts),), math.nan, dtype=torch.float64)
    for i in range(len(counts)):
        p_lower = lower_confidence_bound(int(counts[i, ca[i]]), n, alpha)
        if p_lower > 0.5:
            cls[i], radius[i] = ca[i], sigma * norm.ppf(p_lower)
    return cls, radius


@dataclass
class Certified:
    """Per point: PREDICT's class and CERTIFY's class and radius (ABSTAIN / NaN where they
    abstain), and the settings that produced them."""

    predicted: torch.Tensor
    certified: torch.Tensor
    radius: torch.Tensor
    sigma: float
    n0: int
    n: int
    alpha: float

    def smoothed_correct(self, y: torch.Tensor) -> torch.Tensor:
        """`(N,)` 0/1: PREDICT returned the true label (an abstention is wrong)."""
        return (self.predicted == y.cpu()).double()

    def certified_correct(self, y: torch.Tensor, r: float) -> torch.Tensor:
        """`(N,)` 0/1: CERTIFY returned the true label with radius >= r."""
        ok = (self.certified == y.cpu()) & (self.radius >= r)
        return ok.double()

    def predict_abstained(self) -> torch.Tensor:
        return (self.predicted == ABSTAIN).double()

    def certify_abstained(self) -> torch.Tensor:
        return (self.certified == ABSTAIN).double()


def smooth_and_certify(
    model: nn.Module, x: torch.Tensor, sigma: float, num_classes: int, gen: torch.Generator,
    n0: int = CERTIFY_N0, n: int = CERTIFY_N, alpha: float = CERTIFY_ALPHA,
) -> Certified:  # fmt: skip
    """CERTIFY (n0 draws to select, n to estimate) and PREDICT (on the same n draws) at every
    point, model in eval mode."""
    if not sigma > 0:
        raise ValueError(f"sigma={sigma!r} is invalid; allowed: a number > 0")
    was_training = model.training
    model.eval()
    try:
        counts0 = class_counts(model, x, sigma, n0, num_classes, gen)
        counts = class_counts(model, x, sigma, n, num_classes, gen)
    finally:
        model.train(was_training)
    predicted = predict(counts, alpha)
    cls, radius = certify(counts0, counts, sigma, alpha)
    return Certified(predicted, cls, radius, sigma, n0, n, alpha)
