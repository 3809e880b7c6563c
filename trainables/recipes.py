"""Per-dataset training recipes: the defaults a trial config starts from.

The paper's recipes (appendix B.2) use SGD with momentum and step decay; they are kept for
mnist-distractor, cifar10 and imagenet64 (GPU clusters). The small CPU sets use Adam with a
one-cycle schedule, which trained the small softplus CNN best in an early CPU prototype: SGD
at these sizes needed many more epochs.
"""

from __future__ import annotations

from typing import Any

from analysis.results.methods import method, scaled_lr

RECIPES: dict[str, dict[str, Any]] = {
    "digits-distractor": dict(
        model="small-cnn", optimizer="adam", lr=2e-3, schedule="onecycle", epochs=15,
        batch_size=64,
    ),
    "synthetic-manifold": dict(
        model="small-cnn", optimizer="adam", lr=2e-3, schedule="onecycle", epochs=10,
        batch_size=64,
    ),
    "synthetic-curved": dict(
        model="small-cnn", optimizer="adam", lr=2e-3, schedule="onecycle", epochs=10,
        batch_size=64,
    ),
    "synthetic-shapes": dict(
        model="small-cnn", optimizer="adam", lr=2e-3, schedule="onecycle", epochs=10,
        batch_size=64,
    ),
    # Paper: 9 epochs, lr 0.1 decayed x0.1 at epochs 3 and 6.
    "mnist-distractor": dict(
        model="small-cnn", optimizer="sgd", lr=0.1, momentum=0.9, schedule="multistep",
        milestones=(3, 6), epochs=9, batch_size=128,
    ),
    # Paper: ResNet18, SGD lr 0.025, 200 epochs, decay x0.1 at 150 and 175; the reference
    # code trains on 4-pixel random crops with horizontal flips.
    "cifar10": dict(
        model="resnet18-cifar", optimizer="sgd", lr=0.025, momentum=0.9, weight_decay=5e-4,
        schedule="multistep", milestones=(150, 175), epochs=200, batch_size=128,
        augment="crop-flip",
    ),
    # Paper: 90 epochs, batch 4096, lr 0.1 decayed at 30 and 60; PGD 3 steps; the reference
    # code crops with 8-pixel padding and flips.
    "imagenet64": dict(
        model="resnet18-imagenet64", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-5,
        schedule="multistep", milestones=(30, 60), epochs=90, batch_size=4096, pgd_steps=3,
        augment="crop-flip",
    ),
}  # fmt: skip

# The reference code divides the CIFAR-10 learning rate by lambda_ref / 0.01 for gradient-norm
# lambda_ref > 0.01 (otherwise large lambdas diverge at the base rate): the gradient-norm
# method's lr rule (analysis/results/methods.py), applied by the recipe on these datasets.
RECIPE_LR_RULE = {"cifar10": ("gradnorm",)}


def recipe_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """The dataset's recipe with `overrides` on top (a dict for TrialConfig.from_dict)."""
    dataset = overrides.get("dataset", "digits-distractor")
    merged = {**RECIPES.get(dataset, {}), **overrides}
    strength = float(merged.get("strength", 0.0) or 0.0)
    name = merged.get("method")
    if name in RECIPE_LR_RULE.get(dataset, ()) and "lr" not in overrides:
        batch_size = int(merged.get("batch_size", 64))
        merged["lr"] = method(name).recipe_lr(merged["lr"], strength, batch_size)
    return merged


# A preset's learning-rate rule for one method: (threshold, scale), `Method.lr_rule`
# (analysis/results/methods.py, with `scaled_lr`).
LrRule = tuple[float, float]
__all__ = ["RECIPES", "LrRule", "derive_trial_dict", "recipe_config", "scaled_lr"]


def derive_trial_dict(
    dataset: str,
    method: str,
    strength: float,
    seed: int,
    overrides: dict[str, Any] | None = None,
    lr_rule: LrRule | None = None,
) -> dict[str, Any]:
    """The one derivation of a trial's config (a dict for TrialConfig.from_dict): the dataset's
    recipe, then `overrides` (a preset's, then the user's), then the preset's `lr_rule`, which
    scales the configured lr (recipe, preset or user) rather than the recipe's own rule.

    `pags train --preset`, grid sweeps and searched trials all call this, so one (preset,
    method, strength, seed) has one config and one config_id wherever it runs."""
    from trainables.config import TrialConfig

    # Typed first: the recipe's and the preset's rules compute with batch_size and lr.
    base = TrialConfig.typed({"dataset": dataset, **(overrides or {})})
    d = recipe_config({**base, "method": method, "strength": strength, "seed": seed})
    if lr_rule is not None:
        base_lr = recipe_config({**base, "method": "none"})["lr"]
        d["lr"] = scaled_lr(base_lr, strength, tuple(lr_rule))
    return d
