"""A real S3-protocol server on loopback for the tests (no tests here): moto's server mode.

moto's `ThreadedMotoServer` answers the S3 REST API over HTTP (signatures, multipart uploads,
listings, conditional writes) from memory; pags reaches it only through the standard setting
`AWS_ENDPOINT_URL`, as it would a MinIO or Ceph endpoint. The credentials are fake and the
instance metadata service is off, so nothing here can reach AWS: a client that ignored the
endpoint fails instead of passing. (MinIO's server is on neither PyPI nor Debian; moto is a
PyPI package and starts in a second.)
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pytest

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "pags-test",
    "AWS_SECRET_ACCESS_KEY": "pags-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session", name="s3_endpoint")
def s3_endpoint_fixture():
    """The loopback server's URL (one server for the test session; a bucket per test)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class S3:
    """One test's bucket on the loopback server: `env` for subprocesses, `client` to look."""

    def __init__(self, endpoint: str):
        import boto3

        self.endpoint = endpoint
        self.bucket = f"pags-{uuid.uuid4().hex[:12]}"
        self.env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        self.env.update(FAKE_AWS, AWS_ENDPOINT_URL=endpoint)
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
        )
        self.client.create_bucket(Bucket=self.bucket)

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def reports(self, prefix: str) -> dict[str, list[dict]]:
        """{config_id: its reports so far} from the trials' result.json objects under
        `prefix` (as test_reliability_helpers.reports reads them from a local directory)."""
        out: dict[str, list[dict]] = {}
        for key in self.keys(prefix):
            if not key.endswith("/result.json"):
                continue
            rows = []
            for line in self.read(key).decode().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written right now
            if rows:
                out.setdefault(rows[0]["config_id"], []).extend(rows)
        return out

    def results(self, prefix: str, tmp_path: Path):
        """The experiment's two tables under `prefix`, read from the bucket."""
        from analysis import load_results
        from analysis.results.layout import MEASURES_FILE, TRIALS_FILE

        local = tmp_path / f"from-s3-{prefix.replace('/', '-')}"
        local.mkdir()
        for name in (TRIALS_FILE, MEASURES_FILE):
            (local / name).write_bytes(self.read(f"{prefix}/{name}"))
        return load_results(local)


@pytest.fixture(name="s3")
def s3_fixture(s3_endpoint, monkeypatch):
    """A fresh bucket; this process's environment points at the server too."""
    bucket = S3(s3_endpoint)
    for k in CLEARED:
        monkeypatch.delenv(k, raising=False)
    for k, v in {**FAKE_AWS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    return bucket
