"""Robust accuracy (trainables/measure/robustness.py): the radius, the attack's contract, and
the three sanity checks every robustness paper relies on."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import load_dataset
from trainables.loop import run_trial
from trainables.measure.robustness import robust_correct, standard_radius


def test_standard_radius_is_robustbench_scaled_by_sqrt_d():
    assert standard_radius(3 * 32 * 32) == pytest.approx(0.5)  # RobustBench CIFAR-10 L2
    assert standard_radius(1 * 28 * 14) == pytest.approx(0.5 * math.sqrt(392 / 3072))  # 0.179
    assert standard_radius(3 * 64 * 64) == pytest.approx(1.0)


class _Linear(nn.Module):
    """Two classes split by the hyperplane w.x = b: the exact L2 robust accuracy at radius r is
    the share of correctly classified points farther than r from it."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w.flatten(), b

    def forward(self, x):
        s = x.flatten(1) @ self.w - self.b
        return torch.stack([-s, s], 1)


def test_linear_classifier_exact_robust_accuracy():
    """APGD finds the closest point of the hyperplane: robust accuracy equals the share of
    points farther than r from it (all points inside [0, 1] so clipping cannot help)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 6, 6, generator=gen)
    w = w / w.norm()
    x = 0.3 + 0.4 * torch.rand(64, 1, 6, 6, generator=gen)
    b = float((x.flatten(1) @ w.flatten()).median())
    model = _Linear(w, b)
    y = (x.flatten(1) @ w.flatten() > b).long()
    dist = (x.flatten(1) @ w.flatten() - b).abs()
    for r in (0.02, 0.05, 0.1):
        ok = robust_correct(model, x, y, r)
        expected = (dist > r).float()
        # a point within 1% of the boundary distance may go either way
        clear = (dist - r).abs() > 0.01 * r
        assert torch.equal(ok[clear], expected[clear]), r


@functools.lru_cache(maxsize=4)
def _digits_model(method: str, strength: float) -> nn.Module:
    cfg = TrialConfig.from_dict(dict(
        dataset="digits-distractor", method=method, strength=strength, epochs=3, batch_size=32,
        lr=3e-3, measure=False, train_subset=1500,
    ))  # fmt: skip
    bundle = _bundle()
    torch.manual_seed(0)
    result_model = {}

    def keep(metrics, make_checkpoint):
        result_model["state"] = make_checkpoint()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_trial(cfg, bundle=bundle, on_epoch=keep)
    finally:
        torch.set_num_threads(threads)
    from trainables.models import build_model

    model = build_model(cfg.model, bundle.shape[0], bundle.num_classes, cfg.activation)
    model.load_state_dict(result_model["state"]["model"])
    return model.eval()


@functools.lru_cache(maxsize=1)
def _bundle():
    return load_dataset("digits-distractor", 0)


def _eval_points(n: int = 96):
    bundle = _bundle()
    xs, ys = zip(*(bundle.test[i] for i in range(n)), strict=True)
    return torch.stack(xs), torch.as_tensor(ys)


@pytest.mark.slow
def test_robust_accuracy_sanity_on_digits():
    """(i) robust <= clean; (ii) it falls as the radius grows; (iii) a pgd_l2-trained model keeps
    more of it than the baseline at twice the standard radius (3 epochs each, 1,500 images)."""
    x, y = _eval_points()
    base, adv = _digits_model("none", 0.0), _digits_model("pgd_l2", 0.5)
    r0 = standard_radius(x[0].numel())
    with torch.no_grad():
        clean = (base(x).argmax(1) == y).float().mean()
    accs = [float(robust_correct(base, x, y, r).mean()) for r in (0.5 * r0, r0, 2 * r0, 4 * r0)]
    assert accs[0] <= clean
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)) and accs[-1] < accs[0]
    assert accs[-1] < 0.5 * float(clean)  # the attack does bite at 4x the radius
    robust_adv = [float(robust_correct(adv, x, y, r).mean()) for r in (r0, 2 * r0)]
    print("baseline", float(clean), accs, "pgd_l2 eps 0.5", robust_adv)
    assert robust_adv[1] > accs[2] + 0.1, (robust_adv, accs)
