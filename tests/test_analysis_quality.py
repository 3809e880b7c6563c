"""Artifact quality figures in the report: gathered per dataset, warnings when they call for it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.quality import (
    QUALITY_COLUMNS,
    TANGENT_SEED_WARN_DEG,
    TANGENT_SEED_WARN_OVERLAP,
    artifact_quality,
)


def _trials(dataset: str, seed_angle: float, val: float, baseline: float, n: int = 3,
            overlap: float = np.nan):  # fmt: skip
    row = {c: np.nan for c in QUALITY_COLUMNS}
    row.update(dataset=dataset, tangent_seed_angle_deg=seed_angle, denoiser_val_loss=val,
               denoiser_baseline_val_loss=baseline, tangent_seed_overlap=overlap)  # fmt: skip
    return pd.DataFrame([row] * n)


def test_the_seed_warning_follows_the_overlap_not_the_saturating_angle():
    """73.5 degrees apart by the largest angle, yet sharing 96% of the space: no warning; a
    small angle cannot hide an overlap below the bar."""
    q = artifact_quality(pd.concat([
        _trials("digits-distractor", 73.5, 0.3, 0.4, overlap=TANGENT_SEED_WARN_OVERLAP + 0.06),
        _trials("cifar10", 10.0, 0.3, 0.4, overlap=TANGENT_SEED_WARN_OVERLAP - 0.1),
    ])).set_index("dataset")  # fmt: skip
    assert q.loc["digits-distractor", "warning"] == ""
    assert "share 80% of their tangent spaces" in q.loc["cifar10", "warning"]


def test_quality_per_dataset_and_warnings():
    trials = pd.concat([
        _trials("digits-distractor", TANGENT_SEED_WARN_DEG + 5, 0.30, 0.40),
        _trials("mnist-distractor", TANGENT_SEED_WARN_DEG - 5, 0.50, 0.40),
        _trials("cifar10", 3.0, 0.20, 0.40),
    ])  # fmt: skip
    q = artifact_quality(trials).set_index("dataset")
    assert list(q.index) == ["cifar10", "digits-distractor", "mnist-distractor"]
    assert q.loc["digits-distractor", "tangent_seed_angle_deg"] == TANGENT_SEED_WARN_DEG + 5
    assert "disagree by 25.0 deg" in q.loc["digits-distractor", "warning"]
    assert "mixture baseline" not in q.loc["digits-distractor", "warning"]
    assert q.loc["mnist-distractor", "warning"].startswith("the denoiser's net does not improve")
    assert q.loc["cifar10", "warning"] == ""


def test_quality_of_tables_without_the_columns():
    """Older tables (before the columns existed) give NaN figures and no warning."""
    q = artifact_quality(pd.DataFrame({"dataset": ["digits-distractor"] * 2}))
    assert q["ae_val_reconstruction_error"].isna().all() and q["warning"].tolist() == [""]
