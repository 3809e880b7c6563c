"""Bad numbers and bad files (issue 6, items 4 and 5): a diverging strength is data, and a
corrupt artifact in the cache is rebuilt with a message, never silently used.

One real sweep serves both (its Ray start and artifact build are the expensive part): the
synthetic set, measured, SGD at a fixed learning rate, gradient-norm lambda 0.01 (trains) and
1e6 (the loss overflows in the first epoch), started over a cache whose denoiser file is
truncated. The cheap unit tests below check every way `load_artifacts` refuses a set.
"""

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from analysis import load_results
from analysis.report import write_report
from sweep.plan.config import from_preset
from trainables.measure import artifacts as art_mod

SWEEP = ["--preset", "synthetic", "--methods", "none,gradnorm", "--strengths", "0.01,1e6",
         "--seeds", "1", "--epochs", "2", "--set", "optimizer=sgd", "--set", "schedule=constant",
         "--set", "lr=0.05", "--set", "eval_points=16", "--set", "noise_draws=2",
         "--num-cpus", "2"]  # fmt: skip
CORRUPT = "denoiser.pt"


def fake_artifact_set(folder, acfg: art_mod.ArtifactConfig) -> None:
    """An artifact set as `_build` leaves it (files + checksums in artifacts.json), with
    stand-in bytes: enough for the checksum checks, which run before anything is loaded."""
    os.makedirs(folder)
    digests = {}
    for name in (art_mod.TENSORS_FILE, "denoiser.pt"):
        data = os.urandom(4096)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    meta = {"format": art_mod.FORMAT, "config": dataclasses.asdict(acfg),
            "artifact_id": acfg.artifact_id, "sha256": digests}  # fmt: skip
    with open(os.path.join(folder, art_mod.META_FILE), "w") as f:
        json.dump(meta, f)


def truncate(path, size: int = 100) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("diverge")
    cache = root / "cache"
    cfg = from_preset(
        "synthetic",
        methods=["none"],
        seeds=1,
        epochs=2,
        sets={
            "optimizer": "sgd",
            "schedule": "constant",
            "lr": "0.05",
            "eval_points": "16",
            "noise_draws": "2",
        },
    ).trial_configs()[0]  # fmt: skip  (the sweep's options: its artifact set)
    acfg = art_mod.ArtifactConfig.for_trial(cfg)
    folder = art_mod.artifact_dir(acfg, str(cache))
    fake_artifact_set(folder, acfg)
    truncate(os.path.join(folder, CORRUPT))
    exp = root / "exp"
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "sweep", *SWEEP, "--cache-dir", str(cache),
         "--output", str(exp)],
        capture_output=True, text=True, cwd=root, timeout=400,
    )  # fmt: skip
    return {"exp": exp, "out": out, "folder": folder}


@pytest.mark.ray
@pytest.mark.slow
def test_diverged_trials_are_rows_the_sweep_goes_on_and_the_report_keeps_them(sweep):
    out, exp = sweep["out"], sweep["exp"]
    assert out.returncode == 0, out.stdout + out.stderr  # diverging is not a failure
    assert "3 trials in the tables: 2 completed, 1 diverged" in out.stdout
    res = load_results(exp)
    t = res.trials.set_index("strength")
    assert len(t) == 3 and res.trials["config_id"].is_unique
    assert t.loc[1e6, "status"] == "diverged" and t.loc[1e6, "method"] == "gradnorm"
    assert t.loc[1e6, "epochs_trained"] == 1 and math.isnan(t.loc[1e6, "train_loss"])
    assert t.loc[1e6, "error"] == ""  # data, not an infrastructure error
    # The other trials ran to the end and were measured.
    done = t.loc[[0.0, 0.01]]
    assert (done["status"] == "completed").all() and (done["epochs_trained"] == 2).all()
    assert done["alignment"].map(math.isfinite).all()

    report = write_report(exp, out_dir=exp.parent / "report")
    text = report["markdown"].read_text()
    assert "1 of 1 trials diverged at lambda=1e+06" in text, text
    # The analysis kept the diverged row: it is labelled with the others.
    labels = pd.read_parquet(report["trial_regimes"])
    diverged_id = t.loc[1e6, "config_id"]
    assert diverged_id in set(labels["config_id"]), labels


@pytest.mark.ray
@pytest.mark.slow
def test_truncated_cached_artifact_is_rebuilt_with_a_message_before_any_trial(sweep):
    out, folder = sweep["out"], sweep["folder"]
    assert out.returncode == 0, out.stdout + out.stderr
    said = [ln for ln in out.stdout.splitlines() if "rebuilding artifacts" in ln]
    assert said and f"{CORRUPT} fails its SHA-256 checksum" in said[0], out.stdout
    # The rebuilt set is whole (loads, checksums pass) and is what the trials measured with.
    art = art_mod.load_artifacts(folder)
    assert art.tangent.shape[0] == 16 and torch_finite(art.tangent)
    meta = json.loads(open(os.path.join(folder, art_mod.META_FILE)).read())
    assert os.path.getsize(os.path.join(folder, CORRUPT)) > 100
    assert set(meta["sha256"]) >= {art_mod.TENSORS_FILE, CORRUPT}


def torch_finite(t) -> bool:
    return bool(t.isfinite().all())


# ---- load_artifacts refuses every kind of damaged set (no build needed) -------------------
ACFG = art_mod.ArtifactConfig("synthetic-manifold", 8, 16, 0.1, 1, 1)


@pytest.mark.parametrize("name", [art_mod.TENSORS_FILE, "denoiser.pt"])
def test_a_truncated_file_fails_its_checksum(tmp_path, name):
    folder = tmp_path / "set"
    fake_artifact_set(folder, ACFG)
    truncate(folder / name)
    with pytest.raises(ValueError, match=f"{name} fails its SHA-256 checksum"):
        art_mod.load_artifacts(str(folder))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda f: os.remove(f / "denoiser.pt"), "incomplete artifact set"),
        (lambda f: truncate(f / art_mod.META_FILE, 20), "incomplete artifact set"),
        (lambda f: os.remove(f / art_mod.META_FILE), "incomplete artifact set"),
        (
            lambda f: (f / art_mod.META_FILE).write_text(
                json.dumps(
                    {
                        **json.loads((f / art_mod.META_FILE).read_text()),
                        "format": "pags-artifacts/0",
                    }
                )  # fmt: skip
            ),
            "format 'pags-artifacts/0'",
        ),
        (lambda f: (f / art_mod.TENSORS_FILE).write_bytes(os.urandom(4096)), "checksum"),
    ],
    ids=["missing-file", "truncated-meta", "no-meta", "stale-format", "same-size-edit"],
)
def test_a_damaged_or_stale_set_is_refused(tmp_path, damage, message):
    folder = tmp_path / "set"
    fake_artifact_set(folder, ACFG)
    damage(folder)
    with pytest.raises(ValueError, match=message):
        art_mod.load_artifacts(str(folder))
