"""Objectives and the L2 attack against naive references."""

import pytest
import torch
import torch.nn.functional as F

from trainables.attacks import pgd_l2
from trainables.config import METHODS, TrialConfig
from trainables.models import build_model
from trainables.objectives import OBJECTIVES, from_reference_lambda, to_reference_lambda


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = build_model("small-cnn", 1, 10)
    x = torch.rand(6, 1, 28, 14)
    y = torch.randint(0, 10, (6,))
    return model, x, y, TrialConfig()


@pytest.mark.parametrize("method", METHODS)
def test_strength_zero_is_cross_entropy(setup, method):
    model, x, y, cfg = setup
    gen = torch.Generator().manual_seed(0)
    loss = OBJECTIVES[method](model, x, y, 0.0, cfg, gen)
    assert torch.allclose(loss, F.cross_entropy(model(x), y), atol=1e-6)


def test_gradnorm_matches_per_example_double_backprop(setup):
    model, x, y, cfg = setup
    lam = 0.7
    loss = OBJECTIVES["gradnorm"](model, x, y, lam, cfg, torch.Generator())
    # naive reference: one example at a time
    penalties = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
        penalties.append(g.pow(2).sum())
    expected = F.cross_entropy(model(x), y) + lam * torch.stack(penalties).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    # and its gradient w.r.t. parameters exists (double backprop kept the graph)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reference_lambda_conversion_round_trip():
    assert to_reference_lambda(from_reference_lambda(0.3, 128), 128) == pytest.approx(0.3)
    assert from_reference_lambda(1.0, 100) == pytest.approx(10.0)


def test_smoothness_penalty_matches_definition(setup):
    model, x, y, cfg = setup
    lam = 2.0
    loss = OBJECTIVES["smoothness"](model, x, y, lam, cfg, torch.Generator().manual_seed(3))
    noise = cfg.smooth_sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    diff = model(x) - model(x + noise)
    expected = F.cross_entropy(model(x), y) + lam * diff.pow(2).sum() / len(x)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_pgd_per_example_ball_untouched_grads_and_mode(setup):
    model, x, y, _ = setup
    x = x.clone()
    x[0] *= 100  # one example with a huge gradient must not take the others' budget
    model.train()
    eps = 0.5
    delta = pgd_l2(model, x, y, eps, steps=5)
    norms = delta.flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-5).all()
    assert (norms > 0.9 * eps).all(), "every example should use (almost) its whole budget"
    assert all(p.grad is None for p in model.parameters())
    assert model.training, "the attack restores the model's mode"
    # it ascends the loss
    assert F.cross_entropy(model(x + delta), y) > F.cross_entropy(model(x), y)


def test_pgd_runs_in_eval_mode():
    seen = []
    model = build_model("small-cnn", 1, 10)
    model.register_forward_pre_hook(lambda m, inp: seen.append(m.training))
    model.train()
    pgd_l2(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), 0.3, steps=2)
    assert seen == [False, False]
