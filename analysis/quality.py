"""How trustworthy a run's measurement artifacts are (docs/method.md, "Artifact quality").

Every trial row carries the quality figures of the shared artifacts it was measured with
(one set per dataset): the autoencoder's validation reconstruction error, how far its tangent
spaces are from the exact ones (synthetic sets) or from a second autoencoder's trained with
another seed (everywhere else), and the denoiser's validation loss beside that of its mixture
baseline alone. This module gathers them per dataset and says when to distrust them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Below this projection overlap between two seeds' tangent spaces (the share of one space the
# other holds), on/off-manifold figures and rho2 depend on the seed of the autoencoder more than
# a reader would assume. The overlap decides, not the largest angle: that one saturates (15 of
# 16 shared directions can read 90 degrees); tables older than the overlap fall back to the
# angle's old rule.
TANGENT_SEED_WARN_OVERLAP = 0.9
TANGENT_SEED_WARN_DEG = 20.0

# Overlaps lead (they do not saturate; trainables/measure/subspace.py), largest angles follow.
QUALITY_COLUMNS = (
    "tangent_exact_overlap", "tangent_seed_overlap", "tangent_exact_angle_deg",
    "tangent_seed_angle_deg", "ae_val_reconstruction_error", "ae_epoch_cap", "ae_epochs_run",
    "jacobian_eigenvalue_gap", "denoiser_val_loss", "denoiser_baseline_val_loss",
    "denoiser_epochs_run", "build_time_s",
)  # fmt: skip


def artifact_quality(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: the quality figures (first measured trial's; every trial of a
    dataset shares the artifacts) and a `warning` string, '' when there is nothing to say."""
    rows = []
    for dataset, group in trials.groupby("dataset", sort=True):
        row: dict = {"dataset": dataset}
        for col in QUALITY_COLUMNS:
            values = group[col].dropna() if col in group else pd.Series(dtype=float)
            row[col] = float(values.iloc[0]) if len(values) else np.nan
        row["warning"] = quality_warning(row)
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", *QUALITY_COLUMNS, "warning"])


def quality_warning(row: dict) -> str:
    """The warnings one dataset's quality figures call for, joined; '' if none."""
    notes = []
    seed_angle = row.get("tangent_seed_angle_deg", np.nan)
    seed_overlap = row.get("tangent_seed_overlap", np.nan)
    if seed_overlap < TANGENT_SEED_WARN_OVERLAP:
        notes.append(
            f"two autoencoders trained with different seeds share {seed_overlap:.0%} of their "
            f"tangent spaces (overlap {seed_overlap:.3f} < {TANGENT_SEED_WARN_OVERLAP:g}): "
            "on/off-manifold figures and rho2 depend on the estimate"
        )
    elif np.isnan(seed_overlap) and seed_angle > TANGENT_SEED_WARN_DEG:
        notes.append(
            f"two autoencoders trained with different seeds disagree by {seed_angle:.1f} deg "
            f"on average (> {TANGENT_SEED_WARN_DEG:g}): on/off-manifold figures and rho2 "
            "depend on the estimate"
        )
    if row.get("denoiser_val_loss", np.nan) >= row.get("denoiser_baseline_val_loss", np.nan):
        notes.append("the denoiser's net does not improve on its mixture baseline on validation "
                     "(the score is the mixture's alone)")
    return "; ".join(notes)
