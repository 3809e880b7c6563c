"""The `pags measure` subcommand: arguments, the models.csv manifest, and the call into
`sweep.files.run.run_measure`.

Manifest: a CSV with a header; columns `name, path, arch, format` (arch may be empty for the
pags format) and optionally `strength, label, seed, epoch, activation`. Relative paths are
relative to the manifest's folder. A row with a bad value is one line naming the row and the
value, counted into exit code 2; the other rows are measured. A missing or unknown column stops
everything (exit 2): the file is not a manifest.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable

from analysis.results.errors import InputError
from sweep.cli_common import add_data_flags, add_ray_flags, add_score_option

REQUIRED = ("name", "path", "arch", "format")
DEFAULT_DATASET = "digits-distractor"
OPTIONAL = ("strength", "label", "seed", "epoch", "activation")


def add_measure_parser(sub) -> None:
    """No torch import here: every `pags` command builds this parser."""
    p = sub.add_parser("measure", help="measure checkpoint files as a trial measures its model")
    p.add_argument("--dataset", help="default: the pags checkpoints' own, else "
                   f"{DEFAULT_DATASET}")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", action="append", metavar="PATH", help="repeatable")
    src.add_argument("--manifest", metavar="CSV", help="models.csv: " + ", ".join(REQUIRED))
    p.add_argument(
        "--format",
        default="pags",
        help="for --checkpoint: pags (default), state_dict, torchvision, robustbench, robustness",
    )
    p.add_argument("--arch", default="", help="for --checkpoint (not pags): architecture name")
    p.add_argument("--activation", default="softplus", help="for pags architectures")
    p.add_argument("--label", help="the tables' method column (default pretrained)")
    p.add_argument("--strength", type=float, default=0.0, help="the tables' strength column")
    p.add_argument("--seed", type=int, help="measurement seed (default: the checkpoint's, or 0)")
    p.add_argument("--epoch", type=int, help="epoch column and noise seed (default: file's or 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="measurement settings, e.g. eval_points=200")  # fmt: skip
    add_score_option(p)
    p.add_argument("--output", default="results/measure", help="results directory")
    add_data_flags(p)
    p.add_argument("--local", action="store_true", help="measure in this process, without Ray")
    p.add_argument("--device", default="", help="with --local: cpu, cuda, ...")
    add_ray_flags(p)
    p.add_argument("--cpus-per-task", type=float, default=1.0)
    p.add_argument("--gpus-per-task", type=float, help="default: 1 when the cluster has GPUs")


def cmd_measure(args) -> int:
    from sweep.cli_common import UsageError, score_set, set_pairs
    from sweep.files.run import run_measure
    from trainables.config import TrialConfig
    from trainables.measure_checkpoint import DEFAULT_LABEL, MEASURE_FIELDS, ModelSpec

    sets = set_pairs(args.set)
    for key in sets:
        if key not in MEASURE_FIELDS:
            raise UsageError(f"--set {key!r} is not a measurement setting; allowed: "
                             f"{', '.join(MEASURE_FIELDS)}")  # fmt: skip
    sets.update(score_set(args.score))
    cache = os.path.abspath(args.cache_dir) if args.cache_dir else ""
    data_root = os.path.abspath(args.data_root) if args.data_root else ""
    lines: list[str] = []
    if args.manifest:
        specs = read_manifest(args.manifest, lines.append)
    else:
        _check_args(args)
        specs = [
            ModelSpec(name=os.path.basename(path), path=os.path.abspath(path), arch=args.arch,
                      format=args.format, label=args.label or DEFAULT_LABEL, strength=args.strength,
                      activation=args.activation, seed=args.seed, epoch=args.epoch)
            for path in args.checkpoint
        ]  # fmt: skip
    for line in lines:
        print(f"[pags] bad manifest row: {line}", flush=True)
    given = {**({"dataset": args.dataset} if args.dataset else {}), **sets}
    settings = resolve_settings(specs, given, lambda text: print(text, flush=True))
    base = TrialConfig.from_dict(
        {"dataset": DEFAULT_DATASET, "data_root": data_root, "artifacts_dir": cache, **settings}
    )
    if not (args.cpus_per_task > 0 and math.isfinite(args.cpus_per_task)):
        raise UsageError(f"--cpus-per-task {args.cpus_per_task:g} is invalid; allowed: > 0")
    gpus = args.gpus_per_task
    if gpus is not None and not (gpus >= 0 and math.isfinite(gpus)):
        raise UsageError(f"--gpus-per-task {gpus:g} is invalid; allowed: >= 0")
    return run_measure(
        specs, base, os.path.abspath(args.output), local=args.local, device=args.device,
        address=args.address, num_cpus=args.num_cpus, cpus=args.cpus_per_task,
        gpus=args.gpus_per_task, invalid=len(lines),
        log=lambda text: print(text, flush=True),
    )  # fmt: skip


def resolve_settings(specs: list, given: dict, log: Callable[[str], None]) -> dict:
    """The dataset and measurement settings to measure with: yours (`--dataset`, `--set`),
    else those the pags checkpoints were measured with in their trial (so re-measuring a trial
    reproduces it), else the defaults. Says which came from the checkpoints. Checkpoints that
    disagree on a setting you did not give are refused (one directory, one set of settings)."""
    from trainables.checkpoints import saved_config
    from trainables.measure_checkpoint import MEASURE_FIELDS

    found: dict[str, tuple[object, str]] = {}
    for spec in specs:
        cfg = saved_config(spec.path) if spec.format == "pags" else None
        for key in ("dataset", *MEASURE_FIELDS):
            if cfg is None or key in given or key not in cfg:
                continue
            value = list(cfg[key]) if isinstance(cfg[key], (tuple, list)) else cfg[key]
            if key in found and found[key][0] != value:
                first, name = found[key]
                raise InputError(
                    f"{spec.name} was measured with {key}={value!r}, {name} with {first!r}; "
                    f"allowed: one value per --output directory (give --set {key}=... or "
                    f"measure them into separate directories)"
                )
            found.setdefault(key, (value, spec.name))
    taken = {key: value for key, (value, _) in found.items()}
    if taken:
        listed = ", ".join(f"{k}={v}" for k, v in taken.items())
        log(f"[pags] settings from the checkpoints' trials: {listed}")
    if given:
        log("[pags] settings you gave: " + ", ".join(f"{k}={v}" for k, v in given.items()))
    return {**taken, **given}


def _check_args(args) -> None:
    from sweep.cli_common import UsageError

    problem = spec_problem(args.format, args.arch, args.strength, args.activation)
    for flag in ("seed", "epoch"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            problem = f"--{flag} {value} is invalid; allowed: an integer >= 0"
    if problem:
        raise UsageError(problem)


def spec_problem(fmt: str, arch: str, strength: float, activation: str) -> str:
    """What is wrong with these values (one line), or ""."""
    from trainables import zoo
    from trainables.checkpoints import FORMATS, torchvision_archs
    from trainables.models import ACTIVATIONS, MODELS

    if fmt not in FORMATS:
        return f"format {fmt!r} is unknown; allowed: {', '.join(FORMATS)}"
    if fmt == "robustbench" and not zoo.is_zoo_arch(arch):
        return f"arch {arch!r} is not a RobustBench-zoo architecture; allowed: " + ", ".join(
            zoo.EXAMPLES
        )
    known_arch = arch in MODELS or zoo.is_zoo_arch(arch) or arch in torchvision_archs()
    if fmt != "pags" and not known_arch:
        known = ", ".join(MODELS.names())
        return (
            f"arch {arch!r} is unknown for format {fmt}; allowed: {known}, a RobustBench-zoo "
            f"architecture ({', '.join(zoo.EXAMPLES)}) or a torchvision one (e.g. resnet18)"
        )
    if not (math.isfinite(strength) and strength >= 0):
        return f"strength {strength!r} is invalid; allowed: a finite number >= 0"
    if activation not in ACTIVATIONS:
        return f"activation {activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}"
    return ""


def read_manifest(path: str, bad: Callable[[str], None]) -> list:
    """The manifest's rows as specs; a bad row goes to `bad` (one line) and is skipped.
    ValueError (exit 2) for an unreadable file or missing/unknown columns."""
    from trainables.measure_checkpoint import DEFAULT_LABEL, ModelSpec

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows and list(rows[0]) or []
    except OSError as err:
        raise InputError(f"manifest {path}: cannot read it ({err.strerror or err})") from None
    except csv.Error as err:
        raise InputError(f"manifest {path}: not a CSV file ({err})") from None
    columns = [c.strip() for c in header]
    missing = [c for c in REQUIRED if c not in columns]
    unknown = [c for c in columns if c not in (*REQUIRED, *OPTIONAL)]
    if not rows or missing or unknown:
        what = f"missing columns {missing}" if missing or not rows else f"unknown columns {unknown}"
        raise InputError(
            f"manifest {path}: {what if rows else 'no rows'}; allowed: {', '.join(REQUIRED)} "
            f"and optionally {', '.join(OPTIONAL)}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    specs = []
    for n, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{path} line {n} ({row.get('name') or '?'})"
        try:
            spec = ModelSpec(
                name=row["name"] or os.path.basename(row["path"]),
                path=os.path.join(folder, os.path.expanduser(row["path"])),
                arch=row["arch"],
                format=row["format"] or "pags",
                label=row.get("label") or DEFAULT_LABEL,
                strength=_number(row, "strength", float, 0.0),
                activation=row.get("activation") or "softplus",
                seed=_number(row, "seed", int, None),
                epoch=_number(row, "epoch", int, None),
            )
        except ValueError as err:  # a bad row is reported and skipped
            bad(f"{where}: {err}")
            continue
        if not row["path"]:
            bad(f"{where}: path is empty; allowed: a checkpoint file")
            continue
        problem = spec_problem(spec.format, spec.arch, spec.strength, spec.activation)
        if problem:
            bad(f"{where}: {problem}")
            continue
        specs.append(spec)
    return specs


def _number(row: dict, key: str, kind, default):
    text = row.get(key, "")
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{key} {text!r} is invalid; allowed: {kind.__name__}") from None
    if kind is int and value < 0:
        raise InputError(f"{key} {text!r} is invalid; allowed: an integer >= 0")
    return value
