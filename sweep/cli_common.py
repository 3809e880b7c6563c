"""What every `pags` command's parser shares: one-line usage errors, `--set key=value`, and
the data and Ray flags (defined once).

Its own module so that each command's module (sweep/cli.py, sweep/measure_cli.py) imports it
without importing the others (the old cli.py <-> measure_cli.py cycle).
"""

from __future__ import annotations

import argparse
import os
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


SCORE_HELP = (
    "the score alignment is measured against: denoiser (default: the project's own, trained "
    "once per dataset) or edm:PATH (an EDM-style denoiser file, at score_sigma; docs/cluster.md)"
)


def add_score_option(p) -> None:
    p.add_argument("--score", metavar="denoiser|edm:PATH", help=SCORE_HELP)


def score_set(spec: str | None) -> dict[str, str]:
    """`--score` as a config override: {} for the default, {"score": "edm:/absolute/path"};
    the file must exist (trials may run elsewhere in the cluster: the path must be shared)."""
    from trainables.config import SCORE_PREFIX

    if spec is None or spec == "denoiser":
        return {}
    path = spec[len(SCORE_PREFIX) :] if spec.startswith(SCORE_PREFIX) else ""
    if not path:
        raise UsageError(f"--score {spec!r} is unknown; allowed: denoiser or edm:PATH")
    if not os.path.isfile(path):
        raise UsageError(f"--score {spec!r}: no file at {path}; allowed: an EDM denoiser file")
    return {"score": SCORE_PREFIX + os.path.abspath(path)}
