"""A worker node lost mid-sweep (issue 6, item 3): its trials move to the remaining node and
the sweep completes.

A real two-node Ray cluster on this machine, loopback only, with token authentication
(Ray 2.59+ requires it locally), in its own temp dir. The head's health checks are tightened so
that the lost node is declared dead in seconds rather than the default half a minute. The worker
node's processes are the ones that appeared when it started (plus their children); the test
SIGKILLs exactly those, as a crashed machine would vanish, and stops the head afterwards.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from test_reliability_helpers import finish, reap, reports, start_sweep, wait_until

from analysis import load_results

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_processes(temp_dir: str) -> set[psutil.Process]:
    """Processes whose command line names our temp dir, and their children."""
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in p.info["cmdline"] or []):
                out.add(p)
                out.update(p.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def ray_start(args: list[str], temp_dir: str, env: dict) -> None:
    out = subprocess.run(
        [RAY, "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
         "--disable-usage-stats", f"--temp-dir={temp_dir}",
         f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def cluster():
    """{address, env, worker: the worker node's own processes, worker_node_id}."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    temp_dir = tempfile.mkdtemp(prefix="pgl-", dir="/tmp")  # short: unix socket path limit
    port = free_port()
    try:
        token = subprocess.run([RAY, "get-auth-token", "--generate"], env=env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert token.returncode == 0, token.stderr
        ray_start(["--head", f"--port={port}", "--include-dashboard=false"], temp_dir,
                  {**env, **FAST_HEALTH_CHECKS})  # fmt: skip
        head = node_processes(temp_dir)
        ray_start([f"--address=127.0.0.1:{port}"], temp_dir, env)
        worker = node_processes(temp_dir) - head
        raylets = [p for p in worker if p.name() == "raylet"]
        assert len(raylets) == 1, [p.name() for p in worker]
        (node_id,) = re.findall(r"--node_id=(\w+)", " ".join(raylets[0].cmdline()))
        yield {"address": f"127.0.0.1:{port}", "env": env, "worker": worker,
               "worker_node_id": node_id}  # fmt: skip
    finally:
        reap(list(node_processes(temp_dir)))
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_cpus(address: str, env: dict, cpus: str) -> None:
    deadline = time.monotonic() + 60  # the worker node registers asynchronously
    while time.monotonic() < deadline:
        status = subprocess.run([RAY, "status", f"--address={address}"], env=env,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        if f"/{cpus} CPU" in status.stdout:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster never showed {cpus} CPUs: {status.stdout}")


def test_lost_worker_node_trials_move_to_the_head_and_the_sweep_completes(cluster, tmp_path):
    wait_for_cpus(cluster["address"], cluster["env"], "2.0")
    exp = tmp_path / "exp"
    proc = start_sweep(
        "--preset", "digits-quick", "--methods", "none,randsmooth", "--strengths", "0.1,0.3,0.5",
        "--epochs", "4", "--set", "measure=false", "--address", cluster["address"],
        "--output", exp, cwd=tmp_path, env=cluster["env"],
    )  # fmt: skip
    worker_pids = lambda: {  # noqa: E731 - the worker node's processes, trial workers included
        c.pid for p in cluster["worker"] if p.is_running() for c in [p, *p.children(True)]
    }
    try:

        def running_on_worker():
            pids = worker_pids()
            for cid, rows in reports(exp).items():
                if rows[-1]["pid"] in pids and rows[-1]["status"] == "running":
                    return cid, rows
            return None

        victim, before = wait_until("a trial on the worker node", running_on_worker, proc, 180)
        lost = [p for p in cluster["worker"] if p.is_running()]
        lost += [c for p in lost for c in p.children(recursive=True)]
        for p in lost:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(lost, timeout=10)
        log = finish(proc, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log

    res = load_results(exp)
    t = res.trials.set_index("config_id")
    assert len(t) == 4 and t.index.is_unique
    assert set(t["status"]) == {"completed"} and (t["epochs_trained"] == 4).all(), t
    # The lost node's trial finished on the other node, after a checkpointed epoch.
    assert t.loc[victim, "node_id"] != cluster["worker_node_id"]
    history = reports(exp)[victim]
    moved = [r for r in history if r["pid"] != before[-1]["pid"]]
    # What the lost worker reported before it died: `before` is only what the test saw when
    # it picked the victim; the trial may have finished another epoch before the kill landed.
    lost_reports = [r for r in history if r["pid"] == before[-1]["pid"]]
    assert moved and moved[-1]["status"] == "completed"
    assert 2 <= moved[0]["epoch"] <= lost_reports[-1]["epoch"] + 1, [
        (r["pid"], r["epoch"]) for r in history
    ]
    curve = res.measures[res.measures["measure"] == "train_loss"]
    assert sorted(curve[curve["config_id"] == victim]["epoch"]) == [1, 2, 3, 4]
