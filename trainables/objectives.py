"""Robust training objectives (docs/method.md, paper appendix B.1), one interface, one knob.

Every objective is `loss(model, x, y, strength, cfg, gen) -> scalar tensor` with x `(B,C,H,W)`,
y `(B,)`, and `gen` the trial's torch.Generator (on x's device) for all noise, so a seed fixes
the run. At strength 0 each one equals plain cross-entropy.

Gradient-norm scale. We use the clean per-example form
    CE + lambda * mean_i || grad_x CE(f(x_i), y_i) ||^2 .
The reference code (tml-tuebingen/pags, utils/regularized_loss.py) differentiates the batch-mean
CE (each example's gradient carries 1/B), squares and sums, multiplies by 1e5 and divides by B,
so its penalty is 1e5 / B^2 times ours:
    lambda_ours = lambda_ref * 1e5 / B^2,    lambda_ref = lambda_ours * B^2 / 1e5
(`to_reference_lambda` / `from_reference_lambda`; e.g. at B = 128, lambda_ref 1 = ours 6.1).

Every other fact of a method (strength symbol, step cost, reference scale, lr rule) is its
record in analysis/results/methods.py; `OBJECTIVES` attaches the loss to the same names, and
the check at the bottom keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from analysis.results.methods import METHODS, from_reference_lambda, to_reference_lambda
from trainables.attacks import pgd_l2
from trainables.registry import Registry

__all__ = ["OBJECTIVES", "Objective", "from_reference_lambda", "to_reference_lambda"]

Objective = Callable[..., torch.Tensor]
OBJECTIVES: Registry = Registry("method")


def _noise(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    return sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


@OBJECTIVES.register("none")
def cross_entropy(model: nn.Module, x, y, strength: float, cfg, gen) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


@OBJECTIVES.register("gradnorm")
def gradient_norm(model: nn.Module, x, y, strength: float, cfg, gen) -> torch.Tensor:
    """CE + lambda * mean_i ||grad_x CE_i||^2 by double backpropagation."""
    if strength == 0:
        return cross_entropy(model, x, y, 0.0, cfg, gen)
    x = x.detach().requires_grad_(True)
    per_example = F.cross_entropy(model(x), y, reduction="none")
    # Summing keeps each example's own gradient (examples are independent given eval-free
    # layers; BatchNorm couples them slightly, as in the reference code).
    (grad,) = torch.autograd.grad(per_example.sum(), x, create_graph=True)
    penalty = grad.float().pow(2).flatten(1).sum(1).mean()  # fp32 even under bf16 autocast
    return per_example.mean() + strength * penalty


@OBJECTIVES.register("smoothness")
def smoothness(model: nn.Module, x, y, strength: float, cfg, gen) -> torch.Tensor:
    """CE + lambda * sum_i ||f(x_i) - f(x_i + delta_i)||^2 / B, delta ~ N(0, smooth_sigma^2 I),
    f the logits."""
    if strength == 0:
        return cross_entropy(model, x, y, 0.0, cfg, gen)
    # Always in fp32: the penalty is the difference of two nearby outputs, and bf16 rounding
    # (about 0.4% of each logit) is as large as that difference (under autocast it was 44% off
    # in tests/test_recipe_training.py). No effect without autocast.
    with torch.autocast(x.device.type, enabled=False):
        logits = model(x)
        noisy = model(x + _noise(x, cfg.smooth_sigma, gen))
    penalty = (logits - noisy).pow(2).sum(1).mean()
    return F.cross_entropy(logits, y) + strength * penalty


@OBJECTIVES.register("randsmooth")
def randomized_smoothing(model: nn.Module, x, y, strength: float, cfg, gen) -> torch.Tensor:
    """Noise augmentation: CE(f(x + delta), y), delta ~ N(0, sigma^2 I), sigma = strength."""
    if strength == 0:
        return cross_entropy(model, x, y, 0.0, cfg, gen)
    return F.cross_entropy(model(x + _noise(x, strength, gen)), y)


@OBJECTIVES.register("pgd_l2")
def adversarial_l2(model: nn.Module, x, y, strength: float, cfg, gen) -> torch.Tensor:
    """CE(f(x + delta*), y), delta* from `cfg.pgd_steps` L2 PGD steps in the radius-eps ball."""
    delta = pgd_l2(model, x, y, strength, cfg.pgd_steps)
    return F.cross_entropy(model(x + delta), y)


if set(OBJECTIVES) != set(METHODS):  # a method's record without a loss, or a loss without one
    raise RuntimeError(
        f"objectives {sorted(OBJECTIVES)} and the method registry {sorted(METHODS)} differ "
        "(analysis/results/methods.py)"
    )
