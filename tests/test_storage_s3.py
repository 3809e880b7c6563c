"""Output locations checked up front, and the S3 experiment lock, against a real S3-protocol
server on loopback (tests/s3_server.py). No Ray: a refused location exits 2 with one line
before Ray would start (`no_ray`), and the lock is exercised directly."""

import json
import os
import socket
import string
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3_server import s3_endpoint_fixture, s3_fixture  # noqa: F401 - fixtures

from analysis.results.errors import InputError
from analysis.results.layout import LOCK_FILE
from sweep import locations, s3lock
from sweep.cli import main
from sweep.experiment import locked
from sweep.tune import cluster

SWEEP = ["sweep", "--preset", "digits-quick", "--methods", "none", "--epochs", "1"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def no_ray(monkeypatch):
    def connect(*args, **kwargs):
        raise AssertionError("an unusable output location reached Ray")

    monkeypatch.setattr(cluster, "connect", connect)


def refused(capsys, argv) -> str:
    """Run `pags ARGV`: it must exit 2 with one line on stderr; that line."""
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("pags: error: ") and out == "", err
    return lines[0]


@pytest.mark.parametrize("path", ["/proc/x", "/proc/self/pags-out", "/dev/null/x"])
def test_unwritable_local_output_is_refused_before_ray(path, capsys, no_ray):
    line = refused(capsys, [*SWEEP, "--output", path])
    assert repr(path) in line and "not writable" in line, line


def test_unwritable_measure_output_is_refused(capsys, no_ray, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    line = refused(capsys, ["measure", "--checkpoint", str(ckpt), "--output", "/proc/x"])
    assert "'/proc/x'" in line and "not writable" in line, line


def test_missing_bucket_is_refused_naming_it(s3, capsys, no_ray):
    line = refused(capsys, [*SWEEP, "--storage", "s3://pags-no-such-bucket/x"])
    assert "bucket 'pags-no-such-bucket' does not exist" in line and s3.endpoint in line, line


@settings(max_examples=12, **SETTINGS)
@given(
    bucket=st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=3, max_size=20)
    .filter(lambda b: b[0].isalnum() and b[-1].isalnum())
    .map(lambda b: f"pags-nosuch-{b}"),
)
def test_generated_missing_buckets_exit_2_with_one_line(s3, capsys, no_ray, bucket):
    line = refused(capsys, [*SWEEP, "--storage", f"s3://{bucket}/pags"])
    assert f"s3://{bucket}/pags" in line and "does not exist" in line, line


@settings(max_examples=12, **SETTINGS)
@given(
    bucket=st.one_of(
        st.just(""),
        st.text(alphabet=string.ascii_uppercase + "_!@ ", min_size=1, max_size=8),
        st.text(alphabet="ab", min_size=64, max_size=70),
    )
)
def test_generated_malformed_s3_uris_exit_2_with_one_line(s3, capsys, no_ray, bucket):
    uri = f"s3://{bucket}/pags"
    line = refused(capsys, [*SWEEP, "--storage", uri])
    assert "s3://" in line, line


def test_no_credentials_is_refused(s3, capsys, no_ray, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = refused(capsys, [*SWEEP, "--storage", s3.uri("pags")])
    assert "no AWS credentials found" in line and s3.uri("pags") in line, line


def test_unreachable_endpoint_is_refused(s3, capsys, no_ray, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    line = refused(capsys, [*SWEEP, "--storage", s3.uri("pags")])
    assert "is not reachable" in line and f"127.0.0.1:{port}" in line, line


def test_a_usable_bucket_passes_and_keeps_no_probe(s3):
    locations.check_output(s3.uri("exp"))
    assert s3.keys() == []  # the probe object was deleted


def test_the_endpoint_setting_is_what_reaches_the_server(s3, monkeypatch):
    """Ignoring AWS_ENDPOINT_URL would mean talking to AWS: refused here (no network, fake
    keys), so every other test in this file depends on the endpoint being honoured."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(InputError):
        locations.check_output(s3.uri("exp"))


# ---- the lock ---------------------------------------------------------------------------
def lock_key(exp="exp") -> str:
    return f"{exp}/{LOCK_FILE}"


def test_a_second_driver_is_refused_and_the_holders_lock_is_untouched(s3):
    exp = s3.uri("exp")
    with locked(exp):
        held = s3.client.head_object(Bucket=s3.bucket, Key=lock_key())
        holder = json.loads(s3.read(lock_key()))
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(InputError, match=rf"in use by another pags sweep \(pid {os.getpid()}"):
            with locked(exp):
                pass
        after = s3.client.head_object(Bucket=s3.bucket, Key=lock_key())
        assert after["ETag"] == held["ETag"]
    assert s3.keys() == []  # released


HOLD = """
import sys, time
from sweep.experiment import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_lock_of_a_killed_driver_is_taken_over_on_its_host(s3):
    exp = s3.uri("exp")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, exp], stdout=subprocess.PIPE,
                            text=True, env=s3.env)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"pid {proc.pid} on "):
            with locked(exp):
                pass
    finally:
        proc.kill()
        proc.wait()
    assert s3.keys() == [lock_key()]  # a SIGKILL leaves the lease object behind
    with locked(exp):  # its pid is gone: taken over at once
        assert json.loads(s3.read(lock_key()))["pid"] == os.getpid()


def test_a_lease_from_another_host_lapses_only_after_its_lease_time(s3):
    s3.client.put_object(Bucket=s3.bucket, Key=lock_key(),
                         Body=json.dumps({"host": "elsewhere", "pid": 1}).encode())  # fmt: skip
    client = locations.s3_client()
    with pytest.raises(InputError, match="pid 1 on elsewhere"):
        s3lock.acquire(client, s3.bucket, lock_key(), s3.uri("exp"), lease_s=60)
    time.sleep(2.5)  # Last-Modified has one-second resolution
    etag = s3lock.acquire(client, s3.bucket, lock_key(), s3.uri("exp"), lease_s=1)
    assert json.loads(s3.read(lock_key()))["pid"] == os.getpid()
    # Of two drivers that judged the same lease stale, the second's take-over fails: its
    # conditional write names an ETag that is no longer there.
    stale = '"' + "0" * 32 + '"'
    assert etag != stale
    with pytest.raises(Exception, match="PreconditionFailed"):
        client.put_object(Bucket=s3.bucket, Key=lock_key(), Body=b"{}", IfMatch=stale)


def test_the_holder_renews_its_lease(s3):
    exp = s3.uri("exp")
    with s3lock.held(exp, lease_s=0.4):  # renewed every 0.1 s
        first = s3.client.head_object(Bucket=s3.bucket, Key=lock_key())["ETag"]
        deadline = time.monotonic() + 30
        while s3.client.head_object(Bucket=s3.bucket, Key=lock_key())["ETag"] == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
    assert s3.keys() == []
