"""One derivation of a trial's config: `pags train --preset` reproduces the sweep's trial.

For every trial of every preset's grid (and for searched strengths), `pags train --preset P
--method M --strength S --seed N --dry-run --json` prints the config_id the sweep gives that
trial, and trains nothing.
"""

import json

import pytest

from sweep.cli import main
from sweep.plan.config import from_preset
from sweep.plan.presets import PRESETS
from trainables.tune_trainable import searched_strength, trial_config


def dry_run(capsys, *args) -> dict:
    assert main(["train", *args, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset", PRESETS.names())
def test_dry_run_gives_the_sweeps_config_id_for_every_grid_trial(preset, capsys):
    trials = from_preset(preset).trial_configs()
    assert trials
    for cfg in trials:
        out = dry_run(
            capsys, "--preset", preset, "--method", cfg.method,
            "--strength", repr(cfg.strength), "--seed", str(cfg.seed),
        )  # fmt: skip
        assert out["config_id"] == cfg.config_id, (cfg.method, cfg.strength, cfg.seed)
        assert out["config"]["lr"] == cfg.lr


@pytest.mark.parametrize("preset", ["cifar10", "mnist-distractor", "digits-quick"])
def test_dry_run_gives_the_config_id_of_a_searched_trial(preset, capsys):
    sweep = from_preset(preset, search="optuna")
    for method in sweep.searched_methods:
        lo, hi = sweep.search_bounds(method)
        for x in (lo, (lo + hi) / 2, hi):
            cfg = trial_config({**sweep.search_space(method), "log10_strength": x, "seed": 1})
            out = dry_run(
                capsys, "--preset", preset, "--method", method,
                "--strength", repr(searched_strength(x)), "--seed", "1",
            )  # fmt: skip
            assert out["config_id"] == cfg.config_id, (method, x)


def test_the_preset_lr_rule_reaches_pags_train(capsys):
    """cifar10's gradient-norm rule divides the lr above lambda_ref = 0.01; smoothness by
    lambda / 10 above 10 (the reference code's rules, sweep/plan/presets.py)."""
    weak = dry_run(capsys, "--preset", "cifar10", "--method", "smoothness", "--strength", "1")
    strong = dry_run(capsys, "--preset", "cifar10", "--method", "smoothness", "--strength", "100")
    assert weak["config"]["lr"] == 0.025
    assert strong["config"]["lr"] == pytest.approx(0.025 / 10)


def test_user_overrides_come_last_and_change_the_id(capsys):
    base = dry_run(capsys, "--preset", "digits-quick", "--method", "none")
    longer = dry_run(capsys, "--preset", "digits-quick", "--method", "none", "--epochs", "3")
    assert base["config"]["epochs"] == 8 and longer["config"]["epochs"] == 3
    assert base["config_id"] != longer["config_id"]


def test_dry_run_refuses_a_dataset_other_than_the_presets(capsys):
    assert (
        main(["train", "--preset", "cifar10", "--dataset", "digits-distractor", "--dry-run"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("pags: error: --dataset 'digits-distractor'") and "cifar10" in err
