"""The experiment lock on S3, where there is no flock: a lease object created by a conditional
write.

`<exp>/.pags.lock` is created with `If-None-Match: *` (S3, MinIO and Ceph RGW create it for
exactly one writer; the others get 412 Precondition Failed). Its body names the holder (host,
pid); the holder rewrites it every `LEASE_S / 4` seconds with `If-Match: <its ETag>`, and
deletes it the same way when the sweep ends. A second driver that finds the object is refused,
unless the holder is gone:

- same host and the pid no longer runs (a SIGKILLed driver, rerun where it ran): taken over
  at once;
- not renewed for `LEASE_S` (by the server's clock: its `Date` header against the object's
  `Last-Modified`): taken over, so a driver killed with its machine does not block the rerun
  for longer than a minute.

A take-over is itself a conditional write (`If-Match` on the ETag that was judged stale), so of
two drivers taking over at once exactly one wins. A holder whose renewal fails because another
driver took its lease stops as on SIGTERM (the finished trials stay; nothing is written twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

from analysis.results.errors import InputError
from analysis.results.layout import LOCK_FILE
from sweep.locations import s3_client, split_s3

LEASE_S = 60.0  # a lock not renewed for this long belongs to a driver that is gone
RACES = 5  # attempts when the lock vanishes or changes between our reads


def _code(err) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _conflict(err) -> bool:
    """412: the condition failed; 409: a concurrent conditional write to the same key."""
    return _code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _body(renewals: int = 0) -> bytes:
    """The lease object: who holds it (and a counter that changes its ETag on renewal)."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "renewals": renewals}
    return json.dumps(holder).encode()


def _put(client, bucket: str, key: str, body: bytes, **condition: str) -> str:
    """A conditional PUT; the new object's ETag."""
    return client.put_object(Bucket=bucket, Key=key, Body=body, **condition)["ETag"]


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_gone(holder: dict, age_s: float, lease_s: float) -> bool:
    if age_s > lease_s:
        return True
    same_host = holder.get("host") == socket.gethostname()
    return same_host and isinstance(holder.get("pid"), int) and not _pid_runs(holder["pid"])


def acquire(client, bucket: str, key: str, exp_dir: str, lease_s: float = LEASE_S) -> str:
    """Create (or take over from a gone holder) the lease object; its ETag. InputError if a
    live driver holds it."""
    from botocore.exceptions import ClientError

    body = _body()
    for _ in range(RACES):
        try:
            return _put(client, bucket, key, body, IfNoneMatch="*")
        except ClientError as err:
            if not _conflict(err):
                raise
        try:
            got = client.get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                continue  # released meanwhile: create it again
            raise
        try:
            holder = json.loads(got["Body"].read())
        except ValueError:
            holder = {}
        now = parsedate_to_datetime(got["ResponseMetadata"]["HTTPHeaders"]["date"])
        age = (now - got["LastModified"]).total_seconds()
        if not _holder_gone(holder, age, lease_s):
            raise InputError(
                f"{exp_dir} is in use by another pags sweep (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, lease renewed {max(age, 0):.0f} s ago); allowed: "
                f"wait for it to finish (a killed sweep's lease lapses after {lease_s:g} s), or "
                "another --output"
            )
        try:
            return _put(client, bucket, key, body, IfMatch=got["ETag"])
        except ClientError as err:
            if not _conflict(err) and _code(err) not in ("NoSuchKey", "404"):
                raise
    raise InputError(f"{exp_dir}: the lock kept changing under {RACES} tries; allowed: retry")


@contextlib.contextmanager
def held(exp_dir: str, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the S3 experiment `exp_dir` for one running sweep (see the module doc)."""
    from botocore.exceptions import ClientError

    bucket, prefix = split_s3(exp_dir)
    key = "/".join(p for p in (prefix, LOCK_FILE) if p)
    client = s3_client()
    etag = [acquire(client, bucket, key, exp_dir, lease_s)]
    stop = threading.Event()

    def renew() -> None:
        renewals = 0
        while not stop.wait(lease_s / 4):
            renewals += 1  # a new body: an unchanged one would keep its ETag
            try:
                etag[0] = _put(client, bucket, key, _body(renewals), IfMatch=etag[0])
            except ClientError as err:
                if _conflict(err) or _code(err) in ("NoSuchKey", "404"):
                    print(f"[pags] lost the lock of {exp_dir} to another driver: stopping",
                          file=sys.stderr, flush=True)  # fmt: skip
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            except Exception:  # the endpoint unreachable for a moment: try again next time
                continue

    thread = threading.Thread(target=renew, name="pags-s3-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(ClientError):  # already taken over: not ours to delete
            client.delete_object(Bucket=bucket, Key=key, IfMatch=etag[0])
