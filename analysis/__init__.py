"""pags analysis: pandas over the results Parquet tables; imports neither torch nor ray.

Layers (pyproject.toml [tool.importlinter] enforces them): `analysis.results` is the contract
layer, which imports nothing else of pags; trainables imports only that part of analysis;
sweep imports both. So results flow one way, from trials to analysis.

Public API (loaded on first use, so that `import analysis.results` on the sweep side stays
light)::

    load_results(path_or_paths) -> Results(trials, measures, sources)   # ResultsError
    fit_regimes(trials, measures, rng=..., n_boot=1000) -> boundaries DataFrame
    label_trials(trials, boundaries) -> regime of every trial
    peak_alignment(trials, measures, boundaries, rng=...) -> per method group
    alignment_correlation(trials, rng=..., quantity=...) -> Spearman rho with bootstrap CI
        (quantity: relative_off_manifold_robustness, or rho2)
    boundaries_by_eps(trials, measures, rng=...) -> boundaries refitted at every step size
    noise_robustness(trials, rng=...) -> signal/distractor ratio vs baseline
    analysis.report.write_report(results_dir, out_dir=None, rng_seed=0) -> {name: path}
    analysis.study.analyse(results) -> the study's findings with verdicts (RESULTS.md)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_results": "analysis.load",
    "Results": "analysis.load",
    "ResultsError": "analysis.load",
    "fit_regimes": "analysis.regimes",
    "label_trials": "analysis.regimes",
    "regime_at": "analysis.regimes",
    "Criteria": "analysis.regimes",
    "peak_alignment": "analysis.alignment",
    "alignment_correlation": "analysis.alignment",
    "noise_robustness": "analysis.noise",
    "boundaries_by_eps": "analysis.step_sizes",
    "write_report": "analysis.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
