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
from analysis.results.errors import InputError
from analysis.results.layout import is_uri, join

# The atomic writers and the layout's join live in the contract layer (analysis/results);
# they are named here too because every sweep module reads and writes through `storage`.
__all__ = [
    "check_writable", "copy_file", "exists", "filesystem", "is_uri", "join", "read_bytes",
    "read_text", "resolve", "write_bytes_atomic", "write_text_atomic",
]  # fmt: skip


def resolve(path: str) -> str:
    """Absolute local path, or the URI unchanged (without a trailing slash)."""
    if is_uri(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def check_writable(path: str) -> None:
    """Refuse a path that cannot become a writable directory, without writing anything.

    Local: the nearest existing ancestor must be a writable directory. URI: the filesystem
    must resolve and the path must not be a file (credentials are checked on first write)."""
    if is_uri(path):
        fs, inner = filesystem(path)
        try:
            info = fs.get_file_info(inner)
        except Exception as err:
            raise InputError(f"storage {path!r} is not reachable: {err}") from None
        if info.type == pafs.FileType.File:
            raise InputError(f"storage {path!r} is a file; allowed: a directory")
        return
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise InputError(f"output {path!r} is not writable: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output {path!r} is not writable: no permission on {probe!r}")


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
