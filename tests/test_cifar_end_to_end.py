"""The cifar10 preset end to end on CPU, as a new user meets it, on CIFAR-10 files written in
the real format (a verified local copy: checksums.md5): train, a two-trial sweep, analyze,
and measure the trained checkpoint. Small overrides keep it to minutes; the artifact budgets
are config fields, so the autoencoder and denoiser train 2 epochs each."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from analysis import load_results

try:
    from test_data_external import write_cifar10
except ImportError:
    from tests.test_data_external import write_cifar10

pytestmark = [pytest.mark.slow, pytest.mark.ray]

PAGS = [sys.executable, "-m", "sweep.cli"]
SMALL = ["--set", "train_subset=64", "--set", "batch_size=32", "--set", "eval_points=8",
         "--set", "noise_draws=2", "--set", "ae_max_epochs=2", "--set", "denoiser_max_epochs=2",
         "--epochs", "1"]  # fmt: skip
HEADLINE = ("test_accuracy", "on_manifold_sensitivity", "off_manifold_sensitivity", "rho2",
            "alignment")  # fmt: skip


# One torch thread everywhere: a sweep trial gets its 1 CPU's worth, and the same thread count
# gives the same float summation order, so the same numbers bit for bit.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def pags(*args, cwd=None):
    out = subprocess.run([*PAGS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                         timeout=1500, env=ONE_THREAD)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_cifar10_preset_train_sweep_analyze_measure(tmp_path):
    folder, _ = write_cifar10(tmp_path / "data", per_batch=40, n_test=40)
    names = sorted(p.name for p in folder.iterdir())
    (folder / "checksums.md5").write_text(
        "".join(f"{hashlib.md5((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    )
    where = ["--data-root", tmp_path / "data", "--cache-dir", tmp_path / "cache"]

    out = pags("train", "--preset", "cifar10", "--method", "gradnorm", "--strength", "0.0781",
               *SMALL, *where, "--checkpoint-dir", tmp_path / "ck", "--output", tmp_path / "maps",
               "--device", "cpu", "--json")  # fmt: skip
    trial = json.loads(out.stdout)
    assert trial["status"] == "completed" and trial["config"]["augment"] == "crop-flip"
    summary = trial["summary"]
    # the calibrated headline (docs/method.md), named as used: no "auto", no resize at 32 px
    assert summary["alignment_metric"] in ("lpips-alex", "stlpips-alex", "cosine")
    assert "[pags] epoch 1/1:" in out.stderr

    pags("sweep", "--preset", "cifar10", "--methods", "none,gradnorm", "--strengths", "0.0781",
         "--seeds", "1", *SMALL, *where, "--output", tmp_path / "sweep", "--num-cpus", "2",
         "--cpus-per-trial", "1", "--gpus-per-trial", "0", cwd=tmp_path)  # fmt: skip
    res = load_results(tmp_path / "sweep")
    assert sorted(res.trials["method"]) == ["gradnorm", "none"]
    assert (res.trials["status"] == "completed").all()
    # the sweep's gradnorm trial is the trial `pags train --preset` ran: same id, same numbers
    row = res.trials.set_index("config_id").loc[trial["config_id"]]
    for col in HEADLINE:
        assert row[col] == summary[col], col

    pags("analyze", tmp_path / "sweep")
    assert (tmp_path / "sweep" / "report" / "report.md").is_file()

    out = pags("measure", "--checkpoint", tmp_path / "ck" / f"{trial['config_id']}.pt",
               "--data-root", tmp_path / "data", "--cache-dir", tmp_path / "cache", "--local",
               "--device", "cpu", "--output", tmp_path / "measured")  # fmt: skip
    assert "settings from the checkpoints' trials: dataset=cifar10" in out.stdout
    measured = load_results(tmp_path / "measured").trials.iloc[0]
    for col in HEADLINE:
        assert measured[col] == summary[col], col
