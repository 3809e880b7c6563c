"""What every `pags` command's parser shares: one-line usage errors and `--set key=value`.

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
