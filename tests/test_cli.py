"""The command line: JSON output and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from trainables.config import TrialConfig

PAGS = [sys.executable, "-m", "sweep.cli"]


def run(*args):
    return subprocess.run([*PAGS, *args], capture_output=True, text=True, timeout=300)


def test_train_json_has_the_documented_fields():
    out = run("train", "--method", "gradnorm", "--strength", "0.01", "--epochs", "1",
              "--no-measure", "--set", "train_subset=128", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    for key in ("status", "test_accuracy", "train_loss", "epochs", "config_id", "config"):
        assert key in obj
    cfg = TrialConfig.from_dict(obj["config"])
    assert cfg.config_id == obj["config_id"] and cfg.strength == 0.01


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
