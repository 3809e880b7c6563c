"""The plain trial loop: determinism, exact resume, divergence as data."""

import math

import pytest

from trainables.config import TrialConfig
from trainables.loop import load_checkpoint, run_trial, save_checkpoint

FAST = dict(train_subset=256, epochs=3, measure=False, batch_size=64)


def _curve(result):
    return [(h["train_loss"], h["test_accuracy"]) for h in result.history]


@pytest.mark.parametrize("method,strength", [("gradnorm", 0.5), ("randsmooth", 0.3)])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, method, strength):
    cfg = TrialConfig.from_dict({**FAST, "method": method, "strength": strength})
    full = run_trial(cfg)
    path = str(tmp_path / "ckpt.pt")

    class Stop(Exception):
        pass

    def stop_after_first(metrics, make_checkpoint):
        save_checkpoint(make_checkpoint(), path)
        if metrics["epoch"] == 1:
            raise Stop  # the process "dies" after epoch 1's checkpoint

    with pytest.raises(Stop):
        run_trial(cfg, on_epoch=stop_after_first)
    resumed = run_trial(cfg, checkpoint=load_checkpoint(path))
    assert resumed.epochs_trained == 3 and len(resumed.history) == 3
    assert _curve(resumed) == _curve(full)


def test_same_seed_same_run_different_seed_different_run():
    cfg = TrialConfig.from_dict({**FAST, "epochs": 1})
    assert _curve(run_trial(cfg)) == _curve(run_trial(cfg))
    assert _curve(run_trial(cfg.replace(seed=1))) != _curve(run_trial(cfg))


def test_nonfinite_loss_ends_the_trial_as_diverged():
    # a learning rate this large sends the weights, then the loss, to infinity
    cfg = TrialConfig.from_dict({**FAST, "optimizer": "sgd", "schedule": "constant", "lr": 1e30})
    result = run_trial(cfg)
    assert result.status == "diverged"
    assert result.epochs_trained == 1
    assert math.isnan(result.summary["train_loss"])


def test_trains_above_chance():
    cfg = TrialConfig.from_dict({"epochs": 4, "measure": False})
    assert run_trial(cfg).summary["test_accuracy"] > 0.5
