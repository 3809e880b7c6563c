"""Output locations checked before anything runs: a path or URI that cannot hold the results is
the user's input, refused in one line (exit 2) before Ray starts, not hours later.

- A local path: the nearest existing ancestor must be a directory in which a directory can
  really be created (probed with a temporary directory, removed at once: `os.access` says yes
  to root on read-only mounts and on /proc).
- `s3://BUCKET/...`: credentials must be found, the endpoint reached, the bucket exist, and a
  probe object be written and deleted there (the endpoint comes from `AWS_ENDPOINT_URL`, as for
  every AWS client; docs/cluster.md). boto3 speaks for pyarrow here: it reads the same
  settings and says which of them failed, where pyarrow reports a missing bucket as an empty
  directory and writes fail only later.
- Other URIs (`gs://`, `file://`, ...): pyarrow must know the scheme and reach the location.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from urllib.parse import urlparse

import pyarrow.fs as pafs

from analysis.results.errors import InputError, one_line
from sweep import storage

PROBE_PREFIX = ".pags-probe-"  # a probe object's name; deleted right after it is written


def check_output(path: str, what: str = "output") -> None:
    """Refuse (InputError, one line naming `path`) a location that cannot hold results."""
    if not storage.is_uri(path):
        _check_local(path, what)
    elif urlparse(path).scheme == "s3":
        _check_s3(path, what)
    else:
        _check_other_uri(path, what)


def _check_local(path: str, what: str) -> None:
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise InputError(f"{what} {path!r} is not writable: {probe!r} is not a directory")
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=probe))
    except OSError as err:
        reason = err.strerror or one_line(err)
        raise InputError(
            f"{what} {path!r} is not writable: cannot create a directory in {probe!r} ({reason})"
        ) from None


def _check_other_uri(path: str, what: str) -> None:
    fs, inner = storage.filesystem(path)
    try:
        info = fs.get_file_info(inner)
    except Exception as err:  # pyarrow raises OSError and others for unreachable storage
        raise InputError(f"{what} {path!r} is not reachable: {one_line(err)}") from None
    if info.type == pafs.FileType.File:
        raise InputError(f"{what} {path!r} is a file; allowed: a directory")


def s3_client():
    """A boto3 S3 client with the standard settings (AWS_ENDPOINT_URL, credentials chain),
    failing fast: one try per request, short timeouts (a check, not a transfer)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 1})
    return boto3.session.Session().client("s3", config=config)


def split_s3(path: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of an s3:// URI."""
    parsed = urlparse(path)
    return parsed.netloc, parsed.path.strip("/")


def _check_s3(path: str, what: str) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(path)
    if not bucket:
        raise InputError(f"{what} {path!r} names no bucket; allowed: s3://BUCKET/PATH")
    if boto3.session.Session().get_credentials() is None:
        raise InputError(
            f"{what} {path!r}: no AWS credentials found; allowed: AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials or an instance profile"
        )
    client = s3_client()
    endpoint = client.meta.endpoint_url
    try:
        client.head_bucket(Bucket=bucket)
        key = "/".join(p for p in (prefix, f"{PROBE_PREFIX}{uuid.uuid4().hex}") if p)
        client.put_object(Bucket=bucket, Key=key, Body=b"")
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise InputError(
                f"{what} {path!r}: bucket {bucket!r} does not exist at {endpoint}; allowed: "
                "an existing bucket (pags creates no buckets)"
            ) from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise InputError(
                f"{what} {path!r}: access denied by {endpoint} ({code}); allowed: credentials "
                "that may write there"
            ) from None
        raise InputError(f"{what} {path!r} is not writable: {one_line(err)}") from None
    except BotoCoreError as err:  # no connection, bad endpoint URL, ...
        raise InputError(f"{what} {path!r} is not reachable: {one_line(err)}") from None
