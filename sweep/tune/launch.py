"""Run a sweep with Ray Tune: one trial = one (method, strength, seed), resumable, any storage.

Experiment directory (a local path or a URI):

    sweep_config.json            what this directory computes (refuses a different sweep)
    tune/                        the Tune experiment of a grid sweep
    baseline/, search-<method>/  the Tune experiments of a peak search (one per method)
    optuna-study.db              a peak search's Optuna study (sweep/tune/search.py)
    trials.parquet, measures.parquet, maps/<config_id>.npz, search_best.json

Every Tune run is idempotent: `Tuner.can_restore(path)` -> `Tuner.restore(path, ...,
resume_errored=True)` (finished trials are kept, unfinished ones continue from their last
checkpoint), else a fresh `Tuner`. Trials that fail for infrastructure reasons are retried from
their last checkpoint (`FailureConfig`). The tables are rebuilt from all trials' final records
at the end of every run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from analysis.results.layout import RECORD_FILE
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.results.methods import method as method_facts
from sweep import storage
from sweep.export import TrialOutcome
from sweep.plan.config import OBJECTIVES, SweepConfig, Where
from sweep.signals import on_sigterm
from sweep.tune import search, tune_state
from sweep.tune.progress import ProgressLine
from trainables.config import TrialConfig
from trainables.tune_trainable import MAPS_FILE, train, trial_config


@dataclass
class RunResult:
    outcomes: list[TrialOutcome] = field(default_factory=list)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # search: method -> best

    @property
    def unfinished(self) -> int:
        return sum(o.status == "running" for o in self.outcomes)


def trial_cost(cfg: TrialConfig) -> float:
    """Relative cost of a trial (its method's step cost, analysis/results/methods.py), to start
    the longest trials first: the last trials then finish together instead of one straggling."""
    return method_facts(cfg.method).cost(cfg.pgd_steps) * cfg.epochs * (cfg.train_subset or 1)


def trial_name(trial) -> str:
    """Readable and unique: method-strength-seed-config id (+ Tune's id for searched trials,
    where two samples may round to the same strength)."""
    cfg = trial_config(trial.config)
    name = f"{cfg.method}-{cfg.strength:g}-seed{cfg.seed}-{cfg.config_id[:8]}"
    return f"{name}-{trial.trial_id}" if "log10_strength" in trial.config else name


def run_sweep(sweep: SweepConfig, where: Where, artifacts: dict, log=print) -> RunResult:
    """Run (or resume) every Tune experiment of `sweep`; return all trials' outcomes. A search
    runs the baseline first (its mean accuracy sets the constraint), then one study per method."""
    trainable = tune.with_resources(
        tune.with_parameters(train, artifacts=artifacts),
        {"cpu": where.cpus_per_trial, "gpu": where.gpus_per_trial},
    )
    paths = dict(data_root=where.data_root, artifacts_dir=where.cache_dir)
    baseline = sorted(sweep.trial_configs(**paths), key=trial_cost, reverse=True)
    result = RunResult()
    if baseline:
        name = "tune" if sweep.search == "grid" else "baseline"
        space = {"trial": tune.grid_search([c.to_dict() for c in baseline])}
        epochs = max(c.epochs for c in baseline)
        result.outcomes += _fit(name, trainable, space, len(baseline), epochs, sweep, where)
    if not sweep.searched_methods or result.unfinished:
        return result  # interrupted: the search starts on the rerun, after the baseline
    accuracies = [
        o.record["summary"]["test_accuracy"] for o in result.outcomes if o.status == "completed"
    ]
    accuracies = [a for a in accuracies if math.isfinite(a)]
    if not accuracies:
        log("[pags] no baseline trial completed: the accuracy constraint cannot be set, so "
            "the search did not run (see the failed trials below)")  # fmt: skip
        return result
    min_accuracy = sum(accuracies) / len(accuracies) - sweep.max_accuracy_drop
    log(
        f"[pags] baseline test accuracy {min_accuracy + sweep.max_accuracy_drop:.4f} (mean of "
        f"{len(accuracies)} seeds): feasible strengths keep >= {min_accuracy:.4f}"
    )
    study = search.StudyFile(where.exp_dir, where.cache_dir, sweep.config_id)
    for method in sweep.searched_methods:
        outcomes = _search(method, trainable, sweep, where, paths, study.url, min_accuracy)
        study.upload()
        result.outcomes += outcomes
        if any(o.status == "running" for o in outcomes):
            break  # interrupted
        result.best[method] = search.summarize(study.url, method)
        log(best_line(method, result.best[method], sweep))
    return result


def _search(method, trainable, sweep: SweepConfig, where: Where, paths, url, min_accuracy):
    """The study of one method through Ray Tune (sweep/tune/search.py), within the preset grid's
    range of log10-strength; each suggested strength runs `sweep.seeds` seeds."""
    lo, hi = sweep.search_bounds(method)
    epochs = sweep.trial_dict(method, 10**lo, 0)["epochs"]
    space = sweep.search_space(method, **paths)
    searcher = search.StrengthSearcher(
        url=url,
        method=method,
        bounds=(lo, hi),
        seeds=sweep.seeds,
        trials=sweep.search_trials,
        objective=sweep.objective,
        min_accuracy=min_accuracy,
        sampler_seed=sweep.search_seed,
    )
    return _fit(
        search.study_name(method),
        trainable,
        space,
        sweep.search_trials * sweep.seeds,
        epochs,
        sweep,
        where,
        searcher=searcher,
        num_samples=-1,  # the searcher says when it is done (all its strengths told)
    )


def _fit(name, trainable, space, total, epochs, sweep, where, searcher=None, num_samples=1):
    # Tune's new output engine ignores custom reporters and prints tables: use the legacy one.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # A checkpoint-count limit forces an experiment snapshot per checkpoint (so a restore never
    # points at a deleted checkpoint); that is intended here, not a bottleneck worth a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    path = storage.join(where.exp_dir, name)
    tune_state.repair(path)
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        metric, mode = (
            (sweep.objective, OBJECTIVES[sweep.objective]) if searcher else ("alignment", "max")
        )
        scheduler = None
        if sweep.asha:  # on test_accuracy: the one metric every epoch reports
            scheduler = ASHAScheduler(
                metric="test_accuracy", mode="max", max_t=epochs, grace_period=max(1, epochs // 4)
            )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=num_samples,
                scheduler=scheduler,
                reuse_actors=True,  # no process start and imports per trial
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=where.exp_dir,
                verbose=1,  # with the legacy engine: our progress line only
                # Each trial's epoch lines: `stdout` in its trial directory, uploaded with its
                # checkpoints (the trial's working directory holds nothing else of ours).
                log_to_file=True,
                sync_config=tune.SyncConfig(sync_artifacts=True),
                failure_config=tune.FailureConfig(max_failures=where.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                progress_reporter=ProgressLine(total, epochs, metric, mode, label=name),
                # a readable copy of Tune's state, for a driver killed while Tune writes it
                callbacks=[tune_state.StateBackup(path, 5.0 if storage.is_uri(path) else 0.0)],
            ),
        )
    with _quiet_tune_logs(), _sigterm_stops_like_ctrl_c():
        grid = tuner.fit()
    return [outcome(r) for r in grid]


def _sigterm_stops_like_ctrl_c():
    """SIGTERM ends the sweep as Ctrl-C does (sweep/signals.py): Tune stops gracefully on
    SIGUSR1, the finished trials' tables get written and a rerun resumes."""

    def stop(previous) -> None:
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM ends the driver at once
        os.kill(os.getpid(), signal.SIGUSR1)

    return on_sigterm(stop)


class _DropTuneHints(logging.Filter):
    """Tune's own resume hint names its Python API; `pags` prints "rerun the same command"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tune_logs():
    hints, analysis = (
        logging.getLogger("ray.tune.tune"),
        logging.getLogger("ray.tune.analysis.experiment_analysis"),
    )
    level, drop = analysis.level, _DropTuneHints()
    # After an interruption, trials that never reported have no metrics: expected, not news.
    analysis.setLevel(logging.ERROR)
    hints.addFilter(drop)
    try:
        yield
    finally:
        analysis.setLevel(level)
        hints.removeFilter(drop)


def outcome(result) -> TrialOutcome:
    """A Tune `Result` as plain data: config, final record (from its last checkpoint), error.
    A trial that never started (interrupted sweep) has no config: an unfinished outcome."""
    if not result.config:
        return TrialOutcome(config={})
    cfg = trial_config(result.config).to_dict()
    found = result.config.get("search") or {}
    error = None
    if result.error is not None:
        lines = [ln for ln in str(result.error).splitlines() if ln.strip()]
        error = f"{type(result.error).__name__}: {lines[-1].strip() if lines else ''}"[:500]
    record, maps = None, None
    ckpt = result.checkpoint
    if ckpt is not None:
        fs, base = ckpt.filesystem, ckpt.path.rstrip("/")
        with fs.open_input_stream(f"{base}/{RECORD_FILE}") as f:
            record = json.loads(f.read().decode())
        if fs.get_file_info(f"{base}/{MAPS_FILE}").type != pafs.FileType.NotFound:
            maps = (fs, f"{base}/{MAPS_FILE}")
    # Tune says done, our record says running: a scheduler (ASHA) stopped it early.
    stopped = bool(record and record["status"] == "running" and (result.metrics or {}).get("done"))
    return TrialOutcome(
        config=cfg,
        record=record,
        error=error,
        maps=maps,
        early_stopped=stopped,
        search=found.get("name", ""),
        search_trial=found.get("trial", -1),
    )


def best_line(method: str, best: dict, sweep: SweepConfig) -> str:
    """The search's answer for one method (`search.summarize`), or why there is none."""
    symbol = STRENGTH_SYMBOL.get(method, "strength")
    if best["strength"] is None:
        return (
            f"[pags] {method}: no suggested strength finished with a finite {sweep.objective} "
            f"({best['n_trials']} asked)"
        )
    what = (
        f"{symbol}={best['strength']:g} ({sweep.objective} {best['value']:.4f}, mean of "
        f"{best['seeds']} seeds; test accuracy {best['mean_test_accuracy']:.4f} >= "
        f"{best['min_test_accuracy']:.4f}; Optuna trial {best['optuna_trial']}, best feasible of "
        f"{best['n_complete']})"
    )
    if best["feasible"]:
        return f"[pags] best {method} strength: {what}"
    return (
        f"[pags] {method}: no suggested strength kept test accuracy >= "
        f"{best['min_test_accuracy']:.4f} (baseline - {sweep.max_accuracy_drop:g}); closest: "
        f"Optuna trial {best['optuna_trial']}, {symbol}={best['strength']:g}, test accuracy "
        f"{best['mean_test_accuracy']:.4f}, {sweep.objective} {best['value']:.4f} "
        f"(mean of {best['seeds']} seeds)"
    )
