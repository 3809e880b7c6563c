"""The method registry: every fact of a robust-training method in one record.

One `Method` per objective: what its `strength` means (symbol and unit), whether it is a robust
method or the baseline, what a training step costs, how its strength converts to the reference
code's scale (tml-tuebingen/pags), the one learning-rate rule built on that scale, and its
colour in figures. Torch-free, so the analysis reads it too; trainables/objectives.py attaches
each method's loss to the same names (and checks at import that the two agree), and
trainables/config.py validates `TrialConfig.method` against `METHODS`.

Adding a method: one `Method(...)` line here, one loss in trainables/objectives.py.

Reference scales (docs/method.md). Gradient norm: the reference code's penalty is 1e5 / B^2
times ours, so lambda_ref = lambda * B^2 / 1e5. PGD: the reference projects the whole batch
onto one L2 ball of radius eps_ref, so one example gets about eps_ref / sqrt(B): eps_ref =
eps * sqrt(B). Smoothness and noise augmentation: the same scale as ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

BASELINE = "none"


def to_reference_lambda(lam: float, batch_size: int) -> float:
    return lam * batch_size**2 / 1e5


def from_reference_lambda(lam_ref: float, batch_size: int) -> float:
    return lam_ref * 1e5 / batch_size**2


@dataclass(frozen=True)
class Method:
    name: str
    symbol: str  # what `strength` is for this method (docs/method.md)
    unit: str  # the strength's unit
    robust: bool  # False only for the baseline
    # Forward/backward passes of one training step relative to plain cross-entropy, to start
    # the longest trials first; `per_attack_step` adds one per PGD step (cfg.pgd_steps).
    step_cost: float
    per_attack_step: bool
    # Our strength times this (a function of the batch size) is the reference code's strength.
    reference_scale: Callable[[int], float]
    # The reference code divides the lr by (reference strength / threshold) above this
    # threshold (None: no rule for this method).
    lr_threshold: float | None
    color: str  # in figures

    def lr_rule(self, batch_size: int) -> tuple[float, float] | None:
        """(threshold, scale) of the learning-rate rule at `batch_size`, or None."""
        if self.lr_threshold is None:
            return None
        return (self.lr_threshold, self.reference_scale(batch_size))

    def recipe_lr(self, lr: float, strength: float, batch_size: int) -> float:
        """The lr rule as a dataset recipe applies it (trainables/recipes.py): the reference
        strength computed as the reference code writes it (for gradnorm `to_reference_lambda`,
        which rounds differently from strength * scale in the last bit)."""
        if self.lr_threshold is None:
            return lr
        if self.name == "gradnorm":
            ref = to_reference_lambda(strength, batch_size)
        else:
            ref = strength * self.reference_scale(batch_size)
        return lr / (ref / self.lr_threshold) if ref > self.lr_threshold else lr

    def cost(self, pgd_steps: int) -> float:
        """Relative cost of one training step."""
        return self.step_cost + (pgd_steps if self.per_attack_step else 0)


def scaled_lr(base_lr: float, strength: float, rule: tuple[float, float]) -> float:
    """`base_lr` under the learning-rate `rule` = (threshold, scale) at `strength`: divided by
    (strength * scale / threshold) when strength * scale exceeds the threshold."""
    threshold, scale = rule
    ref = strength * scale
    return base_lr / (ref / threshold) if ref > threshold else base_lr


def _same(_batch_size: int) -> float:
    return 1.0


def _gradnorm_scale(batch_size: int) -> float:
    return batch_size**2 / 1e5  # to_reference_lambda


def _pgd_scale(batch_size: int) -> float:
    return math.sqrt(batch_size)


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", "strength", "-", False, 1.0, False, _same, None, "k"),
        Method("gradnorm", "lambda", "-", True, 3.0, False, _gradnorm_scale, 0.01, "tab:blue"),
        Method("smoothness", "lambda", "-", True, 2.0, False, _same, 10.0, "tab:orange"),
        Method("randsmooth", "sigma", "input units", True, 1.0, False, _same, None, "tab:green"),
        Method("pgd_l2", "epsilon", "input units", True, 1.0, True, _pgd_scale, 100.0,
               "tab:purple"),
    )
}  # fmt: skip
METHODS: tuple[str, ...] = tuple(REGISTRY)
ROBUST_METHODS: tuple[str, ...] = tuple(m for m in METHODS if REGISTRY[m].robust)
# What `strength` means for each method (docs/method.md, "Robust training objectives").
STRENGTH_SYMBOL: dict[str, str] = {m: REGISTRY[m].symbol for m in METHODS}
METHOD_COLORS: dict[str, str] = {m: REGISTRY[m].color for m in METHODS}


def method(name: str) -> Method:
    """The record of method `name`; an unknown name raises KeyError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None
