"""The documented schema of the two results tables, `trials.parquet` and `measures.parquet`.

The sweep engine imports this module to write the tables and the analysis reads them through
it, so the column list lives in exactly one place. Every column has a dtype, a unit, a meaning
and a direction (`higher_is_better`: True, False, or None when "better" makes no sense).

Writing (sweep side)::

    write_parquet(df, "trials.parquet", "trials")  # coerce, attach metadata, atomic rename

or build the Arrow table with `to_arrow(df, table)` and write it yourself; plain
``df.to_parquet`` would drop the version (merge ``table_metadata()`` into the Arrow schema
metadata). `SCHEMA_VERSION` travels in the Parquet key-value metadata under
`METADATA_KEY`; readers refuse files without it or with another version.

Extra columns (flattened config such as `lr`, `batch_size`) are allowed and kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCHEMA_VERSION = "1"
METADATA_KEY = "pags_schema_version"

# Layout of an experiment directory (`pags sweep --output`, `pags measure --output`): the names
# every writer and reader uses (sweep/export.py, sweep/experiment.py, sweep/driver.py,
# analysis/load.py, analysis/gallery.py, analysis/search.py).
TRIALS_FILE = "trials.parquet"  # one row per trial: TRIALS_COLUMNS
MEASURES_FILE = "measures.parquet"  # long format: MEASURES_COLUMNS
MAPS_DIR = "maps"  # maps/<config_id>.npz with MAP_KEYS
SWEEP_FILE = "sweep_config.json"  # the sweep config (sweep/config.py SweepConfig.to_dict)
SEARCH_BEST_FILE = "search_best.json"  # per searched method: the feasible best strength
# The record between a trial and the export: `record.json` in every checkpoint of a sweep's trial,
# written by trainables/tune_trainable.py `build_record`, read by sweep/export.py and
# sweep/launch.py. Its keys and what they hold:
RECORD_FILE = "record.json"
RECORD_KEYS: dict[str, str] = {
    "config": "the full TrialConfig dict (trainables/config.py)",
    "config_id": "TrialConfig.config_id",
    "status": "completed, diverged, or running (more epochs to come)",
    "epochs_completed": "epochs trained so far",
    "wall_time_s": "seconds of training and measuring, summed over epochs",
    "summary": "the latest measured scalars (each a TRIALS_COLUMNS name) plus the last "
    "epoch's train_loss and test_accuracy",
    "history": "one dict per epoch: epoch, train_loss, test_accuracy, epoch_time_s",
    "measure_rows": "every measurement so far: MEASURES_COLUMNS rows without config_id",
    "pid": "process id of the trial (the reliability tests kill it)",
    "node": "host name",
    "node_id": "Ray node id",
    "n_train": "training examples used (train_subset applied)",
    "n_test": "test examples",
    "versions": "{pags, torch, ray}: package versions",
}
# Arrays of a maps file, each (N, C, H, W): the evaluation inputs, the score estimate at them,
# and the headline input gradient.
MAP_KEYS = ("inputs", "score", "gradient")


def maps_file(exp_dir: str, config_id: str) -> str:
    """Where the maps of trial `config_id` live in experiment directory `exp_dir`."""
    return f"{exp_dir}/{MAPS_DIR}/{config_id}.npz"


METHODS = ("none", "gradnorm", "smoothness", "randsmooth", "pgd_l2")
# completed: trained all epochs; diverged: non-finite loss, ended early (data: the objective
# at that strength is the cause); stopped: ended early by a scheduler (ASHA) that judged it
# unpromising; error: failed for good (infrastructure or a bug; the `error` column says why).
# Tables written before "stopped" existed mark such trials "error" with `early_stopped` True.
STATUSES = ("completed", "diverged", "stopped", "error")
# What `strength` means for each objective (docs/method.md, "Robust training objectives").
STRENGTH_SYMBOL = {
    "none": "strength",
    "gradnorm": "lambda",
    "smoothness": "lambda",
    "randsmooth": "sigma",
    "pgd_l2": "epsilon",
}


@dataclass(frozen=True)
class Column:
    """One documented column. `dtype` is the logical dtype: "str", "float64" or "int64"."""

    name: str
    dtype: str
    unit: str
    meaning: str
    higher_is_better: bool | None = None
    # Added after tables were first written: a table without it still loads, the column
    # filled with ABSENT[dtype] (an older run did not measure it).
    optional: bool = False


TRIALS_COLUMNS: tuple[Column, ...] = (
    Column("config_id", "str", "-", "hash of the full trial config; the key of every row"),
    Column("experiment", "str", "-", "experiment (sweep) name"),
    Column("dataset", "str", "-", "dataset name"),
    Column("model", "str", "-", "classifier architecture name"),
    Column("method", "str", "-", f"robust-training objective, one of {', '.join(METHODS)}"),
    Column(
        "strength",
        "float64",
        "lambda | sigma | epsilon (input units)",
        "objective strength: lambda (gradnorm, smoothness), sigma (randsmooth), "
        "epsilon (pgd_l2); 0 for none",
    ),
    Column("seed", "int64", "-", "random seed of the trial"),
    Column("epochs", "int64", "epochs", "number of training epochs configured"),
    Column("status", "str", "-", f"trial outcome, one of {', '.join(STATUSES)}"),
    Column("test_accuracy", "float64", "fraction [0, 1]", "final test accuracy", True),
    Column("train_loss", "float64", "nats", "final mean training loss (objective)", False),
    Column(
        "on_manifold_sensitivity",
        "float64",
        "L1 distance of softmax outputs [0, 2]",
        "E||softmax(f(x + eps*u_on)) - softmax(f(x))||_1 at eps = reference_eps",
        None,
    ),
    Column(
        "off_manifold_sensitivity",
        "float64",
        "L1 distance of softmax outputs [0, 2]",
        "E||softmax(f(x + eps*u_off)) - softmax(f(x))||_1 at eps = reference_eps",
        False,
    ),
    Column(
        "reference_eps",
        "float64",
        "L2 norm (input units)",
        "step size of the two above: the paper's 2.64 * sqrt(d / 3072) (Figure 3)",
    ),
    Column(
        "relative_off_manifold_robustness",
        "float64",
        "ratio",
        "off_manifold_sensitivity / on_manifold_sensitivity; below 1 = relatively "
        "off-manifold robust",
        False,
    ),
    Column(
        "signal_sensitivity",
        "float64",
        "L1 distance of softmax outputs [0, 2]",
        "output change under noise inside the signal mask (NaN without masks)",
        None,
    ),
    Column(
        "distractor_sensitivity",
        "float64",
        "L1 distance of softmax outputs [0, 2]",
        "output change under noise inside the distractor mask (NaN without masks)",
        False,
    ),
    Column(
        "relative_noise_robustness",
        "float64",
        "ratio",
        "signal_sensitivity / distractor_sensitivity (NaN without masks)",
        True,
    ),
    Column(
        "alignment",
        "float64",
        "similarity: 1 - (ST-)LPIPS about [0, 1], or cosine [-1, 1]",
        "the dataset's calibrated yardstick (docs/method.md, 'Calibration'): gradient vs "
        "reference under alignment_metric",
        True,
    ),
    Column(
        "alignment_metric",
        "str",
        "-",
        "metric behind `alignment`: cosine (pixel), or e.g. stlpips-alex@x3 (ST-LPIPS, maps "
        "upsampled 3x to reach 32 px)",
    ),
    Column(
        "alignment_gradient",
        "str",
        "-",
        "gradient behind `alignment`: logit_sum, pred_logit or log_prob (rho1/rho2 use "
        "the protocol's gradient, named in their measures rows)",
    ),
    Column(
        "alignment_reference",
        "str",
        "-",
        "map behind `alignment`: score_uncond (unconditional), score (class-conditional "
        "at the predicted class), score_label (at the true label) or bayes_est (the "
        "Bayes-gradient estimate score(x|y_hat) - score(x))",
        optional=True,
    ),
    Column(
        "alignment_score",
        "str",
        "-",
        "score estimate and its noise level, e.g. dsm-mlp@0.25 (pixels in [0, 1])",
        optional=True,
    ),
    Column(
        "rho1",
        "float64",
        "ratio >= 0",
        "Definition 1: E(f(x + P_perp u) - f(x))^2 / E(f(x + u) - f(x))^2, u ~ N(0, sigma^2 I), "
        "f the output whose gradient is alignment_gradient, at sigma = rho1_sigma; mean over "
        "points",
        False,
        optional=True,
    ),
    Column(
        "rho1_sigma",
        "float64",
        "per-pixel noise std (input units)",
        "noise level of `rho1` (the smallest measured)",
        optional=True,
    ),
    Column(
        "rho2",
        "float64",
        "fraction [0, 1]",
        "off-manifold share of the gradient, ||P_perp grad f||^2 / ||grad f||^2 (the limit of "
        "rho1 as sigma -> 0, Theorem 1); mean over points",
        False,
        optional=True,
    ),
    Column(
        "rho2_isotropic",
        "float64",
        "fraction [0, 1]",
        "(d - k) / d: rho2 of a gradient with no preferred direction (k = tangent dimension)",
        optional=True,
    ),
    Column(
        "rho2_exact",
        "float64",
        "fraction [0, 1]",
        "rho2 with the exact tangent spaces (synthetic sets only, NaN elsewhere): what `rho2`, "
        "measured with the autoencoder's, should read",
        False,
        optional=True,
    ),
    Column(
        "gradient_signal_share",
        "float64",
        "fraction [0, 1]",
        "share of the headline gradient's squared norm inside the signal mask (sets with a "
        "mask, NaN elsewhere); mean over points",
        True,
        optional=True,
    ),
    Column(
        "ae_val_reconstruction_error",
        "float64",
        "sum of squared pixel errors per image",
        "artifact quality: the autoencoder's best validation reconstruction error",
        False,
        optional=True,
    ),
    Column(
        "ae_epochs_run",
        "float64",
        "epochs",
        "artifact quality: autoencoder epochs until "
        "its validation loss stopped improving (or the cap)",
        optional=True,
    ),  # fmt: skip
    Column(
        "tangent_seed_angle_deg",
        "float64",
        "degrees",
        "artifact quality: mean largest principal angle between the tangent spaces of two "
        "autoencoders trained with different seeds, at the evaluation points (report warns "
        "above 20)",
        False,
        optional=True,
    ),
    Column(
        "tangent_exact_angle_deg",
        "float64",
        "degrees",
        "artifact quality on the synthetic sets: mean largest principal angle between the "
        "autoencoder's tangent spaces and the exact ones at the evaluation points",
        False,
        optional=True,
    ),
    Column(
        "denoiser_val_loss",
        "float64",
        "EDM-weighted squared error per pixel",
        "artifact quality: the denoiser's best validation denoising loss",
        False,
        optional=True,
    ),
    Column(
        "denoiser_baseline_val_loss",
        "float64",
        "as denoiser_val_loss",
        "artifact quality: the same loss of the denoiser's mixture baseline alone",
        optional=True,
    ),
    Column(
        "denoiser_epochs_run",
        "float64",
        "epochs",
        "artifact quality: denoiser epochs "
        "until its validation loss stopped improving (or the cap)",
        optional=True,
    ),  # fmt: skip
    Column(
        "build_time_s",
        "float64",
        "seconds",
        "artifact quality: wall time of building the shared artifacts (once per dataset, cached)",
        optional=True,
    ),  # fmt: skip
    # Rows of `pags measure` (models measured from checkpoint files; "" for trained trials).
    Column("checkpoint_name", "str", "-", "pags measure: the model's name", optional=True),
    Column("checkpoint_path", "str", "-", "pags measure: the file measured", optional=True),
    Column(
        "checkpoint_format",
        "str",
        "-",
        "pags measure: file format, one of pags, state_dict, torchvision, robustness",
        optional=True,
    ),
    Column(
        "checkpoint_sha256",
        "str",
        "-",
        "pags measure: SHA-256 of the file's bytes (with the settings, the config_id)",
        optional=True,
    ),
    Column(
        "weights_sha256",
        "str",
        "-",
        "pags measure: SHA-256 of the loaded tensors; equal = the same model in any format",
        optional=True,
    ),
    Column(
        "input_normalization",
        "str",
        "-",
        "pags measure: normalization applied to [0, 1] inputs: none, or mean=(..) std=(..) "
        "(+ clamp01: clamped to [0, 1] first, as the robustness library)",
        optional=True,
    ),
    Column(
        "input_size", "str", "C x H x W", "pags measure: input size the model got", optional=True
    ),
    Column("wall_time_s", "float64", "seconds", "wall-clock time of the trial", False),
    Column(
        "search",
        "str",
        "-",
        "the Optuna study that suggested this trial's strength (search-<method>, its name in "
        "the experiment's optuna-study.db); '' for grid and baseline trials",
        optional=True,
    ),
    Column(
        "search_trial",
        "int64",
        "-",
        "Optuna trial number in that study (one per suggested strength, shared by its seeds); "
        "-1 if not searched",
        optional=True,
    ),
    Column("config_json", "str", "-", "the full trial config as JSON"),
    Column("pags_version", "str", "-", "pags package version"),
    Column("torch_version", "str", "-", "torch version"),
    Column("ray_version", "str", "-", "ray version"),
)

MEASURES_COLUMNS: tuple[Column, ...] = (
    Column("config_id", "str", "-", "trial key (joins trials.config_id)"),
    Column("epoch", "int64", "epochs", "epoch after which the measure was taken"),
    Column("measure", "str", "-", "measure name; see MEASURES"),
    Column(
        "eps",
        "float64",
        "L2 step size or noise std (input units)",
        "step size (on/off sensitivity), per-pixel noise std (signal/distractor, rho1); NaN if n/a",
    ),
    Column("value", "float64", "see MEASURES", "mean over evaluation points and noise draws"),
    Column("std", "float64", "as value", "standard deviation over evaluation points"),
    Column("n", "int64", "count", "number of evaluation points"),
    Column(
        "gradient",
        "str",
        "-",
        "gradient used ('' if n/a): logit_sum, pred_logit, log_prob, log_prob_label (at the "
        "true label), null_noise, null_input; for rho1/rho2 the scalar output whose gradient "
        "it is; for calibration rows the probe (analysis.calibration)",
    ),
    Column(
        "reference",
        "str",
        "-",
        "reference map ('' if n/a): score (class-conditional at the prediction), score_label "
        "(at the true label), score_uncond, bayes_est / bayes_est_label (score(x|y) - "
        "score(x) at the prediction / true label), exact_score and bayes_exact (oracle sets)",
    ),
    Column(
        "metric",
        "str",
        "-",
        "similarity metric ('' if n/a): stlpips-alex, lpips-alex (with @xN when upsampled N "
        "times), cosine",
    ),
)

# The measure names that may appear in measures.measure: (unit, meaning, higher_is_better).
MEASURES: dict[str, tuple[str, str, bool | None]] = {
    "test_accuracy": ("fraction [0, 1]", "test accuracy", True),
    "train_loss": ("nats", "mean training loss of the epoch", False),
    "on_manifold_sensitivity": ("L1 of softmax change", "sensitivity along u_on at eps", None),
    "off_manifold_sensitivity": ("L1 of softmax change", "sensitivity along u_off at eps", False),
    "signal_sensitivity": ("L1 of softmax change", "noise of std eps inside signal mask", None),
    "distractor_sensitivity": ("L1 of softmax change", "noise of std eps in distractor", False),
    "alignment": ("similarity", "alignment of gradient with reference under metric", True),
    "energy_signal": ("fraction", "share of squared gradient norm on the signal span", True),
    "energy_distractor": ("fraction", "share of squared gradient norm on distractor span", False),
    "energy_off": ("fraction", "share of squared gradient norm off the manifold", False),
    "gradient_signal_share": (
        "fraction",
        "share of squared gradient norm in the signal mask",
        True,
    ),
    "bayes_cosine": (
        "cosine [-1, 1]",
        "cosine of grad log p(y_hat|x) with the Bayes classifier's (oracle sets)",
        True,
    ),
    # analysis.calibration: a probe map (gradient column) scored against a target (reference)
    # under a metric; eps = the SNR of a noise-ladder rung. Once per artifact set.
    "calibration": ("similarity", "a calibration probe against a target under metric", None),
    "bayes_estimate_cosine": (
        "cosine [-1, 1]",
        "Bayes-gradient estimate score(x|y) - score(x) vs the exact one (oracle sets)",
        True,
    ),
    "rho1": ("ratio >= 0", "Definition 1 at noise std eps (see trials.rho1)", False),
    "rho2": ("fraction [0, 1]", "off-manifold share of the gradient (see trials.rho2)", False),
    "rho2_exact": ("fraction [0, 1]", "rho2 with exact tangent spaces (synthetic sets)", False),
}

TABLES: dict[str, tuple[Column, ...]] = {"trials": TRIALS_COLUMNS, "measures": MEASURES_COLUMNS}
# Columns added after tables were first written, with the value they mean in older tables.
# What an optional column absent from an older table is filled with, by dtype.
ABSENT: dict[str, object] = {"str": "", "float64": np.nan, "int64": -1}


def table_metadata() -> dict[str, str]:
    """The Parquet key-value metadata every results table carries."""
    return {METADATA_KEY: SCHEMA_VERSION}


def describe(table: str) -> pd.DataFrame:
    """The documentation of one table as a DataFrame (name, dtype, unit, meaning, direction)."""
    return pd.DataFrame([c.__dict__ for c in _columns(table)])


def coerce(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return a copy of `df` with every documented column in its documented dtype.

    Raises ValueError naming the column when a column is missing or cannot be converted
    (e.g. a missing seed: int64 has no NaN). Missing strings become "". Extra columns pass
    through unchanged, after the documented ones.
    """
    columns = _columns(table)
    missing = [c.name for c in columns if c.name not in df.columns and not c.optional]
    if missing:
        raise ValueError(f"{table} table is missing columns: {', '.join(missing)}")
    out = df.copy()
    for col in columns:
        if col.name not in out.columns:  # optional, absent from an older table
            out[col.name] = ABSENT[col.dtype]
        out[col.name] = _convert(out[col.name], col, table)
    if table == "trials":
        bad = sorted(set(out["status"]) - set(STATUSES))
        if bad:
            raise ValueError(f"trials column status has unknown values {bad}; allowed {STATUSES}")
    names = [c.name for c in columns]
    return out[names + [c for c in out.columns if c not in names]].reset_index(drop=True)


def to_arrow(df: pd.DataFrame, table: str):
    """Coerce `df` and return a pyarrow Table carrying `table_metadata()` (for writers)."""
    import pyarrow as pa  # only writers need it; pandas' parquet reader imports it anyway

    arrow = pa.Table.from_pandas(coerce(df, table), preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in table_metadata().items()})
    return arrow.replace_schema_metadata(meta)


def write_parquet(df: pd.DataFrame, path, table: str) -> None:
    """Coerce `df`, attach the metadata and write it atomically (temp file, then rename), so
    that a reader never sees a half-written table."""
    import pyarrow.parquet as pq

    from analysis.atomic import atomic_write

    arrow = to_arrow(df, table)
    atomic_write(path, lambda f: pq.write_table(arrow, f))


def empty(table: str) -> pd.DataFrame:
    """An empty table with the documented columns and dtypes."""
    cols = {c.name: pd.Series([], dtype=_pandas_dtype(c.dtype)) for c in _columns(table)}
    return pd.DataFrame(cols)


def _columns(table: str) -> tuple[Column, ...]:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return TABLES[table]


def _pandas_dtype(dtype: str):
    # `str` is pandas' own string dtype on pandas 3 and object on pandas 2: both hold str.
    return str if dtype == "str" else dtype


def _convert(series: pd.Series, col: Column, table: str) -> pd.Series:
    try:
        if col.dtype == "str":
            return series.astype(object).where(series.notna(), "").astype(str)
        if col.dtype == "int64":
            if series.isna().any():
                raise ValueError("has missing values")
            values = pd.to_numeric(series)
            if not np.all(np.asarray(values, dtype=float) % 1 == 0):
                raise ValueError("has non-integer values")
            return values.astype("int64")
        return pd.to_numeric(series).astype("float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{table} column {col.name} is not {col.dtype}: {err}") from None


# ---- Tables the analysis writes (`pags analyze`: DIR/report/<name>.parquet) ----------------------
# Their meanings are in the docstrings of the functions that build them (named per table).
LABEL_COLUMNS = (
    "config_id", "dataset", "model", "method", "strength", "seed", "status", "regime_paper",
    "regime_scale_free",
)  # fmt: skip

BOUNDARY_COLUMNS = (
    "dataset", "model", "method", "criterion", "boundary", "strength_symbol", "estimate",
    "ci_low", "ci_high", "log10_estimate", "log10_ci_low", "log10_ci_high",
    "estimate_outside_ci", "status",
    "reason", "note", "bracket_low", "bracket_high", "located_fraction", "n_strengths",
    "n_trials", "n_excluded", "has_baseline", "accuracy_plateau", "accuracy_beyond",
    "accuracy_drop",
)  # fmt: skip

PEAK_COLUMNS = (
    "dataset", "model", "method", "strength_symbol", "alignment_metric", "alignment_gradient",
    "n_strengths", "n_trials", "peak_strength", "ci_low", "ci_high", "log10_peak",
    "log10_ci_low", "log10_ci_high", "estimate_outside_ci", "peak_alignment",
    "baseline_alignment", "regime_paper",
    "regime_scale_free", "in_bayes_aligned_paper", "in_bayes_aligned_scale_free", "finding",
    "reason", "note",
)  # fmt: skip

CORRELATION_COLUMNS = (
    "dataset", "model", "scope", "quantity", "alignment_metric", "n", "spearman_rho", "ci_low",
    "ci_high", "estimate_outside_ci", "p_value", "reason",
)  # fmt: skip

NOISE_COLUMNS = (
    "dataset", "model", "method", "strength_symbol", "strength", "n_trials",
    "relative_noise_robustness", "signal_sensitivity", "distractor_sensitivity",
    "ratio_to_baseline", "ci_low", "ci_high", "estimate_outside_ci", "reason",
)  # fmt: skip

EPS_COLUMNS = (
    "dataset", "model", "method", "criterion", "boundary", "eps_rank", "eps", "headline",
    "estimate", "ci_low", "ci_high", "status",
)  # fmt: skip

HISTORY_COLUMNS = (
    "dataset", "model", "method", "search", "objective", "search_trial", "strength", "n_seeds",
    "value", "test_accuracy", "min_test_accuracy", "feasible", "best_so_far",
)  # fmt: skip

BEST_COLUMNS = (
    "dataset", "model", "method", "search", "objective", "n_trials", "n_feasible",
    "best_strength", "best_value", "ci_low", "ci_high", "n_seeds", "best_test_accuracy",
    "min_test_accuracy", "strength_low", "strength_high", "finding",
)  # fmt: skip

REPORT_TABLES: dict[str, tuple[str, ...]] = {
    "regimes": BOUNDARY_COLUMNS,  # analysis.regimes.fit_regimes
    "trial_regimes": LABEL_COLUMNS,  # analysis.regimes.label_trials
    "peak_alignment": PEAK_COLUMNS,  # analysis.alignment.peak_alignment
    "correlation": CORRELATION_COLUMNS,  # analysis.alignment.alignment_correlation
    "rho2_correlation": CORRELATION_COLUMNS,
    "boundaries_by_eps": EPS_COLUMNS,  # analysis.step_sizes.boundaries_by_eps
    "noise_robustness": NOISE_COLUMNS,  # analysis.noise.noise_robustness
    "search_history": HISTORY_COLUMNS,  # analysis.search.search_history
    "search_best": BEST_COLUMNS,  # analysis.search.search_best
}
