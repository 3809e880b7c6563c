"""The columns of the two results tables, `trials.parquet` and `measures.parquet`.

Every column has a dtype, a unit, a meaning and a direction (`higher_is_better`: True, False,
or None when "better" makes no sense). Extra columns (the flattened trial config such as `lr`,
`batch_size`) are allowed and kept as they are. Writing and reading, with the version and the
migration of older tables: tables.py.

Adding a measured summary column: one `Column(...)` line in TRIALS_COLUMNS (optional=True, so
older tables still load) and, for a long-format measure name, one line in MEASURES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.results.methods import METHODS

# completed: trained all epochs; diverged: non-finite loss, ended early (data: the objective
# at that strength is the cause); stopped: ended early by a scheduler (ASHA) that judged it
# unpromising; error: failed for good (infrastructure or a bug; the `error` column says why).
# Tables written before "stopped" existed mark such trials "error" with `early_stopped` True.
STATUSES = ("completed", "diverged", "stopped", "error")


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
    # Three numbers of epochs, three names (tables of schema version 1 had `epochs` for the
    # measured epoch of a checkpoint and `epochs_completed` as an undocumented extra column).
    Column(
        "epochs",
        "int64",
        "epochs",
        "epochs configured (TrialConfig.epochs); -1 for a model measured from a file (pags "
        "measure)",
    ),
    Column(
        "epochs_trained",
        "int64",
        "epochs",
        "epochs the model was trained: a trial's completed epochs (fewer than `epochs` when it "
        "diverged or was stopped), the checkpoint's epoch for pags measure; -1 if not known",
        optional=True,
    ),
    Column(
        "measured_epoch",
        "int64",
        "epochs",
        "epoch after which the summary columns (sensitivities, alignment, rho) were measured; "
        "-1 if never measured",
        optional=True,
    ),
    Column(
        "num_classes",
        "int64",
        "classes",
        "classes of the dataset (chance accuracy = 1 / num_classes); 0 if not recorded",
        optional=True,
    ),
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
        "rho2_tangent_spread",
        "float64",
        "fraction [0, 1]",
        "max - min of the headline gradient's rho2 across every tangent estimate the artifacts "
        "keep (measures rows with `tangent` set; the headline rho2 is the ae estimate's)",
        False,
        optional=True,
    ),
    Column(
        "rho2_floor",
        "float64",
        "fraction [0, 1]",
        "estimator-free lower bound on rho2 (digits-distractor; NaN elsewhere): the headline "
        "gradient's share on the distractor half plus its share in the digit half outside the "
        "exact upsampling span (trainables/measure/tangent_measures.py)",
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
    # Robustness (trainables/measure/robust_measures.py; docs/method.md, "Robust accuracy",
    # "Certified radii"), on the evaluation points.
    Column(
        "eval_accuracy",
        "float64",
        "fraction [0, 1]",
        "clean accuracy on the evaluation points (those of robust_accuracy)",
        True,
        optional=True,
    ),
    Column(
        "robust_accuracy",
        "float64",
        "fraction [0, 1]",
        "accuracy under the L2 attack `robust_attack` at radius `robust_radius` (an upper "
        "bound on the true robust accuracy); NaN when not measured",
        True,
        optional=True,
    ),
    Column(
        "robust_attack",
        "str",
        "-",
        "attack behind robust_accuracy (pyautoattack), e.g. apgd-ce-l2@20 (APGD-CE, 20 "
        "iterations) or autoattack-l2; '' when not measured",
        optional=True,
    ),
    Column(
        "robust_radius",
        "float64",
        "L2 norm (input units)",
        "attack radius: RobustBench's CIFAR-10 0.5 scaled by sqrt(d / 3072) unless set",
        optional=True,
    ),
    Column(
        "certify_sigma",
        "float64",
        "per-pixel noise std (input units)",
        "randomized smoothing: the sigma certified at (a randsmooth trial's strength); NaN "
        "when not certified",
        optional=True,
    ),
    Column(
        "smoothed_accuracy",
        "float64",
        "fraction [0, 1]",
        "accuracy of the smoothed classifier's PREDICT (Cohen et al. 2019; abstain = wrong)",
        True,
        optional=True,
    ),
    Column(
        "predict_abstain_rate",
        "float64",
        "fraction [0, 1]",
        "share of points where PREDICT abstains",
        False,
        optional=True,
    ),
    Column(
        "certify_abstain_rate",
        "float64",
        "fraction [0, 1]",
        "share of points where CERTIFY abstains",
        False,
        optional=True,
    ),
    Column(
        "certified_accuracy",
        "float64",
        "fraction [0, 1]",
        "share of points CERTIFY gets right with a radius >= robust_radius",
        True,
        optional=True,
    ),
    Column(
        "certified_radius_mean",
        "float64",
        "L2 norm (input units)",
        "mean certified radius, 0 where CERTIFY abstains or is wrong (Cohen's average "
        "certified radius)",
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
        "ae_epoch_cap",
        "float64",
        "epochs",
        "artifact quality: the autoencoders' epoch cap (the budget that built the artifacts: "
        "the dataset's default or the preset's ae_max_epochs)",
        optional=True,
    ),
    Column(
        "tangent_seed_overlap",
        "float64",
        "fraction [0, 1]",
        "artifact quality: mean projection overlap tr(P1 P2) / k between two autoencoders' "
        "tangent spaces (seeds 0 and 1); 1 = same spaces, k / d = unrelated",
        True,
        optional=True,
    ),
    Column(
        "jacobian_eigenvalue_gap",
        "float64",
        "fraction",
        "artifact quality: mean relative gap (l_k - l_k+1) / l_k of the small-noise denoiser's "
        "Jacobian eigenvalues at k (near 0: the denoiser-jacobian estimate is arbitrary)",
        True,
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
        "tangent_exact_overlap",
        "float64",
        "share in [0, 1]",
        "artifact quality on the synthetic sets: mean tr(P_ae P_exact) / k, the share of the "
        "exact k-dimensional tangent space the autoencoder's tangent space captures",
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
        "it is; for calibration rows the probe (analysis.results.calibration)",
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
    Column(
        "tangent",
        "str",
        "-",
        "tangent estimate the row was measured under ('' if n/a; rho2, on/off-manifold "
        "sensitivity): ae (the headline), ae-seed1, local-pca, denoiser-jacobian, exact "
        "(trainables/measure/tangent_estimators.py)",
        optional=True,
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
    # analysis.results.calibration: a probe map (gradient column) scored against a target
    # (reference) under a metric; eps = the SNR of a noise-ladder rung. Once per artifact set.
    "calibration": ("similarity", "a calibration probe against a target under metric", None),
    "bayes_estimate_cosine": (
        "cosine [-1, 1]",
        "Bayes-gradient estimate score(x|y) - score(x) vs the exact one (oracle sets)",
        True,
    ),
    "rho1": ("ratio >= 0", "Definition 1 at noise std eps (see trials.rho1)", False),
    "rho2": ("fraction [0, 1]", "off-manifold share of the gradient (see trials.rho2)", False),
    "rho2_exact": ("fraction [0, 1]", "rho2 with exact tangent spaces (synthetic sets)", False),
    # trainables/measure/tangent_measures.py: agreement of estimate `tangent` with estimate
    # `reference` (the artifacts' figures, one row each per measurement)
    "tangent_overlap": ("fraction [0, 1]", "projection overlap tr(P1 P2) / k", True),
    "tangent_mean_angle": ("degrees", "mean principal angle", False),
    "tangent_median_angle": ("degrees", "median principal angle", False),
    "tangent_largest_angle": ("degrees", "largest principal angle", False),
    "tangent_build_time": ("seconds", "time to build estimate `tangent` (artifacts; reference '')",
                           None),
    # trainables/measure/tangent_measures.py: the exact split of the headline gradient
    "gradient_distractor_share": ("fraction [0, 1]", "share of ||g||^2 on the distractor half",
                                  False),
    "gradient_outside_span_share": (
        "fraction [0, 1]", "share of ||g||^2 in the digit half outside its exact span", False),
    "tangent_outside_span_share": (
        "fraction [0, 1]", "share of estimate `tangent`'s dimensions outside the exact span of "
        "every true tangent (digits: distractor half + outside the upsampling span); 0 if right",
        False),
    "gradient_in_span_share": (
        "fraction [0, 1]", "share of ||g||^2 within the digit half's exact span", None),
    "eval_accuracy": ("fraction [0, 1]", "clean accuracy on the evaluation points", True),
    "robust_accuracy": ("fraction [0, 1]", "accuracy under attack `metric` at L2 radius eps", True),
    "certified_accuracy": ("fraction [0, 1]", "CERTIFY right with radius >= eps", True),
    "smoothed_accuracy": ("fraction [0, 1]", "PREDICT right at noise sigma eps", True),
    "predict_abstain": ("fraction [0, 1]", "PREDICT abstains (sigma eps)", False),
    "certify_abstain": ("fraction [0, 1]", "CERTIFY abstains (sigma eps)", False),
}

TABLES: dict[str, tuple[Column, ...]] = {"trials": TRIALS_COLUMNS, "measures": MEASURES_COLUMNS}
# Columns added after tables were first written, with the value they mean in older tables.
# What an optional column absent from an older table is filled with, by dtype.
ABSENT: dict[str, object] = {"str": "", "float64": np.nan, "int64": -1}


def columns(table: str) -> tuple[Column, ...]:
    """The documented columns of `table` ("trials" or "measures")."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return TABLES[table]
