"""Paths of an experiment directory: a local path or a pyarrow-supported URI (s3://, gs://).

Ray Tune accepts both as `storage_path`; the tables, the maps and the sweep config go through
the same pyarrow filesystem, so a sweep on a cluster with `--storage s3://bucket/pags` leaves
everything in the bucket. Local paths are made absolute: Tune changes each trial's working
directory.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import pyarrow.fs as pafs

from analysis.atomic import atomic_write
from trainables.errors import InputError


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str) -> str:
    """Absolute local path, or the URI unchanged (without a trailing slash)."""
    if is_uri(path):
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_uri(base) else os.path.join(base, *parts)


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it). Raises ValueError for an unusable URI."""
    if not is_uri(path):
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except Exception as err:  # pyarrow raises several types for bad schemes/credentials
        raise InputError(f"storage {path!r} is not usable: {' '.join(str(err).split())}") from None


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


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write to a temp name beside `path`, then move over it (a reader never sees half)."""
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


def copy_file(src_fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Copy one file from any filesystem to `dst` (atomically)."""
    with src_fs.open_input_stream(src) as f:
        write_bytes_atomic(dst, f.read())
