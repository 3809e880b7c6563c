"""The command line: JSON output and one-line errors with exit code 2."""

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from analysis.results.record import TrialRecord
from sweep.cli import main
from trainables.config import TrialConfig

PAGS = [sys.executable, "-m", "sweep.cli"]


def run(*args):
    return subprocess.run([*PAGS, *args], capture_output=True, text=True, timeout=300)


def test_train_no_measure_trains_the_configured_trial_and_measures_nothing():
    out = run("train", "--method", "gradnorm", "--strength", "0.01", "--epochs", "1",
              "--no-measure", "--set", "train_subset=128", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    # The trial record (analysis/results/record.py) without its rows; --no-measure leaves out
    # every measurement and the maps: the summary is the last epoch's loss and accuracy.
    assert set(obj) == {f.name for f in fields(TrialRecord)} - {"measure_rows"}
    assert set(obj["summary"]) == {"train_loss", "test_accuracy"} and obj["measured_epoch"] == -1
    cfg = TrialConfig.from_dict(obj["config"])
    assert cfg.config_id == obj["config_id"]
    assert (cfg.method, cfg.strength, cfg.epochs, cfg.train_subset) == ("gradnorm", 0.01, 1, 128)
    assert cfg.measure is False
    assert obj["status"] == "completed" and obj["epochs_trained"] == 1
    assert obj["n_train"] == 128
    (epoch,) = obj["history"]
    summary = obj["summary"]
    assert epoch["epoch"] == 1
    assert (
        epoch["train_loss"] == summary["train_loss"]
        and epoch["test_accuracy"] == summary["test_accuracy"]
    )
    # One epoch on 128 examples: near chance (10 classes), cross-entropy near ln 10.
    assert 0.0 < summary["test_accuracy"] < 0.5
    assert 1.5 < summary["train_loss"] < 3.5
    # progress on stderr (stdout stays one JSON object): one line per epoch
    assert f"[pags] epoch 1/1: train loss {summary['train_loss']:.4g}, test accuracy " in out.stderr


class _RaisesValueErrorWhenLoaded:
    """Unpickling this calls float("not a number"): a ValueError raised deep inside the
    product (torch.load in load_checkpoint), like the internal ValueErrors of tables.coerce
    after hours of training. It is not a user-input check, so it must not read as one."""

    def __reduce__(self):
        return (float, ("not a number",))


def _corrupt_checkpoint(tmp_path, capsys) -> list[str]:
    import torch

    args = ["train", "--no-measure", "--epochs", "1", "--set", "train_subset=64"]
    assert main([*args, "--dry-run"]) == 0
    config_id = json.loads(capsys.readouterr().out)["config_id"]
    (tmp_path / "ckpt").mkdir()
    torch.save(_RaisesValueErrorWhenLoaded(), tmp_path / "ckpt" / f"{config_id}.pt")
    return [*args, "--checkpoint-dir", str(tmp_path / "ckpt")]


def test_internal_error_exits_1_with_one_line_naming_the_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAGS_LOG_DIR", str(tmp_path / "logs"))
    args = _corrupt_checkpoint(tmp_path, capsys)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pags: internal error: ValueError: could not convert string"), err
    assert "Traceback" not in err
    (log,) = (tmp_path / "logs").iterdir()
    assert str(log) in err
    text = log.read_text()
    assert "Traceback" in text and "load_checkpoint" in text


def test_debug_prints_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAGS_LOG_DIR", str(tmp_path / "logs"))
    args = _corrupt_checkpoint(tmp_path, capsys)
    assert main([*args, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "load_checkpoint" in err
    assert err.strip().splitlines()[-1].startswith("pags: internal error: ")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dataset", "nope"], "dataset='nope'"),
        (["--method", "nope"], "method='nope'"),
        (["--model", "nope"], "model='nope'"),
        (["--method", "gradnorm", "--strength", "-1"], "strength=-1.0"),
        (["--epochs", "0"], "epochs=0"),
        (["--set", "bogus=1"], "'bogus'"),
        (["--set", "lr=abc"], "lr='abc'"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent/pags"], "/nonexistent/pags"),
        (["--strength", "nan", "--method", "gradnorm"], "strength=nan"),
    ],
)
def test_bad_input_one_line_exit_2(args, needle):
    out = run("train", "--no-measure", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_config_id_ignores_where_data_lives_but_not_what_trains():
    a = TrialConfig.from_dict({"data_root": "/a"})
    assert a.config_id == TrialConfig.from_dict({"data_root": "/b"}).config_id
    assert a.config_id != TrialConfig.from_dict({"seed": 1}).config_id
