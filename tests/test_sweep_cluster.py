"""A real two-node Ray cluster on this machine (loopback only), joined with `pags sweep --address`.

The head and the worker are separate `ray start` processes with token authentication
(`RAY_AUTH_MODE=token`, token in ~/.ray/auth_token, as Ray 2.59+ requires), with their
own temp dir so that nothing else on the machine joins them. The test stops exactly the
processes it started (found by that temp dir, killed by pid), never with `ray stop`, which
would stop every Ray on the machine.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from analysis import load_results

pytestmark = [pytest.mark.ray, pytest.mark.slow]
psutil = pytest.importorskip("psutil")

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_processes(temp_dir: str) -> list:
    """Processes of our nodes (their command line names our temp dir) and their children."""
    roots = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in p.info["cmdline"] or []):
                roots.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = {p.pid: p for p in roots}
    for p in roots:
        try:
            procs.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    return list(procs.values())


def stop_nodes(temp_dir: str) -> None:
    procs = node_processes(temp_dir)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def two_nodes():
    """(address, env) of a head + worker cluster, one CPU each; stopped afterwards."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    # A short path: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="pgr-", dir="/tmp")
    port = free_port()
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    try:
        token = subprocess.run(
            [RAY, "get-auth-token", "--generate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert token.returncode == 0, token.stderr
        for args in (
            ["--head", f"--port={port}", "--include-dashboard=false"],
            [f"--address=127.0.0.1:{port}"],
        ):
            out = subprocess.run(
                [
                    RAY,
                    "start",
                    *args,
                    *common,
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--metrics-export-port={free_port()}",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stdout + out.stderr
        yield f"127.0.0.1:{port}", env
    finally:
        stop_nodes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_a_two_node_cluster(two_nodes, tmp_path):
    address, env = two_nodes
    deadline = time.monotonic() + 60  # the worker node registers asynchronously
    while time.monotonic() < deadline:
        status = subprocess.run(
            [RAY, "status", f"--address={address}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "2.0 CPU" in status.stdout or "0.0/2.0 CPU" in status.stdout:
            break
        time.sleep(1)
    exp = tmp_path / "exp"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "sweep",
            "--preset",
            "digits-quick",
            "--methods",
            "none,randsmooth",
            "--strengths",
            "0.1,0.3,0.5",
            "--epochs",
            "2",
            "--set",
            "train_subset=128",
            "--set",
            "measure=false",
            "--address",
            address,
            "--output",
            str(exp),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    trials = load_results(exp).trials
    assert len(trials) == 4 and trials["config_id"].is_unique
    assert set(trials["status"]) == {"completed"}
    assert trials["node_id"].nunique() == 2, trials[["method", "strength", "node_id"]]
