"""The method registry (analysis/results/methods.py): one record per method, read by the
objectives, the config, the presets, the launcher and the figures."""

from __future__ import annotations

import math

import pytest

from analysis.results.errors import InputError
from analysis.results.methods import METHODS, REGISTRY, ROBUST_METHODS, STRENGTH_SYMBOL
from sweep.plan.presets import paper_lr_rules
from sweep.tune.launch import trial_cost
from trainables.config import TrialConfig
from trainables.objectives import OBJECTIVES


def test_every_method_has_a_loss_and_every_loss_a_record():
    assert set(OBJECTIVES) == set(METHODS)
    assert ROBUST_METHODS == ("gradnorm", "smoothness", "randsmooth", "pgd_l2")
    assert STRENGTH_SYMBOL["pgd_l2"] == "epsilon" and STRENGTH_SYMBOL["randsmooth"] == "sigma"


def test_config_validates_against_the_registry():
    with pytest.raises(InputError, match="pgd_l2"):  # the message lists the known methods
        TrialConfig.from_dict({"method": "fgsm"})


def test_pgd_cost_counts_its_attack_steps():
    """The launcher's cost of a PGD trial grows with its steps (a flat table once missed it)."""
    base = {"method": "pgd_l2", "strength": 0.5, "epochs": 2}
    few, many = (TrialConfig.from_dict({**base, "pgd_steps": k}) for k in (2, 10))
    assert trial_cost(many) / trial_cost(few) == pytest.approx((1 + 10) / (1 + 2))
    gradnorm = TrialConfig.from_dict({"method": "gradnorm", "strength": 0.5, "epochs": 2})
    assert trial_cost(gradnorm) == 3 * trial_cost(gradnorm.replace(method="none", strength=0))


def test_paper_lr_rules_are_the_reference_codes_thresholds():
    rules = paper_lr_rules(128)
    assert set(rules) == {"gradnorm", "smoothness", "pgd_l2"}
    assert rules["gradnorm"] == (0.01, 128**2 / 1e5)
    assert rules["smoothness"] == (10.0, 1.0)
    assert rules["pgd_l2"] == (100.0, math.sqrt(128))
    # the recipe's rule is the same rule: lr divided by lambda_ref / 0.01 above 0.01
    assert REGISTRY["gradnorm"].recipe_lr(0.1, 1.0, 128) == pytest.approx(0.1 / (0.16384 / 0.01))
    assert REGISTRY["gradnorm"].recipe_lr(0.1, 0.01, 128) == 0.1
