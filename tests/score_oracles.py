"""Score oracles for the tests: exact scores to check the product's estimated ones against.

`kde_score` / `KDEScore`: the exact score of the Gaussian-smoothed empirical distribution of a
training set; `ExactScore`: the synthetic set's closed-form score. Neither is used by a trial
(the product estimates the score with a denoiser, trainables/measure/score.py), so they live
beside the tests that use them.
"""

from __future__ import annotations

import math

import torch

from trainables.measure.score import DEFAULT_SCORE_SIGMA


def kde_score(
    x: torch.Tensor,
    x_train: torch.Tensor,
    sigma: float,
    y: torch.Tensor | None = None,
    y_train: torch.Tensor | None = None,
    chunk: int = 1024,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Exact score of p_sigma = mean_i N(x_i, sigma^2 I) over x_train `(N, C, H, W)` at x (B, ...).

    grad log p_sigma(x) = (sum_i w_i x_i - x) / sigma^2, w = softmax_i(-||x - x_i||^2 / 2 sigma^2),
    accumulated over chunks of the training set with a running log-sum-exp so memory stays
    O(chunk^2). With y `(B,)` and y_train `(N,)`, only training points of class y count (the
    class-conditional smoothed empirical score). float64 by default: the logits are large at
    small sigma and the distance expansion cancels.
    """
    if y is not None and y_train is None:
        raise ValueError("class-conditional kde_score needs y_train")
    xf = x.reshape(x.shape[0], -1).to(dtype)
    train = x_train.reshape(len(x_train), -1)
    out = torch.empty_like(xf)
    for q0 in range(0, len(xf), chunk):
        q = xf[q0 : q0 + chunk]
        m = torch.full((len(q), 1), -math.inf, dtype=dtype, device=x.device)  # running max logit
        z = torch.zeros_like(m)  # running sum of exp(logit - m)
        acc = torch.zeros_like(q)  # running sum of exp(logit - m) x_i
        for t0 in range(0, len(train), chunk):
            t = train[t0 : t0 + chunk].to(x.device, dtype)
            dist2 = q.pow(2).sum(1, keepdim=True) - 2 * q @ t.T + t.pow(2).sum(1)
            logit = -dist2 / (2 * sigma**2)
            if y is not None:
                yq, yt = y[q0 : q0 + chunk].to(x.device), y_train[t0 : t0 + chunk].to(x.device)
                logit = logit.masked_fill(yq[:, None] != yt[None], -math.inf)
            m_new = torch.maximum(m, logit.max(1, keepdim=True).values)
            # Rows with no admissible point yet keep m = -inf; avoid inf - inf = nan.
            scale = torch.where(m_new > -math.inf, (m - m_new).exp(), torch.zeros_like(m))
            w = (logit - m_new).exp().nan_to_num(0.0)
            z = z * scale + w.sum(1, keepdim=True)
            acc = acc * scale + w @ t
            m = m_new
        out[q0 : q0 + chunk] = (acc / z - q) / sigma**2
    return out.reshape(x.shape).to(x.dtype)


class KDEScore:
    """ScoreFn "kde@<sigma>": smoothed empirical score of a training set (conditional: y_train)."""

    def __init__(
        self,
        x_train: torch.Tensor,
        sigma: float = DEFAULT_SCORE_SIGMA,
        y_train: torch.Tensor | None = None,
    ):
        self.x_train, self.y_train, self.sigma = x_train, y_train, sigma
        self.conditional = y_train is not None
        self.name = f"kde@{sigma:g}"

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None and not self.conditional:
            raise ValueError("KDEScore built without y_train cannot condition on y")
        return kde_score(x, self.x_train, self.sigma, y, self.y_train if y is not None else None)


class ExactScore:
    """ScoreFn "exact@<sigma>" of the synthetic set's oracle (always class-conditional capable)."""

    conditional = True

    def __init__(self, oracle, sigma: float = DEFAULT_SCORE_SIGMA):
        self.oracle, self.sigma = oracle, sigma
        self.name = f"exact@{sigma:g}"

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = None if y is None else y.cpu()
        return self.oracle.score(x.cpu(), self.sigma, y).to(x.device, x.dtype)
