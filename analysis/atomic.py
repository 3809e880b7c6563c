"""The one atomic-write helper: every results file, checkpoint and artifact goes through it.

A writer writes to a temporary file of its own beside `path` (a unique name: two writers of one
path never share it) and renames it over `path`, so a reader, also on shared storage, sees the
old file or the new one, never half of one. It lives in `analysis` because that package depends
on nothing of ours: the trial side, the sweep and the analysis can all import it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(f)` on a fresh temporary file beside `path`, then rename it over `path`.
    On any failure the temporary file is removed and `path` is left as it was."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
