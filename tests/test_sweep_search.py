"""The peak search's Optuna side without Ray (sweep/tune/search.py): seeds per strength, the mean
told once all seeds ended, the accuracy constraint, a study that survives the driver."""

import math
import pickle

import optuna
import pytest

from sweep.tune.search import StrengthSearcher, study_name, study_url, summarize
from trainables.tune_trainable import searched_strength


def make(tmp_path, **kw):
    args = dict(
        url=study_url(tmp_path / "study.db"),
        method="gradnorm",
        bounds=(-2.0, 2.0),
        seeds=2,
        trials=3,
        objective="alignment",
        min_accuracy=0.8,
    )
    return StrengthSearcher(**{**args, **kw})


def end(searcher, tid, alignment, accuracy, status="completed"):
    searcher.on_trial_complete(
        tid, {"status": status, "alignment": alignment, "test_accuracy": accuracy}
    )


def load(tmp_path):
    return optuna.load_study(
        study_name=study_name("gradnorm"), storage=study_url(tmp_path / "study.db")
    )


def test_each_strength_runs_every_seed_and_is_told_their_mean_once(tmp_path):
    s = make(tmp_path)
    a, b = s.suggest("t1"), s.suggest("t2")
    assert (a["seed"], b["seed"]) == (0, 1)
    assert a["log10_strength"] == b["log10_strength"] and -2 <= a["log10_strength"] <= 2
    assert a["search"] == b["search"] == {"name": "search-gradnorm", "trial": 0}
    end(s, "t1", 0.6, 0.90)
    assert load(tmp_path).trials[0].state == optuna.trial.TrialState.RUNNING  # one seed left
    end(s, "t2", 0.8, 0.80)
    t = load(tmp_path).trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert t.value == pytest.approx(0.7)
    assert t.user_attrs["mean_test_accuracy"] == pytest.approx(0.85)
    assert t.constraints == {"accuracy": pytest.approx(0.8 - 0.85)}  # feasible: <= 0


def test_an_interrupted_trial_is_not_an_end_and_the_budget_ends_the_search(tmp_path):
    s = make(tmp_path, trials=1)
    s.suggest("t1"), s.suggest("t2")
    s.on_trial_complete("t1", {"status": "running", "alignment": math.nan})  # Ctrl-C
    assert s.suggest("t3") is None  # the budget is asked; seeds still out
    end(s, "t1", 0.5, 0.9)  # the resumed trial ends: this is its result
    end(s, "t2", 0.6, 0.9)
    assert s.suggest("t4") == "FINISHED"
    (t,) = load(tmp_path).trials
    assert t.user_attrs["values"] == [0.5, 0.6] and t.value == pytest.approx(0.55)


def test_failed_seeds_make_the_strength_infeasible_and_all_failed_fail(tmp_path):
    s = make(tmp_path, seeds=2, trials=2)
    s.suggest("a0"), s.suggest("a1")
    end(s, "a0", 0.9, math.nan, status="diverged")  # no accuracy: counts as 0
    end(s, "a1", 0.7, 0.9)
    s.suggest("b0"), s.suggest("b1")
    s.on_trial_complete("b0", error=True)
    s.on_trial_complete("b1", error=True)
    first, second = load(tmp_path).trials
    assert first.value == pytest.approx(0.8) and first.constraints["accuracy"] > 0
    assert second.state == optuna.trial.TrialState.FAIL


def test_a_strength_asked_before_the_driver_died_is_handed_out_again(tmp_path):
    s = make(tmp_path)
    s.suggest("t1"), s.suggest("t2")
    end(s, "t1", 0.6, 0.9)
    end(s, "t2", 0.6, 0.9)
    saved = tmp_path / "searcher.pkl"
    s.save(str(saved))  # Tune saved its state here ...
    s.suggest("t3")  # ... then the driver asked a strength and died before saving again
    asked = load(tmp_path).trials[1]
    assert asked.state == optuna.trial.TrialState.RUNNING

    restored = pickle.loads(pickle.dumps(make(tmp_path)))  # what Tuner.restore rebuilds
    restored.restore(str(saved))
    again = [restored.suggest(f"r{i}") for i in range(2)]
    assert [c["search"]["trial"] for c in again] == [1, 1]
    assert [c["seed"] for c in again] == [0, 1]
    assert again[0]["log10_strength"] == asked.params["log10_strength"]
    assert len(load(tmp_path).trials) == 2  # nothing asked twice, trial 0 untouched


def test_summary_picks_the_feasible_best_or_names_the_closest_infeasible(tmp_path):
    s = make(tmp_path, trials=2, seeds=1)
    s.suggest("a"), end(s, "a", 0.9, 0.5)  # best alignment, but loses accuracy
    s.suggest("b"), end(s, "b", 0.6, 0.85)
    best = summarize(study_url(tmp_path / "study.db"), "gradnorm")
    assert best["feasible"] and best["optuna_trial"] == 1 and best["value"] == pytest.approx(0.6)
    x = load(tmp_path).trials[1].params["log10_strength"]
    assert best["strength"] == searched_strength(x)

    none_ok = make(tmp_path / "x", trials=2, seeds=1, min_accuracy=0.95)
    (tmp_path / "x").mkdir()
    none_ok.suggest("a"), end(none_ok, "a", 0.9, 0.5)
    none_ok.suggest("b"), end(none_ok, "b", 0.6, 0.85)
    best = summarize(study_url(tmp_path / "x" / "study.db"), "gradnorm")
    assert not best["feasible"] and best["optuna_trial"] == 1  # closest to the threshold
    assert best["mean_test_accuracy"] == pytest.approx(0.85)
