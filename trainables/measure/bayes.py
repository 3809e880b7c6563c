"""The data's Bayes gradient grad_x log p(y | x): exact on the oracle sets, estimated from the
denoiser elsewhere (docs/method.md, "Identifiable alignment").

Why this target: cross-entropy determines a classifier's log p(y | x) (its log-softmax), not its
logits (a shift of all logits is invisible to the loss), so grad_x log p(y | x) is the input
gradient a trained model's loss pins down, and the data's own Bayes posterior has one to
compare it with. By Bayes' rule log p(y | x) = log p(x | y) - log p(x) + log p(y), so

    grad_x log p_sigma(y | x) = score_sigma(x | y) - score_sigma(x)

(Tweedie: both scores come from one label-dropout denoiser; Ganz, Kawar & Elad 2023 use the same
target). The estimate is of the sigma-smoothed posterior; on the oracle sets
`exact_bayes_gradient` gives the clean posterior's gradient and `exact_smoothed_bayes_gradient`
the smoothed one, so the estimate's error splits into smoothing bias and denoiser error.
"""

from __future__ import annotations

import torch

from trainables.measure.score import ScoreFn


def bayes_gradient_estimate(score: ScoreFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """score(x | y) - score(x) `(B, C, H, W)` for images x `(B, C, H, W)` and classes y `(B,)`;
    needs a class-conditional score (ValueError otherwise)."""
    if not score.conditional:
        raise ValueError(f"score {score.name} is unconditional: no Bayes-gradient estimate")
    return score(x, y) - score(x)


def exact_bayes_gradient(oracle, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x log p(y_i | x_i) of the generating distribution, `(B, C, H, W)` float64, by
    autograd of the oracle's log-softmaxed Bayes logits (log-softmax makes unnormalized logits,
    as the linear set's, into log-posteriors; it leaves normalized ones unchanged)."""
    xd = x.detach().to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        logp = oracle.bayes_logits(xd).log_softmax(1).gather(1, y.long()[:, None]).sum()
        (grad,) = torch.autograd.grad(logp, xd)
    return grad.reshape(x.shape)


def exact_smoothed_bayes_gradient(oracle, x: torch.Tensor, y: torch.Tensor, sigma: float):
    """grad_x log p_sigma(y | x) from the oracle's exact scores, `(B, C, H, W)` float64: what
    `bayes_gradient_estimate` estimates at the same sigma."""
    x64 = x.detach().to(torch.float64)
    return oracle.score(x64, sigma, y) - oracle.score(x64, sigma)
