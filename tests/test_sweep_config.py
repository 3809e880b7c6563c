"""Presets and sweep configs: what each preset runs, overrides, identity and differences."""

import math

import numpy as np
import pytest

from sweep.plan.config import first_difference, from_preset
from sweep.plan.presets import PRESETS, ROBUST_METHODS, get_preset
from trainables.objectives import from_reference_lambda
from trainables.recipes import RECIPES


def test_every_preset_expands_to_valid_trials():
    for name in PRESETS:
        sweep = from_preset(name)
        trials = sweep.trial_configs()
        assert trials, name
        ids = [t.config_id for t in trials]
        assert len(set(ids)) == len(ids), f"{name}: duplicate trials"
        assert {t.dataset for t in trials} == {get_preset(name).dataset}


def test_digits_quick_spans_weak_to_excessive_for_three_methods_plus_baseline():
    sweep = from_preset("digits-quick")
    trials = sweep.trial_configs()
    assert set(sweep.methods) >= {"none", "gradnorm", "smoothness", "randsmooth"}
    assert sweep.seeds == 1
    for method in ("gradnorm", "smoothness"):
        s = sweep.strength_grid(method)
        assert len(s) >= 5 and min(s) <= 0.01 and max(s) >= 100
    s = sweep.strength_grid("randsmooth")
    assert len(s) >= 5 and min(s) <= 0.05 and max(s) >= 1.2
    assert sum(t.method == "none" for t in trials) == 1
    assert all(t.measure for t in trials)


def test_digits_runs_four_methods_nine_strengths_three_seeds():
    sweep = from_preset("digits")
    assert set(ROBUST_METHODS) <= set(sweep.methods) and sweep.seeds == 3
    assert all(len(sweep.strength_grid(m)) >= 8 for m in ROBUST_METHODS)
    assert len(sweep.trial_configs()) == 3 * (
        1 + sum(len(sweep.strength_grid(m)) for m in ROBUST_METHODS)
    )


def test_gpu_presets_use_the_reference_gradnorm_grid_in_our_units():
    for name in ("mnist-distractor", "cifar10"):
        preset = get_preset(name)
        batch = RECIPES[preset.dataset]["batch_size"]
        expected = [from_reference_lambda(v, batch) for v in np.logspace(-5, 2, 30)]
        assert np.allclose(preset.strengths["gradnorm"], expected, rtol=1e-2)
        assert preset.gpus_per_trial > 0


def test_cifar10_divides_the_lr_above_the_reference_threshold():
    sweep = from_preset("cifar10", methods=["gradnorm"], seeds=1)
    lrs = {t.strength: t.lr for t in sweep.trial_configs()}
    batch = RECIPES["cifar10"]["batch_size"]
    small = min(lrs)
    big = max(lrs)
    assert lrs[small] == pytest.approx(0.025)
    ref = big * batch**2 / 1e5  # reference-scale lambda
    assert lrs[big] == pytest.approx(0.025 / (ref / 0.01), rel=1e-6)


def test_overrides_select_methods_strengths_seeds_epochs_and_fields():
    sweep = from_preset(
        "digits-quick",
        methods=["none", "pgd_l2"],
        strengths=[0.5, 1.0],
        seeds=2,
        epochs=3,
        sets={"train_subset": "128"},
    )
    trials = sweep.trial_configs()
    assert len(trials) == 2 * (1 + 2)
    assert {t.method for t in trials} == {"none", "pgd_l2"}
    assert {t.seed for t in trials} == {0, 1}
    assert all(t.epochs == 3 and t.train_subset == 128 for t in trials)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(methods=["bogus"]), "method 'bogus'"),
        (dict(strengths=[-1.0]), "strength -1.0"),
        (dict(strengths=[math.nan]), "strength nan"),
        (dict(seeds=0), "seeds=0"),
        (dict(epochs=0), "epochs=0"),
        (dict(sets={"bogus": "1"}), "'bogus'"),
        (dict(sets={"lr": "abc"}), "lr='abc'"),
        (dict(sets={"seed": "3"}), "--seeds"),
        (dict(search="optuna", search_trials=0), "--trials 0"),
        (dict(search="optuna", search_trials=2, sets={"measure": "false"}), "measure=true"),
        (dict(search="optuna", search_trials=2, objective="nope"), "objective 'nope'"),
    ],
)
def test_invalid_overrides_name_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=None) as err:
        from_preset("digits-quick", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        from_preset("nope")
    assert "digits-quick" in str(err.value)


def test_identity_and_first_difference():
    a = from_preset("digits-quick")
    assert a.config_id == from_preset("digits-quick").config_id
    b = from_preset("digits-quick", epochs=2)
    assert a.config_id != b.config_id
    assert first_difference(a.to_dict(), a.to_dict()) is None
    assert first_difference(a.to_dict(), b.to_dict()).startswith("epochs (stored 8, requested 2)")
    c = from_preset("digits-quick", strengths=[1.0])
    assert first_difference(a.to_dict(), c.to_dict()).startswith("strengths of gradnorm")


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        (dict(objective="test_accuracy"), "--objective"),
        (dict(search_trials=4), "--trials"),
        (dict(max_accuracy_drop=0.1), "--max-accuracy-drop"),
    ],
)
def test_search_options_without_a_search_are_refused_not_dropped(kwargs, flag):
    with pytest.raises(ValueError) as err:
        from_preset("digits-quick", **kwargs)
    assert str(err.value) == f"{flag} is only for a search; allowed: add --search optuna"


def test_a_search_adds_the_baseline_and_has_documented_defaults():
    search = from_preset("digits", methods=["gradnorm"], search="optuna")
    assert search.methods == ("none", "gradnorm")  # the baseline sets the constraint
    assert search.searched_methods == ("gradnorm",)
    assert (search.seeds, search.search_trials, search.max_accuracy_drop) == (2, 8, 0.05)
    assert [(t.method, t.seed) for t in search.trial_configs()] == [("none", 0), ("none", 1)]
    lo, hi = search.search_bounds("gradnorm")
    assert (lo, hi) == pytest.approx((-2, 2))
    other = from_preset("digits", methods=["gradnorm"], search="optuna", max_accuracy_drop=0.1)
    assert first_difference(search.to_dict(), other.to_dict()).startswith("max_accuracy_drop")
    # A grid's identity does not carry the search-only field (older results still resume).
    assert "max_accuracy_drop" not in from_preset("digits").to_dict()


@pytest.mark.parametrize("drop", [-0.1, 1.5, math.nan])
def test_bad_accuracy_drop_names_the_value(drop):
    with pytest.raises(ValueError, match=r"--max-accuracy-drop .* allowed: a number in \[0, 1\]"):
        from_preset("digits", methods=["gradnorm"], search="optuna", max_accuracy_drop=drop)


def test_cluster_yaml_is_a_valid_launcher_config():
    from pathlib import Path

    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # Ray's own schema and checks
    setup = " ".join(cfg["setup_commands"])
    assert f"ray[default,tune]=={__import__('ray').__version__}" in setup
    assert "pip install --quiet -e ~/pags" in setup
    for cmd in cfg["head_start_ray_commands"][1:] + cfg["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in cmd
