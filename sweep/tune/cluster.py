"""Connecting the driver to Ray: a local instance, or a running cluster via `--address`.

Problems a user can fix (unreachable address, per-trial resources no node can ever give) are
raised as ValueError with one line, before any trial starts.
"""

from __future__ import annotations

import logging
import os
import socket

import ray

from analysis.results.errors import InputError, one_line


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A TCP connect to `host:port` first: ray.init would retry for a minute before failing."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(
            f"--address {address!r} is invalid; allowed: HOST:PORT, ray://HOST:PORT or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise InputError(
            f"cannot reach a Ray cluster at {address}: {err.strerror or err}"
        ) from None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Start or join Ray; True if this call started a local instance (to shut it down later).

    Worker output is not forwarded: the sweep prints its own progress line, and a failed trial's
    error is reported from its result."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here; nothing to send
    common = dict(log_to_driver=False, logging_level=logging.WARNING)
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, **common)
        except Exception as err:  # ConnectionError, auth errors, version mismatch, ...
            raise InputError(f"cannot join the Ray cluster at {address}: {one_line(err)}") from None
        return False
    # address="local": a fresh instance even if `ray start` left a cluster on this machine.
    ray.init(
        address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **common
    )
    return True


def check_resources(cpus: float, gpus: float, autoscaling: bool) -> None:
    """Refuse per-trial resources that no alive node has (Tune would wait forever), unless an
    autoscaler may add such a node later."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    text = (
        f"a trial needs {cpus:g} CPU and {gpus:g} GPU but the largest node has "
        f"{largest.get('CPU', 0):g} CPU and {largest.get('GPU', 0):g} GPU"
    )
    if not autoscaling:
        raise InputError(f"{text}; allowed: --cpus-per-trial/--gpus-per-trial within a node")
    print(f"[pags] waiting for the autoscaler: {text}", flush=True)
