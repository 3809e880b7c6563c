"""Results tables from trial records: one row per trial, documented schema, maps, progress.

No Ray runtime here: the records are what `trainables.tune_trainable` writes into checkpoints.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from analysis import load_results
from sweep.export import TrialOutcome, build_tables, write_results
from sweep.tune.progress import ProgressLine, progress_line
from trainables.config import TrialConfig
from trainables.tune_trainable import build_record, flat_metrics, trial_config

VERSIONS = {"pags": "0.1.0", "torch": "t", "ray": "r"}
INFO = {
    "pid": 123,
    "node": "n",
    "node_id": "id",
    "n_train": 100,
    "n_test": 50,
    "versions": VERSIONS,
}


def history(epochs: int, measured: bool = True) -> list[dict]:
    out = []
    for e in range(1, epochs + 1):
        h = {"epoch": e, "train_loss": 1.0 / e, "test_accuracy": 0.5 + e / 100, "epoch_time_s": 2.0}
        if measured and e == epochs:
            h["measures"] = {
                "alignment": 0.7,
                "alignment_metric": "stlpips-alex",
                "maps": {"inputs": np.zeros((2, 1, 4, 4))},
            }
            h["measure_rows"] = [
                {
                    "epoch": e,
                    "measure": "alignment",
                    "eps": math.nan,
                    "value": 0.7,
                    "std": 0.1,
                    "n": 8,
                    "gradient": "pred_logit",
                    "reference": "score",
                    "metric": "stlpips-alex",
                }
            ]
        out.append(h)
    return out


def outcome(status="completed", strength=0.1, error=None, epochs=3) -> TrialOutcome:
    cfg = TrialConfig.from_dict({"method": "randsmooth", "strength": strength, "epochs": epochs})
    rec = None if error else build_record(cfg, history(epochs), status, INFO)
    return TrialOutcome(config=cfg.to_dict(), record=rec, error=error)


def test_one_row_per_config_id_after_retries_and_resumes():
    done = outcome()
    retried = outcome(error="RayActorError: worker died")  # same config, failed attempt
    unfinished = outcome(status="running", strength=0.2)
    trials, measures = build_tables([retried, done, done, unfinished], "exp", VERSIONS)
    assert len(trials) == 1 and trials.loc[0, "status"] == "completed"
    assert trials.loc[0, "alignment"] == 0.7 and trials.loc[0, "wall_time_s"] == 6.0
    cid = trials.loc[0, "config_id"]
    assert set(measures["config_id"]) == {cid}
    curve = measures[measures["measure"] == "test_accuracy"]
    assert list(curve["epoch"]) == [1, 2, 3] and set(curve["n"]) == {50}
    assert (measures["measure"] == "alignment").sum() == 1


def test_failed_trials_keep_a_row_with_status_error():
    trials, _ = build_tables([outcome(error="ValueError: boom", strength=0.3)], "exp", VERSIONS)
    row = trials.iloc[0]
    assert row["status"] == "error" and row["error"] == "ValueError: boom"
    assert math.isnan(row["test_accuracy"]) and row["pags_version"] == "0.1.0"


def test_diverged_is_data():
    trials, _ = build_tables([outcome(status="diverged", strength=100.0)], "exp", VERSIONS)
    assert list(trials["status"]) == ["diverged"]


def test_written_tables_load_with_the_analysis_and_pandas(tmp_path):
    o = outcome()
    maps = tmp_path / "src.npz"
    np.savez(
        maps,
        inputs=np.zeros((2, 1, 4, 4)),
        score=np.ones((2, 1, 4, 4)),
        gradient=np.ones((2, 1, 4, 4)),
    )
    o.maps = (pafs.LocalFileSystem(), str(maps))
    write_results([o, outcome(strength=0.4)], str(tmp_path / "exp"), "exp", VERSIONS)
    res = load_results(tmp_path / "exp")
    assert len(res.trials) == 2 and res.trials["config_id"].is_unique
    assert len(pd.read_parquet(tmp_path / "exp" / "trials.parquet")) == 2
    cid = TrialConfig.from_dict(o.config).config_id
    assert (tmp_path / "exp" / "maps" / f"{cid}.npz").is_file()


def test_trial_config_of_a_searched_trial_applies_the_lr_rule():
    base = TrialConfig.from_dict({"method": "gradnorm", "strength": 0.01}).to_dict()
    cfg = trial_config({"trial": base, "log10_strength": 1.0, "lr_rule": [1.0, 1.0, 0.1]})
    assert cfg.strength == 10.0 and cfg.lr == pytest.approx(0.01)
    cfg = trial_config({"trial": base, "log10_strength": -1.0, "lr_rule": None})
    assert cfg.strength == 0.1 and cfg.lr == base["lr"]


def test_reports_carry_the_same_keys_every_epoch():
    cfg = TrialConfig.from_dict({"method": "gradnorm", "strength": 1.0, "epochs": 2})
    h = history(2)
    first = flat_metrics(build_record(cfg, h[:1], "running", INFO), INFO)
    last = flat_metrics(build_record(cfg, h, "completed", INFO), INFO)
    assert math.isnan(first["alignment"]) and last["alignment"] == 0.7
    assert set(first) <= set(last) and first["pid"] == 123


def test_progress_line_reads_well():
    counts = dict(done=9, diverged=1, failed=0, running=2, pending=5, total=16)
    line = progress_line(133, counts, ("alignment", 0.712, "gradnorm", 1.0), 100, "tune")
    assert line == (
        "[pags tune] 00:02:13  9/16 done (1 diverged)  2 running  5 pending  "
        "best alignment 0.712 (gradnorm lambda=1)  ETA 00:01:40"
    )


def test_progress_reporter_counts_and_best():
    def trial(tune_status, **last):
        return SimpleNamespace(status=tune_status, last_result=last)

    rep = ProgressLine(total=4, epochs=2)
    trials = [
        trial("TERMINATED", epoch=2, alignment=0.5, method="none", strength=0.0),
        trial(
            "TERMINATED",
            epoch=2,
            alignment=0.8,
            method="randsmooth",
            strength=0.2,
            status="completed",
        ),
        trial("RUNNING", epoch=1, alignment=math.nan, method="gradnorm", strength=1.0),
    ]
    line = rep.line(trials, elapsed=10)
    assert "2/4 done" in line and "1 running  1 pending" in line
    assert "best alignment 0.800 (randsmooth sigma=0.2)" in line


def test_outcome_of_a_result_reads_its_last_checkpoint(tmp_path):
    """A Tune Result (faked: config, error, metrics, checkpoint) -> TrialOutcome."""
    import json

    from sweep.tune.launch import outcome as outcome_of

    cfg = TrialConfig.from_dict({"method": "randsmooth", "strength": 0.1, "epochs": 4})
    ckpt = tmp_path / "checkpoint_000001"
    ckpt.mkdir()

    def result(status, done):
        rec = build_record(cfg, history(2, measured=False), status, INFO)
        (ckpt / "record.json").write_text(json.dumps(rec))
        checkpoint = SimpleNamespace(filesystem=pafs.LocalFileSystem(), path=str(ckpt))
        return SimpleNamespace(
            config={"trial": cfg.to_dict()},
            error=None,
            metrics={"done": done},
            checkpoint=checkpoint,
        )

    stopped = outcome_of(result("running", done=True))  # ASHA stopped it after 2 of 4
    assert stopped.early_stopped and stopped.status == "stopped"
    assert stopped.error is None and stopped.maps is None
    assert outcome_of(result("running", done=False)).status == "running"  # interrupted
    assert outcome_of(result("completed", done=True)).status == "completed"
    never = SimpleNamespace(config=None, error=None, metrics={}, checkpoint=None)
    assert outcome_of(never).status == "running"
    trials, _ = build_tables([stopped], "exp", VERSIONS)
    assert trials.loc[0, "status"] == "stopped" and trials.loc[0, "epochs_trained"] == 2
    assert trials.loc[0, "error"] == "" and "early_stopped" not in trials.columns


def test_every_written_column_is_documented_and_search_columns_name_the_study(tmp_path):
    """The trials table has the documented columns (analysis/results/columns.py) plus the flattened
    trial config and export.EXTRA, nothing undocumented; a searched trial names its study and
    Optuna trial number; tables written before those columns load with their defaults."""
    from dataclasses import fields

    from analysis.results import columns, tables
    from sweep.export import EXTRA

    searched = outcome(strength=0.5)
    searched.search, searched.search_trial = "search-randsmooth", 3
    trials, _ = build_tables([outcome(), searched], "exp", VERSIONS)
    allowed = {c.name for c in columns.TRIALS_COLUMNS} | set(EXTRA)
    allowed |= {f.name for f in fields(TrialConfig)}
    assert set(trials.columns) <= allowed, set(trials.columns) - allowed
    assert {c.name for c in columns.TRIALS_COLUMNS} <= set(trials.columns)
    by_strength = trials.set_index("strength")
    assert by_strength.loc[0.5, ["search", "search_trial"]].tolist() == ["search-randsmooth", 3]
    assert by_strength.loc[0.1, ["search", "search_trial"]].tolist() == ["", -1]
    old = trials.drop(columns=["search", "search_trial"])
    tables.write_table(old, tmp_path / "trials.parquet", "trials")
    tables.write_table(tables.empty("measures"), tmp_path / "measures.parquet", "measures")
    back = load_results(tmp_path).trials
    assert back["search"].tolist() == ["", ""] and back["search_trial"].tolist() == [-1, -1]
    assert back["search_trial"].dtype == "int64"
