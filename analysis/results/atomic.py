"""The one atomic-write helper: every results file, checkpoint and artifact goes through it.

A writer writes to a temporary file of its own beside `path` (a unique name: two writers of one
path never share it) and renames it over `path`, so a reader, also on shared storage, sees the
old file or the new one, never half of one. Part of the contract layer (analysis/results), which
imports nothing else of pags: the trial side, the sweep and the analysis can all import it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable
from typing import BinaryIO

from analysis.results.errors import InputError
from analysis.results.layout import is_uri


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


def filesystem(path: str):
    """(pyarrow filesystem, path inside it) of a local path or a URI. Raises InputError for an
    unusable URI."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except Exception as err:  # pyarrow raises several types for bad schemes/credentials
        raise InputError(f"storage {path!r} is not usable: {' '.join(str(err).split())}") from None


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write `data` to a local path or a URI so that a reader never sees half of it."""
    fs, inner = filesystem(path)
    if not is_uri(path):
        os.makedirs(os.path.dirname(os.path.abspath(inner)), exist_ok=True)
        atomic_write(inner, lambda f: f.write(data))
        return
    # An object store has no rename across writers to race on: a PUT replaces the object
    # whole, so the temporary object only needs a name no other writer uses.
    fs.create_dir(posixpath.dirname(inner))
    tmp = f"{inner}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, inner)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """Hex digest of a local file's bytes, read in 1 MiB blocks (checkpoints and cached
    artifacts: SHA-256; the data sets' published checksums: md5)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
