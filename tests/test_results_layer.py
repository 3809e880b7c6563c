"""The contract layer (analysis/results): one trial record, one row builder, and explicit
migration of what older versions wrote (record.json, records/<id>.json, Parquet tables)."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.results import rows, tables
from analysis.results.record import TrialRecord
from analysis.results.tables import METADATA_KEY

CONFIG = {"method": "gradnorm", "strength": 0.1, "seed": 0, "epochs": 3, "eps": [0.5, 1.0]}


def _history():
    """Three epochs, measured after the second only."""
    row = rows.measure_row("alignment", 2, 0.7, 0.1, 24, gradient="pred_logit")
    return [
        {"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5, "epoch_time_s": 1.0},
        {"epoch": 2, "train_loss": 0.8, "test_accuracy": 0.6, "epoch_time_s": 2.0,
         "measures": {"alignment": 0.7, "maps": {"inputs": [0]}}, "measure_rows": [row]},
        {"epoch": 3, "train_loss": 0.7, "test_accuracy": 0.65, "epoch_time_s": 1.5},
    ]  # fmt: skip


def test_record_from_history_names_its_three_epochs_apart():
    rec = TrialRecord.from_history(CONFIG, "cid", _history(), "completed", n_train=100, n_test=50)
    assert (rec.config["epochs"], rec.epochs_trained, rec.measured_epoch) == (3, 3, 2)
    assert rec.summary == {"alignment": 0.7, "train_loss": 0.7, "test_accuracy": 0.65}
    assert rec.wall_time_s == 4.5 and len(rec.measure_rows) == 1
    assert TrialRecord.from_dict(rec.to_dict()) == rec


def test_version_1_sweep_record_is_migrated():
    rec = TrialRecord.from_history(CONFIG, "cid", _history(), "running", n_train=100, n_test=50)
    old = rec.to_dict()
    old["epochs_completed"] = old.pop("epochs_trained")
    del old["record_version"], old["measured_epoch"], old["checkpoint"]
    back = TrialRecord.from_dict(old)
    assert back.epochs_trained == 3 and back.measured_epoch == 2 and back.status == "running"


def test_version_1_measure_record_is_migrated_and_gives_the_same_rows():
    old = {
        "spec": {"name": "m", "path": "/m.pt", "format": "pags", "label": "pretrained",
                 "strength": 0.0},
        "measure_config": {"dataset": "digits-distractor", "eval_points": 24, "seed": 1},
        "status": "completed", "arch": "small-cnn", "seed": 1, "epoch": 2,
        "input_normalization": "none", "input_size": "1x28x14", "weights_sha256": "w",
        "test_accuracy": 0.9, "n_test": 50, "summary": {"alignment": 0.7},
        "measure_rows": [rows.measure_row("alignment", 2, 0.7, 0.1, 24)], "wall_time_s": 3.0,
        "versions": {"torch": "2"}, "config_id": "cid", "checkpoint_sha256": "c",
    }  # fmt: skip
    rec = TrialRecord.from_dict(old)
    row = rows.trial_row("cid", rec, experiment="x", versions={"pags": "p", "ray": "r"})
    assert (row["epochs"], row["epochs_trained"], row["measured_epoch"]) == (-1, 2, 2)
    assert (row["method"], row["model"], row["seed"], row["test_accuracy"]) == (
        "pretrained", "small-cnn", 1, 0.9)  # fmt: skip
    assert (row["pags_version"], row["torch_version"], row["ray_version"]) == ("p", "2", "r")
    measured = rows.measure_rows("cid", rec)
    # the measurer's row, then test accuracy at the measured epoch; no train_loss (not trained)
    assert [(r["measure"], r["epoch"], r["n"]) for r in measured] == [
        ("alignment", 2, 24), ("test_accuracy", 2, 50)]  # fmt: skip


def test_sweep_rows_carry_the_curve_and_a_failed_trial_keeps_a_row():
    rec = TrialRecord.from_history(CONFIG, "cid", _history(), "completed", n_train=100, n_test=50)
    curve = [r for r in rows.measure_rows("cid", rec) if r["measure"] != "alignment"]
    assert [(r["measure"], r["epoch"], r["n"]) for r in curve[:2]] == [
        ("test_accuracy", 1, 50), ("train_loss", 1, 100)]  # fmt: skip
    assert len(curve) == 6
    failed = rows.trial_row("cid", None, experiment="x", versions={}, config=CONFIG,
                            status="error", error="boom")  # fmt: skip
    assert failed["status"] == "error" and failed["epochs_trained"] == 0
    assert math.isnan(failed["alignment"]) and failed["eps"] == "[0.5, 1.0]"


def _write_v1(path, df):
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY.encode(): b"1"}), path)


def test_version_1_tables_are_migrated_with_a_warning(tmp_path):
    rec = TrialRecord.from_history(CONFIG, "a", _history(), "completed", n_train=100, n_test=50)
    row = rows.trial_row("a", rec, experiment="x", versions={}, status="completed")
    measured = {**row, "config_id": "b", "checkpoint_name": "m", "epochs": 7}
    df = pd.DataFrame([row, measured]).drop(columns=["epochs_trained", "measured_epoch"])
    df["epochs_completed"] = [3, 0]
    _write_v1(tmp_path / "trials.parquet", df)
    with pytest.warns(UserWarning, match="epochs_completed -> epochs_trained"):
        back = tables.read_table(str(tmp_path / "trials.parquet"), "trials")
    assert back.set_index("config_id")[["epochs", "epochs_trained"]].to_dict("index") == {
        "a": {"epochs": 3, "epochs_trained": 3}, "b": {"epochs": -1, "epochs_trained": 7}}
    assert "epochs_completed" not in back.columns


def test_current_tables_load_without_warning_and_unknown_versions_are_refused(tmp_path):
    rec = TrialRecord.from_history(CONFIG, "a", _history(), "completed", n_train=100, n_test=50)
    df = pd.DataFrame([rows.trial_row("a", rec, experiment="x", versions={})])
    tables.write_table(df, str(tmp_path / "t.parquet"), "trials")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables.read_table(str(tmp_path / "t.parquet"), "trials")
    pq.write_table(pa.Table.from_pandas(df).replace_schema_metadata({METADATA_KEY.encode(): b"9"}),
                   tmp_path / "u.parquet")  # fmt: skip
    with pytest.raises(tables.TableError, match="schema version '9'"):
        tables.read_table(str(tmp_path / "u.parquet"), "trials")
