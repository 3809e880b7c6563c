"""The `pags` command line: train one trial, prepare artifacts, run a sweep, analyze results.

User errors (unknown names, bad values, missing data) exit with code 2 and one line naming the
bad value and what is allowed, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, NoReturn, Sequence


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print the one line that says what is wrong."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _set_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` overrides for any TrialConfig field."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r} is invalid; allowed: key=value")
        out[key] = value
    return out


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train and measure one trial (no Ray)")
    p.add_argument("--dataset", default="digits-distractor")
    p.add_argument("--model")
    p.add_argument("--method", default="none")
    p.add_argument("--strength", type=float, default=0.0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default="")
    p.add_argument("--cache-dir", default="", help="where shared artifacts are cached")
    p.add_argument("--checkpoint-dir", default="", help="save every epoch; resume if present")
    p.add_argument("--output", default="results/train", help="where gradient/score maps go")
    p.add_argument("--device", default="", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-measure", action="store_true", help="train and test accuracy only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def trial_config_from_args(args) -> Any:
    from trainables.config import TrialConfig
    from trainables.recipes import recipe_config

    overrides: dict[str, Any] = {
        "dataset": args.dataset,
        "method": args.method,
        "strength": args.strength,
        "seed": args.seed,
        "data_root": args.data_root,
    }
    if args.model:
        overrides["model"] = args.model
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.no_measure:
        overrides["measure"] = False
    overrides.update(_set_pairs(args.set))
    try:
        return TrialConfig.from_dict(recipe_config(overrides))
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_train(args) -> int:
    import os

    import torch

    from trainables.data import DataUnavailableError, load_dataset
    from trainables.loop import load_checkpoint, run_trial, save_checkpoint

    cfg = trial_config_from_args(args)
    try:
        bundle = load_dataset(cfg.dataset, cfg.seed, cfg.data_root)
    except DataUnavailableError as err:
        raise UsageError(str(err)) from None
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    measurer = None
    if cfg.measure:
        from trainables.measure.evaluate import build_measurer

        measurer = build_measurer(cfg, bundle, device, cache_dir=args.cache_dir or None)

    checkpoint, on_epoch = None, None
    if args.checkpoint_dir:
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        path = os.path.join(args.checkpoint_dir, f"{cfg.config_id}.pt")
        if os.path.exists(path):
            checkpoint = load_checkpoint(path)

        def on_epoch(metrics, make_checkpoint):
            save_checkpoint(make_checkpoint(), path)

    result = run_trial(
        cfg, device=device, bundle=bundle, checkpoint=checkpoint, on_epoch=on_epoch,
        measurer=measurer,
    )  # fmt: skip
    result.pop("measure_rows")
    for epoch in result["history"]:
        epoch.get("measures", {}).pop("maps", None)
    maps = result.pop("maps", None)
    if maps is not None:
        import numpy as np

        os.makedirs(args.output, exist_ok=True)
        result["maps_path"] = os.path.abspath(os.path.join(args.output, f"{cfg.config_id}.npz"))
        np.savez_compressed(result["maps_path"], **maps)
    if args.json:
        print(json.dumps(_jsonable(result)))
    else:
        print(
            f"{result['status']}: {cfg.method} strength={cfg.strength} seed={cfg.seed} "
            f"test_accuracy={result['test_accuracy']:.4f} train_loss={result['train_loss']:.4f}"
            f" ({result['epochs']} epochs, {result['wall_time_s']:.1f} s, id {cfg.config_id})"
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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pags", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"train": cmd_train}[args.command](args)
    except UsageError as err:
        print(f"pags: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
