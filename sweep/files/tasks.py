"""Running `pags measure`'s measurements: in this process, or one Ray task per checkpoint with
a trial's resources; each result is saved the moment it arrives (maps first, then the record:
a record on disk means "measured"), and a progress line shows done/running/pending and ETA.

Each runner returns (failed, bad, interrupted): failed = a task that died for a reason not the
file's (exit 1), bad = a file that cannot be measured (one line each, exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import numpy as np

from analysis.results import layout
from analysis.results.atomic import atomic_write
from analysis.results.errors import one_line
from analysis.results.layout import record_file as record_path
from sweep import storage
from trainables.checkpoints import CheckpointError, file_sha256
from trainables.config import TrialConfig
from trainables.measure_checkpoint import ModelSpec


@dataclasses.dataclass
class Plan:
    spec: ModelSpec
    config_id: str
    checkpoint_sha256: str


def _save(out_dir: str, p: Plan, record: dict, maps: dict | None) -> None:
    """Maps first, record last: a record on disk means the measurement is complete."""
    if maps is not None:
        os.makedirs(layout.maps_dir(out_dir), exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in maps.items()}
        path = layout.maps_file(out_dir, p.config_id)
        atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    record = {**record, "config_id": p.config_id}
    record["checkpoint"] = {**record["checkpoint"], "checkpoint_sha256": p.checkpoint_sha256}
    storage.write_text_atomic(record_path(out_dir, p.config_id), json.dumps(record))


def measure_one(p: Plan, base_dict: dict, artifacts, device) -> tuple[str, object, object]:
    """("ok", record, maps) or ("bad", one line, None). Runs in a Ray task or in-process."""
    from trainables.measure_checkpoint import measure_checkpoint

    base = TrialConfig.from_dict(base_dict)
    try:
        if file_sha256(p.spec.path) != p.checkpoint_sha256:
            return "bad", f"{p.spec.path}: changed while being measured; rerun", None
        bundle_for = functools.partial(_dataset, base.dataset, data_root=base.data_root)
        record, maps = measure_checkpoint(p.spec, base, bundle_for, artifacts, device)
    except (CheckpointError, OSError) as err:
        return (
            "bad",
            str(err) if isinstance(err, CheckpointError) else f"{p.spec.path}: {err}",
            None,
        )
    return "ok", record, maps


def _failed(p, err: BaseException, progress, log) -> int:
    """Count one measurement that failed for a reason other than its file: log it, return 1."""
    progress.done += 1
    log(f"[pags] failed: {p.spec.name} ({p.spec.path}): {one_line(err, last=True)}")
    return 1


@functools.lru_cache(maxsize=2)
def _dataset(name: str, seed: int, data_root: str):
    from trainables.data import load_dataset

    return load_dataset(name, seed, data_root)


def run_local(todo, base, out_dir, log, device="", **_) -> tuple[int, int, bool]:

    from trainables.measure.artifacts import prepare_artifacts

    if not todo:
        return 0, 0, False
    from trainables.runtime import choose_device

    dev = choose_device(device)
    art = prepare_artifacts(
        base, base.artifacts_dir, _dataset(base.dataset, 0, base.data_root), log
    )
    progress = _Progress(len(todo), log)
    bad = failed = 0
    try:
        for p in todo:
            progress.running = 1
            try:
                kind, a, b = measure_one(p, base.to_dict(), art, dev)
            except Exception as err:  # not the file's fault: count it, go on, exit 1
                failed += _failed(p, err, progress, log)
                continue
            bad += _finish(kind, a, b, p, out_dir, log, progress)
    except KeyboardInterrupt:
        return failed, bad, True
    return failed, bad, False


def _finish(kind, a, b, p: Plan, out_dir: str, log, progress) -> int:
    """Save a result or log a bad file; returns 1 for a bad file."""
    progress.done += 1
    progress.running = max(0, progress.running - 1)
    if kind == "ok":
        _save(out_dir, p, a, b)
        progress.best(a["summary"].get("alignment"), p.spec)
        progress.show(force=True)
        return 0
    log(f"[pags] bad checkpoint {p.spec.name}: {a}")
    progress.show(force=True)
    return 1


def _task(p: Plan, base_dict: dict, artifacts) -> tuple[str, object, object]:
    import ray

    from trainables.runtime import choose_device, use_cpus

    use_cpus(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    device = choose_device(gpus_assigned=bool(ray.get_gpu_ids()))
    return measure_one(p, base_dict, artifacts, device)


def run_ray(todo, base, out_dir, log, address=None, num_cpus=None, cpus=1.0, gpus=None, **_):
    import ray

    from sweep.tune import cluster
    from sweep.tune.artifacts import prepare_shared
    from trainables.measure.artifacts import artifacts_key

    if not todo:
        return 0, 0, False
    if address:
        cluster.check_address(address)
    started = cluster.connect(address, num_cpus)
    try:
        if gpus is None:  # a GPU per task when the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        cluster.check_resources(cpus, gpus, autoscaling=bool(address))
        refs = prepare_shared([base], base.artifacts_dir, cpus, gpus, log)
        art = refs[artifacts_key(base)]
        task = ray.remote(_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=2)
        running = {task.remote(p, base.to_dict(), art): p for p in todo}
        progress = _Progress(len(todo), log)
        failed = bad = 0
        try:
            while running:
                progress.running = len(running)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=progress.every_s)
                if not ready:
                    progress.show()
                    continue
                p = running.pop(ready[0])
                try:
                    kind, a, b = ray.get(ready[0])
                except ray.exceptions.RayError as err:
                    failed += _failed(p, err, progress, log)
                    continue
                bad += _finish(kind, a, b, p, out_dir, log, progress)
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref, force=True)
            return failed, bad, True
        return failed, bad, False
    finally:
        if started:
            ray.shutdown()


class _Progress:
    """The sweep's progress line (sweep/tune/progress.py) over checkpoints instead of trials."""

    every_s = 30.0

    def __init__(self, total: int, log):
        self.total, self.log, self.done, self.running = total, log, 0, 0
        self.start, self.last = time.monotonic(), 0.0
        self._best: tuple | None = None

    def best(self, value, spec: ModelSpec) -> None:
        if isinstance(value, float) and np.isfinite(value):
            if self._best is None or value > self._best[1]:
                self._best = ("alignment", value, spec.label, spec.strength)

    def show(self, force: bool = False) -> None:
        from sweep.tune.progress_text import progress_line

        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last, elapsed = now, now - self.start
        pending = self.total - self.done - self.running
        counts = dict(done=self.done, running=self.running, pending=max(0, pending),
                      total=self.total)  # fmt: skip
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.log(progress_line(elapsed, counts, self._best, eta, "measure"))
