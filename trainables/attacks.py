"""L2 projected gradient ascent (Madry et al.), per example.

The attack differentiates w.r.t. the perturbation only (`torch.autograd.grad(loss, delta)`),
so parameter `.grad` is never touched; it runs with the model in eval mode (BatchNorm uses its
running statistics, as at test time) and restores the model's mode afterwards. Each example
gets its own L2 ball of radius eps: the reference code projected the whole batch as one
vector, which lets a few examples take the whole budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped `(B, 1, 1, 1)` to broadcast over `(B, C, H, W)`."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def pgd_l2(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int
) -> torch.Tensor:
    """Perturbation delta `(B, C, H, W)` with ||delta_i||_2 <= eps that ascends CE(f(x+delta), y).

    Step size 2.5 * eps / steps (Madry et al.'s rule), normalized-gradient steps, zero start
    (deterministic). Pixel range is not clipped: the synthetic set lives outside [0, 1].
    """
    if eps == 0:
        return torch.zeros_like(x)
    was_training = model.training
    model.eval()
    try:
        alpha = 2.5 * eps / steps
        delta = torch.zeros_like(x, requires_grad=True)
        for _ in range(steps):
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta += alpha * grad / _per_example_norm(grad).clamp_min(1e-12)
                delta *= (eps / _per_example_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        return delta.detach()
    finally:
        model.train(was_training)
