"""What every `pags` command's parser shares: one-line usage errors, `--set key=value`, and
the data and Ray flags (defined once).

Its own module so that each command's module (sweep/cli.py, sweep/measure_cli.py) imports it
without importing the others (the old cli.py <-> measure_cli.py cycle).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from analysis.results.errors import InputError


class UsageError(InputError):
    """A user error found by the command line itself: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print the one line that says what is wrong."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def set_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` overrides for any TrialConfig field."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r} is invalid; allowed: key=value")
        out[key] = value
    return out


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """--data-root and --cache-dir, as every command that trains or measures takes them."""
    p.add_argument("--data-root", default="")
    p.add_argument(
        "--cache-dir",
        default="",
        help="shared artifacts cache (default $PAGS_CACHE or ~/.cache/pags/artifacts)",
    )


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    """--address and --num-cpus, as every command that runs on Ray takes them."""
    p.add_argument("--address", help="join a running Ray cluster (HOST:PORT or auto)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default all)")
