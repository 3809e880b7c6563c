"""Real sweeps through Ray Tune (a local Ray started by `pags sweep`): tables with one row
per trial, rerun = resume without rerunning, a different config refused, the Optuna peak search
with the real measurer, ASHA-stopped trials kept as "stopped"."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis import load_results

try:
    from results_contract import assert_tables_match_the_schema
except ImportError:
    from tests.results_contract import assert_tables_match_the_schema

pytestmark = pytest.mark.ray

PAGS = [sys.executable, "-m", "sweep.cli"]
TINY = [
    "sweep",
    "--preset",
    "digits-quick",
    "--methods",
    "none,randsmooth",
    "--strengths",
    "0.1,0.5",
    "--epochs",
    "2",
    "--set",
    "train_subset=128",
    "--set",
    "measure=false",
    "--num-cpus",
    "2",
]


def pags(*args, cwd=None, timeout=240):
    return subprocess.run([*PAGS, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished tiny sweep stored through a URI (pyarrow's file://, the code path of s3://):
    (local experiment dir, its --storage/--output arguments, first run's process result)."""
    root = tmp_path_factory.mktemp("tiny")
    where = ["--storage", f"file://{root}/shared", "--output", "exp"]
    out = pags(*TINY, *where, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "shared" / "exp", where, out


def test_written_tables_match_the_documented_schema(tiny):
    exp, _, _ = tiny
    assert_tables_match_the_schema(exp, measured=False)


def test_each_trial_logs_its_epochs_in_its_directory(tiny):
    exp, _, _ = tiny
    logs = sorted(exp.glob("tune/*/stdout"))
    assert len(logs) == 3  # the baseline and 2 strengths of randsmooth
    for log in logs:
        text = log.read_text()
        assert "[pags] epoch 1/2: train loss" in text and "[pags] epoch 2/2:" in text, log


def checkpoints(exp: Path) -> list[str]:
    return sorted(str(p.relative_to(exp)) for p in exp.glob("tune/*/checkpoint_*"))


def test_tables_have_exactly_one_row_per_trial(tiny):
    exp, _, out = tiny
    assert f"results: file://{exp}" in out.stdout
    res = load_results(exp)
    assert len(res.trials) == 3 and res.trials["config_id"].is_unique
    assert set(res.trials["status"]) == {"completed"}
    assert sorted(res.trials["strength"]) == [0.0, 0.1, 0.5]
    assert (res.trials["epochs_trained"] == 2).all() and (res.trials["pid"] > 0).all()
    assert set(res.trials["ray_version"]) == {__import__("ray").__version__}
    curve = res.measures[res.measures["measure"] == "test_accuracy"]
    assert len(curve) == 3 * 2
    assert json.loads((exp / "sweep_config.json").read_text())["preset"] == "digits-quick"


def test_rerun_resumes_and_reruns_no_finished_trial(tiny):
    exp, where, _ = tiny
    before = load_results(exp).trials.set_index("config_id")
    ckpts = checkpoints(exp)
    out = pags(*TINY, *where, cwd=exp.parent)
    assert out.returncode == 0, out.stderr
    assert "resuming sweep" in out.stdout
    after = load_results(exp).trials.set_index("config_id")
    assert sorted(after.index) == sorted(before.index)
    # Same worker pid and wall time: the rows come from the first run's trials.
    assert (after.loc[before.index, "pid"] == before["pid"]).all()
    assert (after.loc[before.index, "wall_time_s"] == before["wall_time_s"]).all()
    assert checkpoints(exp) == ckpts


def test_a_different_config_is_refused_and_nothing_overwritten(tiny):
    exp, where, _ = tiny
    tables = {p.name: p.read_bytes() for p in exp.glob("*.parquet")}
    args = [a if a != "2" else "3" for a in TINY]  # --epochs 3
    out = pags(*args, *where, cwd=exp.parent)
    assert out.returncode == 2
    assert "holds a different sweep: epochs (stored 2, requested 3)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in exp.glob("*.parquet")} == tables


def test_optuna_peak_search_with_the_real_measurer(tmp_path):
    exp = tmp_path / "search"
    out = pags(
        "sweep",
        "--preset",
        "synthetic",
        "--methods",
        "none,gradnorm",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--search",
        "optuna",
        "--objective",
        "alignment",
        "--trials",
        "2",
        "--max-accuracy-drop",
        "1",  # one epoch: any strength counts as feasible here
        "--set",
        "eval_points=16",
        "--set",
        "noise_draws=2",
        "--num-cpus",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(exp),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "best gradnorm strength: lambda=" in out.stdout
    best = json.loads((exp / "search_best.json").read_text())["gradnorm"]
    res = load_results(exp)
    assert len(res.trials) == 3 and res.trials["config_id"].is_unique
    searched = res.trials[res.trials["method"] == "gradnorm"]
    assert best["feasible"] and best["optuna_trial"] in set(searched["search_trial"])
    row = searched[searched["search_trial"] == best["optuna_trial"]].iloc[0]
    assert row["strength"] == best["strength"] and row["alignment"] == best["value"]
    lo, hi = 0.01, 100.0  # the preset's gradnorm range
    assert ((searched["strength"] >= lo) & (searched["strength"] <= hi)).all()
    measured = ["alignment", "on_manifold_sensitivity", "off_manifold_sensitivity", "rho1", "rho2"]
    assert np.isfinite(res.trials[measured].to_numpy(dtype=float)).all()
    assert_tables_match_the_schema(exp, measured=True)
    assert {"alignment", "rho1", "rho2"} <= set(res.measures["measure"])
    for cid in res.trials["config_id"]:
        assert (exp / "maps" / f"{cid}.npz").is_file()


def test_asha_stopped_trials_are_kept_as_stopped(tmp_path):
    """ASHA (grace period 1 of 4 epochs) stops a trial whose first-epoch accuracy is below the
    cutoff of those before it. One CPU runs the trials one after another with fixed seeds, so
    which ones it stops is fixed (here: both randsmooth trials, behind the unregularized one)."""
    out = pags(
        "sweep",
        "--preset",
        "digits-quick",
        "--methods",
        "none,randsmooth",
        "--strengths",
        "0.1,8",
        "--epochs",
        "4",
        "--set",
        "measure=false",
        "--num-cpus",
        "1",
        "--asha",
        "--output",
        str(tmp_path / "asha"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr  # stopped is not a failure
    trials = load_results(tmp_path / "asha").trials
    assert set(trials["status"]) <= {"completed", "stopped"}, trials["status"]
    stopped = trials[trials["status"] == "stopped"]
    assert sorted(stopped["method"]) == ["randsmooth", "randsmooth"], stopped
    assert (stopped["epochs_trained"] < 4).all()
    assert (trials.loc[trials["status"] == "completed", "epochs_trained"] == 4).all()
    assert (stopped["error"] == "").all()
    assert "stopped: ended early by ASHA" in out.stdout
