"""The columns of the tables `pags analyze` writes (DIR/report/<name>.parquet).

Their meanings are in the docstrings of the functions that build them (named per table). The
results tables the sweep writes are a contract of their own: analysis/results/columns.py.
"""

from __future__ import annotations

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
    "dataset", "model", "scope", "quantity", "alignment_metric", "n", "n_seeds", "spearman_rho",
    "ci_low", "ci_high", "estimate_outside_ci", "p_value", "interval", "per_seed", "reason",
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
