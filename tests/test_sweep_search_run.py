"""The peak search through real Ray Tune and a real Optuna study (`pags sweep --search optuna`):
a constraint nobody meets still ends well, and a search killed mid-run resumes the same study.

Both use the test-accuracy objective with measure=false: seconds per trial instead of minutes,
and the same searcher, study and tables as the alignment objective."""

import signal
import sqlite3

import optuna
import pytest
from sqlalchemy.exc import SQLAlchemyError
from test_reliability_helpers import descendants, finish, reap, reports, start_sweep, wait_until

from analysis import load_results
from analysis.results.layout import STUDY_FILE
from sweep.tune.search import study_name, study_url

pytestmark = pytest.mark.ray

CHEAP = ["--preset", "digits-quick", "--search", "optuna", "--objective", "test_accuracy",
         "--set", "measure=false", "--num-cpus", "2"]  # fmt: skip


def study(exp, method):
    return optuna.load_study(study_name=study_name(method), storage=study_url(exp / STUDY_FILE))


def test_a_constraint_nobody_meets_names_the_closest_trial_exit_0_tables_written(tmp_path):
    """Noise of sigma 4..8 on [0, 1] images leaves chance accuracy; no drop is allowed."""
    exp = tmp_path / "exp"
    proc = start_sweep(*CHEAP, "--methods", "randsmooth", "--strengths", "4,8", "--seeds", "1",
                       "--trials", "2", "--epochs", "2", "--max-accuracy-drop", "0",
                       "--output", exp, cwd=tmp_path)  # fmt: skip
    try:
        log = finish(proc, timeout=300)
    finally:
        reap(descendants(proc.pid))
    assert proc.returncode == 0, log
    assert "randsmooth: no suggested strength kept test accuracy >= " in log, log
    line = next(ln for ln in log.splitlines() if "no suggested strength kept" in ln)
    closest = study(exp, "randsmooth").trials
    best = max(closest, key=lambda t: t.user_attrs["mean_test_accuracy"])
    assert f"closest: Optuna trial {best.number}, sigma=" in line
    res = load_results(exp)
    assert sorted(res.trials["method"]) == ["none", "randsmooth", "randsmooth"]
    searched = res.trials[res.trials["method"] == "randsmooth"]
    assert set(searched["search"]) == {"search-randsmooth"}
    assert sorted(searched["search_trial"]) == [0, 1]
    base = res.trials[res.trials["method"] == "none"]
    assert (base["search"] == "").all() and (base["search_trial"] == -1).all()
    assert all(t.constraints["accuracy"] > 0 for t in closest)


@pytest.mark.slow
def test_a_search_killed_mid_run_resumes_the_same_study(tmp_path):
    exp = tmp_path / "exp"
    args = [*CHEAP, "--methods", "gradnorm", "--trials", "3", "--epochs", "3",
            "--set", "train_subset=256", "--output", exp]  # fmt: skip
    proc = start_sweep(*args, cwd=tmp_path)
    ray_procs = []
    try:

        def some_strengths_told():
            if not (exp / STUDY_FILE).exists():
                return None  # (opening it here would create it)
            try:
                done = [t for t in study(exp, "gradnorm").trials if t.state.is_finished()]
            except (KeyError, sqlite3.Error, SQLAlchemyError, optuna.exceptions.OptunaError):
                return None  # not created yet, or locked by the driver right now
            return done if 1 <= len(done) < 3 else None

        wait_until("a strength told, not all", some_strengths_told, proc, timeout=300)
        ray_procs = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        finish(proc, timeout=30)
    finally:
        reap(ray_procs)
    assert proc.returncode == -signal.SIGKILL
    before = {t.number: t for t in study(exp, "gradnorm").trials}
    told = {n: t for n, t in before.items() if t.state.is_finished()}
    lines_before = {c: len(r) for c, r in reports(exp).items()}
    finished = {c: r for c, r in reports(exp).items() if r[-1]["status"] == "completed"}

    rerun = start_sweep(*args, cwd=tmp_path)
    try:
        log = finish(rerun, timeout=300)
    finally:
        reap(descendants(rerun.pid))
    assert rerun.returncode == 0, log
    assert "resuming sweep" in log and "best gradnorm strength: lambda=" in log

    after = study(exp, "gradnorm").trials
    assert [t.number for t in after] == [0, 1, 2]  # the same study, nothing asked twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    for n, t in told.items():  # told before the kill: untouched
        assert (after[n].value, after[n].params, after[n].datetime_complete) == (
            t.value, t.params, t.datetime_complete)  # fmt: skip
    for n, t in before.items():  # asked before the kill: the same strength, finished now
        assert after[n].params == t.params
    # No trial that finished before the kill trained again (at most its final re-report).
    for cid in finished:
        new = reports(exp)[cid][lines_before[cid] :]
        assert all(r["epoch"] == 3 and r["status"] == "completed" for r in new), new
    res = load_results(exp).trials
    searched = res[res["method"] == "gradnorm"]
    assert len(res) == 2 + 3 * 2 and res["config_id"].is_unique
    assert set(res["status"]) == {"completed"}
    assert searched.groupby("search_trial")["seed"].apply(sorted).tolist() == [[0, 1]] * 3
