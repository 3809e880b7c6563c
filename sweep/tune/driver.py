"""`pags sweep` end to end, in the order that keeps bad input cheap:

1. validate everything that needs no Ray (sweep config, every trial config, storage path,
   compatibility with results already there): a ValueError here writes nothing;
2. `--dry-run` stops here after printing the trial table;
3. join or start Ray (unreachable address: ValueError), check per-trial resources;
4. prepare the shared artifacts (or check the data) once, before any trial;
5. record the sweep config, run or resume the Tune experiments, write the tables.
"""

from __future__ import annotations

import dataclasses
import json
import os

from analysis.results.columns import STATUSES
from analysis.results.layout import SEARCH_BEST_FILE
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.results.record import package_versions
from sweep import experiment, locations, storage
from sweep.plan.config import SweepConfig, Where
from trainables.config import TrialConfig


def representative_trials(sweep: SweepConfig, where: Where) -> list[TrialConfig]:
    """The grid's trials, or for a search its baseline plus one trial per searched method
    (enough to know every artifact set and data set the sweep needs)."""
    paths = dict(data_root=where.data_root, artifacts_dir=where.cache_dir)
    trials = sweep.trial_configs(**paths)
    for method in sweep.searched_methods:
        lo, _ = sweep.search_bounds(method)
        trials.append(TrialConfig.from_dict(sweep.trial_dict(method, 10**lo, 0, **paths)))
    return trials


def measure_plan(cfg: TrialConfig) -> str:
    """One line: the score alignment is measured against, the attack, the certificate."""
    from trainables.measure.protocol import headline_for

    sigma = cfg.score_sigma or headline_for(cfg.dataset).score_sigma
    radius = f"{cfg.attack_radius:g}" if cfg.attack_radius else "0.5*sqrt(d/3072)"
    attack = "off" if cfg.attack == "none" else f"{cfg.attack} L2 at {radius}"
    cert = f"sigma {cfg.smoothing_sigma:g}" if cfg.smoothing_sigma else "randsmooth trials"
    return (
        f"measures: score {cfg.score or 'denoiser'} at sigma {sigma:g}; robust accuracy "
        f"{attack}; certification ({cert}) n0={cfg.certify_n0} n={cfg.certify_n} "
        f"alpha={cfg.certify_alpha:g}"
    )


def trial_table(sweep: SweepConfig, where: Where, resume: bool) -> str:
    """The dry-run listing: header, search plan, one line per (grid) trial."""
    trials = sweep.trial_configs(data_root=where.data_root)
    kind = "grid" if sweep.search == "grid" else f"{sweep.search} search"
    n = len(trials) + sweep.search_trials * sweep.seeds * len(sweep.searched_methods)
    lines = [
        f"preset {sweep.preset}: {sweep.dataset}, {n} trials ({kind}), "
        f"{where.cpus_per_trial:g} CPU + {where.gpus_per_trial:g} GPU per trial, "
        f"sweep id {sweep.config_id}",
        f"output: {where.exp_dir} ({'resume: same sweep' if resume else 'new'})",
    ]
    if trials:
        lines.append(measure_plan(trials[0]))
    for method in sweep.searched_methods:
        lo, hi = sweep.search_bounds(method)
        lines.append(
            f"search {method}: {sweep.search_trials} trials, Optuna TPE seed {sweep.search_seed}, "
            f"{STRENGTH_SYMBOL[method]} in [{10**lo:g}, {10**hi:g}] (log scale), "
            f"objective {sweep.objective} (mean of {sweep.seeds} seeds per strength), "
            f"test accuracy >= baseline - {sweep.max_accuracy_drop:g}"
        )
    if sweep.asha:
        lines.append("ASHA early stopping on test_accuracy: on")
    lines += settings_lines(sweep, trials, where)
    head = f"{'#':>4}  {'method':<11} {'strength':<18} {'seed':>4} {'epochs':>6} {'lr':>9}"
    lines.append(f"{head}  config_id")
    for i, c in enumerate(trials, 1):
        s = "-" if c.method == "none" else f"{STRENGTH_SYMBOL[c.method]}={c.strength:g}"
        row = f"{i:>4}  {c.method:<11} {s:<18} {c.seed:>4} {c.epochs:>6} {c.lr:>9.3g}"
        lines.append(f"{row}  {c.config_id}")
    return "\n".join(lines)


def settings_lines(sweep: SweepConfig, trials: list[TrialConfig], where: Where) -> list[str]:
    """What the trials' dataset defaults resolve to, and the sweep's estimated GPU cost."""
    from sweep.plan.cost import TRAIN_IMAGES, cost_lines
    from trainables.resolved import input_shape, resolved_settings

    probe = trials[0] if trials else TrialConfig.from_dict(sweep.trial_dict("none", 0.0, 0))
    shape = input_shape(probe)
    r = resolved_settings(probe, shape)
    lines = [
        f"measured with: {r['eval_points']} evaluation points, {r['noise_draws']} noise draws, "
        f"step sizes {r['eps']} (headline {r['headline_eps']:g}); tangents from a latent of "
        f"{r['latent_dim']}; score at sigma {r['score_sigma']:g}; alignment "
        f"{r['alignment_metric']} of {r['alignment_gradient']} vs {r['alignment_reference']} "
        f"if it passes calibration on the first trial, else the calibrated fallback "
        f"(docs/method.md, headline rule)",
        f"artifacts: autoencoder <= {r['ae_max_epochs']} epochs, denoiser <= "
        f"{r['denoiser_max_epochs']} epochs; training: augment {r['augment']}, bf16 mixed "
        f"precision on CUDA {'on' if r['mixed_precision_on_cuda'] else 'off'}",
    ]
    costed = list(trials)
    for method in sweep.searched_methods:  # a search's trials, at the middle of its range
        lo, hi = sweep.search_bounds(method)
        mid = TrialConfig.from_dict(sweep.trial_dict(method, 10 ** ((lo + hi) / 2), 0))
        costed += [mid] * (sweep.search_trials * sweep.seeds)
    if probe.dataset in TRAIN_IMAGES:
        n_train = TRAIN_IMAGES[probe.dataset]
    else:
        from trainables.data import load_dataset

        n_train = len(load_dataset(probe.dataset, 0, where.data_root).train)
    return lines + cost_lines(costed, n_train)


def drive(sweep: SweepConfig, where: Where, dry_run: bool = False, log=print) -> int:
    """Run `pags sweep`; returns the exit code (0 all finished, 1 some trials failed for good,
    130 interrupted). ValueError = user error (exit 2), raised before any trial starts."""
    trials = representative_trials(sweep, where)  # validates every trial config
    locations.check_output(where.exp_dir)
    resume = experiment.check_compatible(where.exp_dir, sweep, where.max_failures)
    if dry_run:
        log(trial_table(sweep, where, resume))
        return 0

    from sweep.tune import cluster

    if where.address:
        cluster.check_address(where.address)
    # One sweep at a time per directory; checked again under the lock, since another sweep
    # may have claimed the directory since the check above.
    with experiment.locked(where.exp_dir):
        resume = experiment.check_compatible(where.exp_dir, sweep, where.max_failures)
        started = cluster.connect(where.address, where.num_cpus)
        try:
            cluster.check_resources(
                where.cpus_per_trial, where.gpus_per_trial, autoscaling=bool(where.address)
            )
            return _run(sweep, where, trials, resume, log)
        finally:
            if started:
                import ray

                ray.shutdown()


def _run(sweep, where: Where, trials, resume: bool, log) -> int:
    from sweep.export import write_results
    from sweep.tune.artifacts import prepare_shared
    from sweep.tune.launch import run_sweep
    from trainables.measure.artifacts import default_cache_dir

    where = dataclasses.replace(where, cache_dir=where.cache_dir or default_cache_dir())
    refs = prepare_shared(trials, where.cache_dir, where.cpus_per_trial, where.gpus_per_trial, log)
    if not resume:
        experiment.claim(where.exp_dir, sweep, where.max_failures)
    log(f"[pags] {'resuming' if resume else 'starting'} sweep {sweep.preset} in {where.exp_dir}")
    result = run_sweep(sweep, where, refs, log)
    name = os.path.basename(where.exp_dir.rstrip("/"))
    trials_df, _ = write_results(result.outcomes, where.exp_dir, name, package_versions())
    if result.best:
        storage.write_text_atomic(
            storage.join(where.exp_dir, SEARCH_BEST_FILE), json.dumps(result.best, indent=1)
        )
    failed = trials_df[trials_df["status"] == "error"]
    counts = trials_df["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    log(f"[pags] {len(trials_df)} trials in the tables: {summary or 'none'}")
    if "stopped" in counts:
        log("[pags] stopped: ended early by ASHA, kept in the tables but not in the means")
    for _, row in failed.head(5).iterrows():
        log(
            f"[pags] failed: {row['method']} strength={row['strength']:g} seed={row['seed']}: "
            f"{row['error']}"
        )
    log(f"results: {where.exp_dir}")
    if result.unfinished:
        log(
            f"[pags] interrupted with {result.unfinished} trials unfinished; rerun the same "
            "command to resume"
        )
        return 130
    log(f"next: pags analyze {where.exp_dir}")
    return 1 if len(failed) else 0
