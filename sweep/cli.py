"""The `pags` command line: train one trial, prepare artifacts, run a sweep, analyze results.

User errors (`InputError`: unknown names, bad values, missing data) exit with code 2 and one
line naming the bad value and what is allowed, never a traceback. Anything else is a bug or an
infrastructure failure: exit 1 and one line naming a log file that holds the traceback
(`--debug` prints it too), so that an internal error is never passed off as a typo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Any

from analysis.results.errors import InputError, one_line
from analysis.results.record import latest_maps
from sweep.cli_common import (
    OneLineParser,
    UsageError,
    add_data_flags,
    add_ray_flags,
    add_score_option,
    score_set,
    set_pairs,
)

__all__ = ["OneLineParser", "UsageError", "main"]


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train and measure one trial (no Ray)")
    p.add_argument(
        "--preset",
        help="derive the config as this preset's sweep does (same config_id as its trial)",
    )
    p.add_argument("--dataset", help="default: the preset's, else digits-distractor")
    p.add_argument("--model")
    p.add_argument("--method", default="none")
    p.add_argument("--strength", type=float, default=0.0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    add_data_flags(p)
    p.add_argument("--checkpoint-dir", default="", help="save every epoch; resume if present")
    p.add_argument("--output", default="results/train", help="where gradient/score maps go")
    p.add_argument("--device", default="", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-measure", action="store_true", help="train and test accuracy only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the derived config and its config_id as JSON, train nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_score_option(p)


def trial_config_from_args(args) -> Any:
    from sweep.plan.config import preset_trial_dict
    from trainables.config import TrialConfig
    from trainables.recipes import derive_trial_dict

    sets: dict[str, Any] = {}
    if args.model:
        sets["model"] = args.model
    if args.no_measure:
        sets["measure"] = False
    sets.update(set_pairs(args.set))
    sets.update(score_set(args.score))
    where = {"data_root": args.data_root} if args.data_root else {}
    if args.preset:
        d = preset_trial_dict(
            args.preset, args.method, args.strength, args.seed, epochs=args.epochs, sets=sets
        )
        if args.dataset and args.dataset != d["dataset"]:
            raise InputError(
                f"--dataset {args.dataset!r} differs from preset {args.preset!r}; "
                f"allowed: {d['dataset']} (or no --preset)"
            )
    else:
        if args.epochs is not None:
            sets["epochs"] = args.epochs
        # Without a preset, --set may also name the trial's axes (it did before --preset).
        axes = {"dataset": args.dataset or "digits-distractor", "method": args.method,
                "strength": args.strength, "seed": args.seed}  # fmt: skip
        axes.update({k: sets.pop(k) for k in list(sets) if k in axes})
        d = derive_trial_dict(**axes, overrides=sets)
    return TrialConfig.from_dict({**d, **where})


def cmd_train(args) -> int:
    import os

    from trainables.data import load_dataset
    from trainables.loop import load_checkpoint, run_trial, save_checkpoint

    cfg = trial_config_from_args(args)
    if args.dry_run:
        from trainables.resolved import resolved_settings

        resolved = resolved_settings(cfg)
        print(json.dumps({"config_id": cfg.config_id, "config": cfg.to_dict(),
                          "resolved": resolved}))  # fmt: skip
        return 0
    bundle = load_dataset(cfg.dataset, cfg.seed, cfg.data_root)
    from trainables.runtime import choose_device

    device = choose_device(args.device)
    measurer = None
    if cfg.measure:
        from trainables.measure.evaluate import build_measurer

        measurer = build_measurer(cfg, bundle, device, cache_dir=args.cache_dir or None)

    checkpoint, path = None, ""
    if args.checkpoint_dir:
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        path = os.path.join(args.checkpoint_dir, f"{cfg.config_id}.pt")
        if os.path.exists(path):
            checkpoint = load_checkpoint(path)
    measured: list[dict] = []  # the epochs that measured, for their maps

    def on_epoch(metrics, make_checkpoint):
        if "measures" in metrics:
            measured.append(metrics)
        if path:
            save_checkpoint(make_checkpoint(), path)

    record = run_trial(
        cfg, device=device, bundle=bundle, checkpoint=checkpoint, on_epoch=on_epoch,
        measurer=measurer, log=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    result = record.to_dict()
    result.pop("measure_rows")
    maps = latest_maps(measured)
    if maps is not None:
        import numpy as np

        os.makedirs(args.output, exist_ok=True)
        result["maps_path"] = os.path.abspath(os.path.join(args.output, f"{cfg.config_id}.npz"))
        np.savez_compressed(result["maps_path"], **maps)
    if args.json:
        print(json.dumps(_jsonable(result)))
    else:
        s = record.summary
        print(
            f"{record.status}: {cfg.method} strength={cfg.strength} seed={cfg.seed} "
            f"test_accuracy={s['test_accuracy']:.4f} train_loss={s['train_loss']:.4f}"
            f" ({record.epochs_trained} epochs, {record.wall_time_s:.1f} s, id {cfg.config_id})"
        )
    return 0


def _jsonable(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    # An empty item ("0.1," or "0.1,,1") is refused, not dropped: it is usually a typo.
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run (or resume) a sweep of trials with Ray Tune")
    p.add_argument("--preset", required=True, help="digits-quick, digits, synthetic, ...")
    p.add_argument("--methods", type=_csv, help="comma-separated, e.g. none,gradnorm")
    p.add_argument("--strengths", type=_floats, help="comma-separated, for every robust method")
    p.add_argument("--seeds", type=int, help="number of seeds (0..n-1)")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other trial config field, e.g. train_subset=256",
    )
    p.add_argument("--output", help="experiment directory (default results/<preset>)")
    p.add_argument(
        "--storage",
        help="shared storage root (NFS path or s3://...); the "
        "experiment directory becomes <storage>/<name of --output>",
    )
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--gpus-per-trial", type=float, help="fractions share a GPU, e.g. 0.5")
    add_ray_flags(p)
    add_data_flags(p)
    p.add_argument("--max-failures", type=int, default=3, help="retries per trial")
    p.add_argument("--dry-run", action="store_true", help="print the trial table, run nothing")
    add_score_option(p)
    p.add_argument("--search", choices=["grid", "optuna"], default="grid")
    p.add_argument(
        "--objective", help="--search: what it optimizes (default alignment), mean over seeds"
    )
    p.add_argument(
        "--trials", type=int, help="--search: suggested strengths per method (default 8)"
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        help="--search: feasible = test accuracy >= the baseline's mean minus this (default 0.05)",
    )
    p.add_argument(
        "--asha",
        action="store_true",
        help="ASHA early stopping (off by default: it would cut the excessive-regime trials)",
    )


def cmd_sweep(args) -> int:
    import os

    from sweep import storage
    from sweep.plan.config import Where, from_preset
    from sweep.plan.presets import get_preset
    from sweep.tune.driver import drive

    sweep = from_preset(
        args.preset,
        methods=args.methods,
        strengths=args.strengths,
        seeds=args.seeds,
        epochs=args.epochs,
        sets={**set_pairs(args.set), **score_set(args.score)},
        search=args.search,
        objective=args.objective,
        search_trials=args.trials,
        asha=args.asha,
        max_accuracy_drop=args.max_accuracy_drop,
    )
    preset = get_preset(args.preset)
    cpus = preset.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial
    gpus = preset.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial
    _check_resources(cpus, gpus, args.max_failures, args.num_cpus)
    output = args.output or os.path.join("results", sweep.preset)
    if args.storage:
        name = os.path.basename(os.path.normpath(output))
        exp_dir = storage.join(storage.resolve(args.storage), name)
    else:
        exp_dir = storage.resolve(output)
    where = Where(
        exp_dir=exp_dir,
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        address=args.address,
        num_cpus=args.num_cpus,
        data_root=os.path.abspath(args.data_root) if args.data_root else "",
        cache_dir=os.path.abspath(args.cache_dir) if args.cache_dir else "",
        max_failures=args.max_failures,
    )
    return drive(sweep, where, dry_run=args.dry_run)


def _check_resources(cpus: float, gpus: float, max_failures: int, num_cpus: int | None) -> None:
    if not (cpus > 0 and math.isfinite(cpus)):
        raise InputError(f"--cpus-per-trial {cpus:g} is invalid; allowed: a number > 0")
    # Ray gives fractions of one GPU or whole GPUs, nothing in between.
    if not (gpus >= 0 and math.isfinite(gpus)) or (gpus > 1 and not float(gpus).is_integer()):
        raise InputError(
            f"--gpus-per-trial {gpus:g} is invalid; allowed: 0 <= g <= 1 or a whole number"
        )
    if max_failures < 0:
        raise InputError(f"--max-failures {max_failures} is invalid; allowed: an integer >= 0")
    if num_cpus is not None and num_cpus < 1:
        raise InputError(f"--num-cpus {num_cpus} is invalid; allowed: an integer >= 1")


def add_analyze_parser(sub) -> None:
    p = sub.add_parser("analyze", help="write the report of experiment directories")
    p.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        nargs="+",
        help="experiment directories analysed together (e.g. a search and a grid)",
    )
    p.add_argument(
        "--out", help="report directory (default RESULTS_DIR/report, on s3:// too)"
    )


def cmd_analyze(args) -> int:
    from analysis import ResultsError
    from analysis.report import write_report
    from sweep import remote_results, storage

    try:
        dirs = args.results_dir
        if any(storage.is_uri(d) for d in dirs):  # s3://...: read from there (no sync step)
            paths = remote_results.analyze(dirs, args.out, write_report)
        else:
            paths = write_report(dirs[0] if len(dirs) == 1 else dirs, out_dir=args.out)
    except ResultsError as err:
        raise UsageError(str(err)) from None
    # the calibration table on the terminal: which yardsticks a reader may trust
    print((storage.read_text(str(paths["calibration_text"])) or "").rstrip())  # path or URI
    print(f"report: {paths['markdown']}")
    print(f"html: {paths['html']}")
    return 0


def cmd_measure(args) -> int:
    from sweep.measure_cli import cmd_measure as measure

    return measure(args)


def build_parser() -> argparse.ArgumentParser:
    from sweep.measure_cli import add_measure_parser

    parser = OneLineParser(prog="pags", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an internal error"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(sub)
    add_sweep_parser(sub)
    add_analyze_parser(sub)
    add_measure_parser(sub)
    return parser


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "analyze": cmd_analyze, "measure": cmd_measure}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, so that a failed command is rerun as it was
    # typed with --debug appended.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as err:
        print(f"pags: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        log = _save_traceback()
        if debug:
            traceback.print_exc()
        print(
            f"pags: internal error: {type(err).__name__}: {one_line(err)} "
            f"(traceback in {log}; --debug prints it)",
            file=sys.stderr,
        )
        return 1


def _save_traceback() -> str:
    """Write the current exception's traceback to a new log file ($PAGS_LOG_DIR or the
    temporary directory); return its path."""
    folder = os.environ.get("PAGS_LOG_DIR") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="pags-error-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(["pags", *sys.argv[1:]]) + "\n\n" + traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
