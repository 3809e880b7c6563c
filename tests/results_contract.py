"""The check that a real sweep's tables match the documented columns
(analysis/results/columns.py), in both directions: every column and measure name written is
documented, every documented column is written. Used by the real sweeps in test_sweep_run.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields
from pathlib import Path

import pyarrow.parquet as pq

from analysis.results import columns, layout, tables
from analysis.results.layout import MEASURES_FILE, TRIALS_FILE
from analysis.results.record import TrialRecord
from sweep.export import EXTRA
from trainables.config import TrialConfig
from trainables.measure.tangent_measures import SPLIT_MEASURES


def assert_tables_match_the_schema(exp: Path, measured: bool) -> None:
    trials = pq.read_table(exp / TRIALS_FILE)
    written = set(trials.column_names)
    documented = {c.name for c in columns.TRIALS_COLUMNS}
    # Extras the schema allows: the flattened trial config and the export's own EXTRA columns.
    config = {f.name for f in dataclasses.fields(TrialConfig)}
    undocumented = written - documented - config - set(EXTRA)
    assert not undocumented, f"{TRIALS_FILE} columns without a documentation line: {undocumented}"
    assert documented <= written, f"documented but not written: {documented - written}"
    meta = trials.schema.metadata[tables.METADATA_KEY.encode()].decode()
    assert meta == tables.SCHEMA_VERSION

    measures = pq.read_table(exp / MEASURES_FILE)
    assert measures.column_names == [c.name for c in columns.MEASURES_COLUMNS]
    names = set(measures.column("measure").to_pylist())
    assert names <= set(columns.MEASURES), f"undocumented measures: {names - set(columns.MEASURES)}"
    assert {"test_accuracy", "train_loss"} <= names
    # The record between the trial and the export, as typed (analysis/results/record.py).
    records = sorted(exp.glob(f"*/*/checkpoint_*/{layout.RECORD_FILE}"))
    assert records, f"no {layout.RECORD_FILE} under {exp}"
    for path in records:
        record = json.loads(path.read_text())
        keys = {f.name for f in fields(TrialRecord)}
        assert set(record) == keys, f"{path}: {set(record) ^ keys}"
        assert TrialRecord.from_dict(record).to_dict() == record
        assert set(record["summary"]) <= documented, set(record["summary"]) - documented
    if measured:
        # On the synthetic set every documented measure is taken except those that need a
        # distractor (the synthetic set has a signal span but no distractor half), robust
        # accuracy (its data are not images in [0, 1], where the attack clips) and the
        # smoothed classifier's certificates (randsmooth trials only; this search has none),
        # and the estimator-free split of rho2 (digits sets only: it needs a known span).
        missing = set(columns.MEASURES) - names
        allowed = {"energy_distractor", "robust_accuracy", "smoothed_accuracy", "predict_abstain",
                   "certify_abstain", "certified_accuracy", *SPLIT_MEASURES,
                   "tangent_outside_span_share"}  # fmt: skip
        assert missing <= allowed, f"documented, never written: {missing - allowed}"
