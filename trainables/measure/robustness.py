"""Robust accuracy under a standard L2 attack (docs/method.md, "Robust accuracy").

The attack comes from `pyautoattack`, Croce & Hein's own AutoAttack code (github.com/fra31/
auto-attack) as packaged on PyPI, the implementation RobustBench evaluates its zoo with:
- "apgd-ce" (default): APGD on the cross-entropy loss, L2, `ROBUST_ITERS` iterations, one
  restart. The cheapest member of AutoAttack and the one that does most of its work on
  undefended and adversarially trained models alike; an upper bound on the true robust accuracy.
- "autoattack": the standard AutoAttack ensemble (APGD-CE, APGD-T, FAB-T, Square; 5 restarts,
  100 iterations, 5000 Square queries): RobustBench's number, and far slower.
(torchattacks also ships both, but its 3.5.1 release pins requests~=2.25.1, which would
downgrade what Ray and boto need.)

Radius: RobustBench's CIFAR-10 L2 radius 0.5 (pixels in [0, 1], d = 3072), scaled by
sqrt(d / 3072) for other image sizes, as the sensitivity step sizes are (`protocol.py`): a
perturbation of fixed per-pixel size has an L2 norm growing as sqrt(d). Digits with a distractor
(d = 392): 0.179. The attack clips images to [0, 1] (the data's range, DataBundle).
Evaluated on the trial's evaluation points (the shared artifacts' x, y), in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.config import ROBUST_ATTACKS as ATTACKS
from trainables.measure.protocol import CIFAR_DIM

DEFAULT_ATTACK = "apgd-ce"
CIFAR_L2_RADIUS = 0.5  # RobustBench's CIFAR-10 L2 threat model
ROBUST_ITERS = 20  # APGD iterations per point (AutoAttack uses 100; BENCHMARKS.md: cost)


def standard_radius(d: int) -> float:
    """The L2 radius for images with d values in [0, 1]: 0.5 * sqrt(d / 3072)."""
    return CIFAR_L2_RADIUS * math.sqrt(d / CIFAR_DIM)


def attack_name(attack: str, iters: int = ROBUST_ITERS) -> str:
    """The name recorded with every robust-accuracy row, e.g. "apgd-ce-l2@20"."""
    return f"{attack}-l2@{iters}" if attack == "apgd-ce" else f"{attack}-l2"


def robust_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: float,
    attack: str = DEFAULT_ATTACK,
    iters: int = ROBUST_ITERS,
    seed: int = 0,
) -> torch.Tensor:
    """Per point `(N,)` float 0/1: 1 where the model classifies x + delta correctly for the
    worst delta the attack found with ||delta||_2 <= radius. Points it misclassifies clean count
    0 (robust accuracy <= clean accuracy by construction, as RobustBench counts it)."""
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r} is unknown; allowed: {', '.join(ATTACKS)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        if attack == "none" or radius == 0:
            return clean.float()
        x_adv = _attack(model, x, y, radius, attack, iters, seed)
        with torch.no_grad():
            # The library's output is checked, not trusted: inside the ball and in [0, 1].
            norms = (x_adv - x).flatten(1).norm(dim=1)
            if bool((norms > radius * (1 + 1e-4) + 1e-6).any()):
                raise RuntimeError(f"{attack} left the L2 ball of radius {radius}")
            robust = model(x_adv).argmax(1) == y
        return (clean & robust).float()
    finally:
        model.train(was_training)


def _attack(model, x, y, radius, attack, iters, seed) -> torch.Tensor:
    import logging

    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack

    if attack == "apgd-ce":
        apgd = APGDAttack(
            model, n_iter=iters, norm="L2", n_restarts=1, eps=radius, seed=seed, loss="ce",
            device=x.device,
        )  # fmt: skip
        # perturb() reseeds torch's global generator; keep the caller's stream as it was
        state = torch.random.get_rng_state()
        try:
            return apgd.perturb(x, y).detach()
        finally:
            torch.random.set_rng_state(state)
    aa = AutoAttack(model, norm="L2", eps=radius, seed=seed, version="standard", device=x.device)
    aa.logger.setLevel(logging.WARNING)
    state = torch.random.get_rng_state()
    try:
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.detach()
    finally:
        torch.random.set_rng_state(state)
