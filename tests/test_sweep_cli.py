"""`pags sweep` and `pags analyze` without Ray: dry runs, bad input, refused directories.

Every bad input exits 2 with one line on stderr, before any trial starts, and writes nothing.
"""

import json
import os
import socket

import pytest

from sweep.cli import main
from sweep.experiment import SWEEP_FILE, claim
from sweep.plan.config import from_preset

TINY = ["--methods", "none,randsmooth", "--strengths", "0.5", "--epochs", "1"]


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dry_run_prints_the_trial_table_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "exp"
    code, out, err = run(
        capsys, "sweep", "--preset", "digits-quick", "--output", str(out_dir), "--dry-run"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("preset digits-quick: digits-distractor, 16 trials (grid)")
    assert "(new)" in lines[1]
    rows = [ln for ln in lines if ln.strip()[:1].isdigit()]
    assert len(rows) == 16
    assert sum(" gradnorm " in r for r in rows) == 5 and "lambda=100" in out
    assert not out_dir.exists()


def test_dry_run_of_a_search_shows_the_plan(tmp_path, capsys):
    code, out, _ = run(
        capsys,
        "sweep",
        "--preset",
        "digits-quick",
        "--methods",
        "none,gradnorm",
        "--search",
        "optuna",
        "--trials",
        "6",
        "--output",
        str(tmp_path / "s"),
        "--dry-run",
    )
    assert code == 0
    assert "14 trials (optuna search)" in out  # 2 baseline seeds + 6 strengths x 2 seeds
    assert "search gradnorm: 6 trials, Optuna TPE seed 0, lambda in [0.01, 100]" in out
    assert "(mean of 2 seeds per strength), test accuracy >= baseline - 0.05" in out


def test_a_search_without_trials_uses_the_documented_default(tmp_path, capsys):
    args = ["--preset", "digits", "--methods", "gradnorm", "--search", "optuna", "--dry-run"]
    code, out, _ = run(capsys, "sweep", *args, "--output", str(tmp_path / "s"))
    assert code == 0
    assert "18 trials (optuna search)" in out and "search gradnorm: 8 trials" in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--methods", "none,bogus"], "method 'bogus'"),
        (["--strengths", "-1"], "strength -1.0"),
        (["--strengths", "abc"], "'abc' is not a comma-separated list"),
        (["--seeds", "0"], "seeds=0"),
        (["--seeds", "two"], "invalid int value: 'two'"),
        (["--epochs", "0"], "epochs=0"),
        (["--set", "bogus=1"], "'bogus'"),
        (["--set", "lr=abc"], "lr='abc'"),
        (["--set", "method=none"], "use --methods"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5"),
        (["--search", "optuna", "--trials", "0"], "--trials 0"),
        (["--search", "optuna", "--objective", "nope"], "objective 'nope' is unknown; allowed:"),
        (["--objective", "alignment"], "--objective is only for a search"),
        (["--trials", "4"], "--trials is only for a search"),
        (["--search", "optuna", "--max-accuracy-drop", "2"], "--max-accuracy-drop 2"),
        (["--search", "optuna", "--trials", "2", "--set", "measure=false"], "measure=true"),
        (["--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster at 127.0.0.1:"),
        (["--address", "nonsense"], "--address 'nonsense' is invalid"),
        (["--output", "{file}/exp"], "is not a directory"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, needle):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    args = [a.format(port=closed_port(), file=afile) for a in args]
    out_dir = tmp_path / "exp"
    if "--preset" not in args:
        args = ["--preset", "digits-quick", *args]
    if "--output" not in args:
        args += ["--output", str(out_dir)]
    code, out, err = run(capsys, "sweep", *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and needle in lines[0], err
    assert lines[0].startswith("pags: error: ")
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


def test_a_different_sweep_is_refused_naming_the_difference(tmp_path, capsys):
    exp = tmp_path / "exp"
    claim(str(exp), from_preset("digits-quick", epochs=2))
    before = (exp / SWEEP_FILE).read_bytes()
    code, _, err = run(
        capsys,
        "sweep",
        "--preset",
        "digits-quick",
        "--epochs",
        "3",
        "--output",
        str(exp),
        "--dry-run",
    )
    assert code == 2
    assert "holds a different sweep: epochs (stored 2, requested 3)" in err
    assert len(err.strip().splitlines()) == 1
    assert (exp / SWEEP_FILE).read_bytes() == before and os.listdir(exp) == [SWEEP_FILE]
    code, out, _ = run(
        capsys,
        "sweep",
        "--preset",
        "digits-quick",
        "--epochs",
        "2",
        "--output",
        str(exp),
        "--dry-run",
    )
    assert code == 0 and "(resume: same sweep)" in out


def test_results_without_a_sweep_config_are_refused(tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "trials.parquet").write_bytes(b"not ours")
    code, _, err = run(
        capsys, "sweep", "--preset", "digits-quick", "--output", str(exp), "--dry-run"
    )
    assert code == 2 and "without sweep_config.json" in err
    assert (exp / "trials.parquet").read_bytes() == b"not ours"


def test_storage_puts_the_experiment_under_the_storage_root(tmp_path, capsys):
    code, out, _ = run(
        capsys,
        "sweep",
        "--preset",
        "digits-quick",
        *TINY,
        "--storage",
        str(tmp_path / "shared"),
        "--output",
        "results/mine",
        "--dry-run",
    )
    assert code == 0
    assert f"output: {tmp_path / 'shared' / 'mine'} (new)" in out


def test_sweep_config_json_is_the_sweeps_identity(tmp_path):
    sweep = from_preset("digits-quick", epochs=2)
    claim(str(tmp_path), sweep)
    stored = json.loads((tmp_path / SWEEP_FILE).read_text())
    assert stored["config_id"] == sweep.config_id and stored["overrides"]["epochs"] == 2


def test_analyze_unreadable_directory_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, "analyze", str(tmp_path / "missing"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err


def test_a_rerun_with_another_max_failures_is_refused(tmp_path, capsys):
    """Tune keeps the retries a sweep started with; a changed --max-failures would be ignored
    silently, so it is refused, naming both values. The same value resumes."""
    exp = tmp_path / "exp"
    claim(str(exp), from_preset("digits-quick", epochs=2), max_failures=3)
    args = ["--preset", "digits-quick", "--epochs", "2", "--output", str(exp), "--dry-run"]
    code, _, err = run(capsys, "sweep", *args, "--max-failures", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--max-failures 5 differs from the 3 this sweep started with" in err
    code, out, err = run(capsys, "sweep", *args, "--max-failures", "3")
    assert code == 0 and "resume: same sweep" in out, err


def test_score_option_reaches_the_config_and_the_dry_run(tmp_path, capsys):
    """`--score edm:PATH` (the paper's score) is a config override shown by the dry run; a
    missing file or an unknown kind is one line, exit 2."""
    import torch

    path = tmp_path / "edm.pt"
    torch.save(torch.nn.Identity(), path)
    code, out, err = run(capsys, "sweep", "--preset", "cifar10", "--score", f"edm:{path}",
                         "--output", str(tmp_path / "exp"), "--dry-run")  # fmt: skip
    assert code == 0, err
    assert f"measures: score edm:{path} at sigma 0.25" in out
    sweep = from_preset("cifar10", sets={"score": f"edm:{path}"})
    assert ("score", f"edm:{path}") in sweep.overrides
    for bad, needle in ((f"edm:{tmp_path}/none.pkl", "no file at"), ("mine", "allowed: denoiser")):
        code, out, err = run(capsys, "sweep", "--preset", "cifar10", "--score", bad, "--dry-run")
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
