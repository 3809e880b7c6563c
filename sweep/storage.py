"""Paths of an experiment directory: a local path or a pyarrow-supported URI (s3://, gs://).

Ray Tune accepts both as `storage_path`; the tables, the maps and the sweep config go through
the same pyarrow filesystem, so a sweep on a cluster with `--storage s3://bucket/pags` leaves
everything in the bucket. Local paths are made absolute: Tune changes each trial's working
directory.
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from analysis.results.atomic import filesystem, write_bytes_atomic, write_text_atomic
from analysis.results.layout import is_uri, join

# The atomic writers and the layout's join live in the contract layer (analysis/results);
# they are named here too because every sweep module reads and writes through `storage`.
__all__ = [
    "copy_file", "exists", "filesystem", "is_uri", "join", "read_bytes",
    "read_text", "resolve", "write_bytes_atomic", "write_text_atomic",
]  # fmt: skip


def resolve(path: str) -> str:
    """Absolute local path, or the URI unchanged (without a trailing slash)."""
    if is_uri(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def exists(path: str) -> bool:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(inner) as f:
        return f.read()


def read_text(path: str) -> str | None:
    """The file's text, or None if it does not exist."""
    data = read_bytes(path)
    return None if data is None else data.decode()


def copy_file(src_fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Copy one file from any filesystem to `dst` (atomically)."""
    with src_fs.open_input_stream(src) as f:
        write_bytes_atomic(dst, f.read())
