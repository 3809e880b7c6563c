"""Constructed results tables with known regime boundaries, and a tiny Parquet writer.

Other test_analysis_* modules import `make_tables` and `write_results` from here. Truth (log10
strength), for the default `Truth`: off-manifold sensitivity falls linearly (0.4 per decade)
and crosses the on-manifold plateau (1.0) at B1; on-manifold sensitivity leaves its plateau at
B2 and falls 0.5 per decade; accuracy 0.95 until B2, then falls 0.3 per decade; alignment
peaks at PEAK. Scale-free truths follow from these lines (see `Truth.scale_free_b1/b2`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.results import columns, tables

STRENGTHS = tuple(float(s) for s in np.logspace(-2, 2, 9))  # 0.5-decade steps


@dataclass(frozen=True)
class Truth:
    b1: float = -0.3  # off crosses on (paper boundary 1), log10 strength
    b2: float = 0.8  # on leaves its plateau (paper boundary 2)
    peak: float = 0.25  # alignment maximum
    off_cap: float = 1.8  # off-manifold sensitivity of the baseline (and the flat left end)

    def on(self, x):
        return np.where(x <= self.b2, 1.0, np.maximum(1.0 - 0.5 * (x - self.b2), 0.05))

    def off(self, x):
        return np.clip(1.0 - 0.4 * (x - self.b1), 0.05, self.off_cap)

    def accuracy(self, x):
        return np.where(x <= self.b2, 0.95, np.maximum(0.95 - 0.3 * (x - self.b2), 0.1))

    def alignment(self, x):
        return 0.6 - 0.1 * (np.nan_to_num(x, neginf=-3.0) - self.peak) ** 2

    @property
    def scale_free_b1(self) -> float:  # off = 0.8 x baseline
        return self.b1 - (0.8 * self.off_cap - 1.0) / 0.4

    @property
    def scale_free_b2(self) -> float:  # accuracy 0.05 below baseline comes before on < 0.75
        return self.b2 + 0.05 / 0.3


def make_tables(
    methods=("gradnorm",),
    strengths=STRENGTHS,
    seeds=(0, 1, 2),
    noise=0.02,
    truth: Truth = Truth(),
    baseline=True,
    dataset="digits",
    seed=0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, measures) with seed-to-seed noise of sd `noise` on every summary value."""
    rng = np.random.default_rng(seed)
    cells = [("none", 0.0)] if baseline else []
    cells += [(m, float(s)) for m in methods for s in strengths]
    trials, measures = [], []
    for method, strength in cells:
        x = np.log10(strength) if strength > 0 else -np.inf
        for s in seeds:
            cid = f"{dataset}-{method}-{strength:.6g}-{s}"
            on = float(truth.on(x) + noise * rng.standard_normal())
            off = float(truth.off(x) + noise * rng.standard_normal())
            acc = float(truth.accuracy(x) + noise / 4 * rng.standard_normal())
            align = float(truth.alignment(x) + noise * rng.standard_normal())
            signal = 0.5 + noise * rng.standard_normal()
            distractor = 0.5 / (1 + 10 ** np.nan_to_num(x, neginf=-9)) + 0.05
            trials.append(
                {
                    "config_id": cid, "experiment": "fake", "dataset": dataset,
                    "model": "cnn", "method": method, "strength": strength, "seed": s,
                    "epochs": 3, "status": "completed", "test_accuracy": acc,
                    "train_loss": 0.1, "on_manifold_sensitivity": on,
                    "off_manifold_sensitivity": off, "reference_eps": 2.0,
                    "relative_off_manifold_robustness": off / on,
                    "signal_sensitivity": signal, "distractor_sensitivity": distractor,
                    "relative_noise_robustness": signal / distractor, "alignment": align,
                    "alignment_metric": "stlpips-alex", "alignment_gradient": "logit_sum",
                    "alignment_reference": "score", "alignment_score": "dsm-mlp@0.25",
                    "rho2": 0.9 * off / (off + on), "rho1": 0.9 * off / (off + on) + 0.01,
                    "rho1_sigma": 0.01, "rho2_isotropic": 0.96,
                    "wall_time_s": 1.0,
                    "config_json": json.dumps({"method": method, "strength": strength}),
                    "pags_version": "0.1.0", "torch_version": "x", "ray_version": "y",
                    "lr": 0.002,
                }
            )  # fmt: skip
            for epoch in (1, 2, 3):
                measures.append(_m(cid, epoch, "test_accuracy", np.nan, acc, 0.2, 300))
            for eps in (1.0, 2.0, 4.0):
                k = eps / 2.0
                measures.append(_m(cid, 3, "on_manifold_sensitivity", eps, on * k, 0.3, 100))
                measures.append(_m(cid, 3, "off_manifold_sensitivity", eps, off * k, 0.3, 100))
            for ref in ("score", "noise"):
                value = align if ref == "score" else 0.46
                row = _m(cid, 3, "alignment", np.nan, value, 0.1, 64)
                measures.append(row | {"gradient": "logit_sum", "reference": ref,
                                       "metric": "stlpips-alex"})  # fmt: skip
    return pd.DataFrame(trials), pd.DataFrame(measures)


def _m(cid, epoch, measure, eps, value, std, n) -> dict:
    return {"config_id": cid, "epoch": epoch, "measure": measure, "eps": eps, "value": value,
            "std": std, "n": n, "gradient": "", "reference": "", "metric": ""}  # fmt: skip


def write_table(df: pd.DataFrame, path: Path, version: str | None = tables.SCHEMA_VERSION):
    """Write `df` as Parquet with the schema version in the metadata (None: no metadata)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if version is not None:
        meta = dict(table.schema.metadata or {})
        meta[tables.METADATA_KEY.encode()] = version.encode()
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def write_results(directory: Path, trials: pd.DataFrame, measures: pd.DataFrame) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_table(trials, directory / "trials.parquet")
    write_table(measures, directory / "measures.parquet")
    return directory


def test_schema_to_arrow_round_trip():
    trials, _ = make_tables()
    table = tables.to_arrow(trials, "trials")
    assert table.schema.metadata[tables.METADATA_KEY.encode()] == tables.SCHEMA_VERSION.encode()
    back = tables.coerce(table.to_pandas(), "trials")
    assert back["seed"].dtype == np.int64 and back["strength"].dtype == np.float64
    assert "lr" in back.columns  # extra config columns survive


def test_schema_write_parquet_is_atomic_and_readable(tmp_path):
    from analysis import load_results

    trials, measures = make_tables(strengths=(1.0,), seeds=(0,))
    tables.write_table(trials, tmp_path / "trials.parquet", "trials")
    tables.write_table(measures, tmp_path / "measures.parquet", "measures")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["measures.parquet", "trials.parquet"]
    assert len(load_results(tmp_path).trials) == len(trials)


def test_schema_documents_every_column():
    for table in columns.TABLES:
        doc = tables.describe(table)
        assert doc["unit"].str.len().gt(0).all() and doc["meaning"].str.len().gt(0).all()
