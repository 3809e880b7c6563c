"""`pags measure` end to end: measure checkpoint files as trials measure their models.

In the order that keeps bad input cheap and finished work safe:

1. every checkpoint file is hashed in the driver: a missing or unreadable one is one line
   naming it, counted, and the others go on;
2. identity: `config_id` hashes the file's SHA-256, how it is read (format, arch, ...), its
   label and strength and the measurement settings; a record already in the output directory
   means "measured": it is not rerun (so a killed driver resumes by running the command again);
3. the shared artifacts are prepared once, as for a sweep (`sweep.artifacts.prepare_shared`);
4. one Ray task per checkpoint, with a trial's resources (a GPU when the cluster has one); each
   task loads the file (a bad one: one line, counted) and measures it; its record and maps are
   written as soon as it returns; a progress line shows done/running/pending and ETA;
5. the tables are rebuilt from all records (`sweep.measure_tables`).

`local=True` runs step 4 in this process instead of Ray (same function, one at a time).
Exit code: 0; 2 when checkpoints were bad (after measuring the rest); 1 when a task failed
otherwise; 130 when interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from sweep import storage
from sweep.export import MAPS_DIR
from sweep.measure_tables import read_records, record_path, write_tables
from trainables.checkpoints import CheckpointError, file_sha256
from trainables.config import TrialConfig
from trainables.measure_checkpoint import MEASURE_FIELDS, ModelSpec

SETTINGS_FILE = "measure_config.json"


@dataclasses.dataclass
class Plan:
    spec: ModelSpec
    config_id: str
    checkpoint_sha256: str


def config_id(spec: ModelSpec, checkpoint_sha: str, base: TrialConfig) -> str:
    """What is measured, not where it lies or what it is called: name and path are left out."""
    what = {k: v for k, v in spec.to_dict().items() if k not in ("name", "path")}
    settings = {k: getattr(base, k) for k in ("dataset", *MEASURE_FIELDS)}
    blob = json.dumps(
        {"checkpoint_sha256": checkpoint_sha, **what, "measure": settings},
        sort_keys=True,
        default=list,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(specs: list[ModelSpec], base: TrialConfig, log) -> tuple[list[Plan], int]:
    """(one Plan per distinct measurement, number of bad files); bad files are logged."""
    plans, seen, bad = [], {}, 0
    for spec in specs:
        try:
            sha = file_sha256(spec.path)
        except FileNotFoundError:
            log(f"[pags] bad checkpoint {spec.name}: {spec.path}: file not found")
            bad += 1
            continue
        except OSError as err:
            why = err.strerror or err
            log(f"[pags] bad checkpoint {spec.name}: {spec.path}: cannot read it ({why})")
            bad += 1
            continue
        cid = config_id(spec, sha, base)
        if cid in seen:
            log(f"[pags] {spec.name}: the same measurement as {seen[cid]}; measured once")
            continue
        seen[cid] = spec.name
        plans.append(Plan(spec, cid, sha))
    return plans, bad


def run_measure(
    specs: list[ModelSpec],
    base: TrialConfig,
    out_dir: str,
    *,
    local: bool = False,
    device: str = "",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus: float = 1.0,
    gpus: float | None = None,
    log: Callable[[str], None] = print,
    invalid: int = 0,
) -> int:
    """Measure `specs` into `out_dir`; returns the exit code. `invalid`: specs already
    refused by the caller (bad manifest rows), counted into exit code 2."""
    from sweep import experiment
    from sweep.artifacts import default_cache_dir

    storage.check_writable(out_dir)
    base = base.replace(artifacts_dir=base.artifacts_dir or default_cache_dir())
    with experiment.locked(out_dir):
        _claim(out_dir, base)
        plans, bad = plan(specs, base, log)
        bad += invalid
        done = read_records(out_dir)
        todo = [p for p in plans if p.config_id not in done]
        if len(todo) < len(plans):
            log(f"[pags] {len(plans) - len(todo)} already measured in {out_dir}: kept, not rerun")
        run = _run_local if local else _run_ray
        try:
            with _sigterm_interrupts():
                failed, bad_now, interrupted = run(todo, base, out_dir, log, device=device,
                                                   address=address, num_cpus=num_cpus,
                                                   cpus=cpus, gpus=gpus)  # fmt: skip
        except KeyboardInterrupt:  # before any measurement ran (preparing artifacts, Ray)
            failed, bad_now, interrupted = 0, 0, True
        bad += bad_now
        from sweep.driver import driver_versions

        name = os.path.basename(out_dir.rstrip("/"))
        trials, _ = write_tables(out_dir, name, driver_versions())
        log(f"[pags] {len(trials)} models in the tables")
    log(f"results: {out_dir}")
    if interrupted:
        log("[pags] interrupted; rerun the same command to measure the rest")
        return 130
    if bad:
        log(f"[pags] {bad} checkpoint(s) could not be measured (see the lines above)")
        return 2
    if failed:
        log(f"[pags] {failed} measurement(s) failed (see the lines above)")
        return 1
    log(f"next: pags analyze {out_dir}")
    return 0


def _claim(out_dir: str, base: TrialConfig) -> None:
    """One dataset and one set of measurement settings per directory, as one sweep per
    directory: the tables of a directory must be comparable. ValueError names the field."""
    path = os.path.join(out_dir, SETTINGS_FILE)
    settings = {k: base.to_dict()[k] for k in ("dataset", *MEASURE_FIELDS)}
    settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
    old = storage.read_text(path)
    if old is not None:
        for key, value in json.loads(old).items():
            if settings.get(key) != value:
                raise ValueError(
                    f"{out_dir} holds measurements with {key}={value!r}, not "
                    f"{settings.get(key)!r}; allowed: the same settings, or another --output"
                )
        return
    storage.write_text_atomic(path, json.dumps(settings, indent=1))


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a batch scheduler's preemption, `kill`) stops like Ctrl-C: the finished
    measurements' tables are written and a rerun measures the rest. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _save(out_dir: str, p: Plan, record: dict, maps: dict | None) -> None:
    """Maps first, record last: a record on disk means the measurement is complete."""
    if maps is not None:
        tmp = os.path.join(out_dir, MAPS_DIR, f".{p.config_id}.tmp.npz")
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in maps.items()})
        os.replace(tmp, os.path.join(out_dir, MAPS_DIR, f"{p.config_id}.npz"))
    record = {**record, "config_id": p.config_id, "checkpoint_sha256": p.checkpoint_sha256}
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


@functools.lru_cache(maxsize=2)
def _dataset(name: str, seed: int, data_root: str):
    from trainables.data import load_dataset

    return load_dataset(name, seed, data_root)


def _run_local(todo, base, out_dir, log, device="", **_) -> tuple[int, int, bool]:
    import torch

    from trainables.measure.artifacts import prepare_artifacts

    if not todo:
        return 0, 0, False
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
                failed += 1
                progress.done += 1
                log(f"[pags] failed: {p.spec.name} ({p.spec.path}): {_last_line(err)}")
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
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    # Ray sets CUDA_VISIBLE_DEVICES to the task's GPUs, so the first visible one is ours.
    cuda = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    return measure_one(p, base_dict, artifacts, torch.device("cuda" if cuda else "cpu"))


def _run_ray(todo, base, out_dir, log, address=None, num_cpus=None, cpus=1.0, gpus=None, **_):
    import ray

    from sweep import cluster
    from sweep.artifacts import prepare_shared
    from trainables.tune_trainable import artifacts_key

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
                    failed += 1
                    progress.done += 1
                    log(f"[pags] failed: {p.spec.name} ({p.spec.path}): {_last_line(err)}")
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
    """The sweep's progress line (sweep/progress.py) over checkpoints instead of trials."""

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
        from sweep.progress import progress_line

        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last, elapsed = now, now - self.start
        pending = self.total - self.done - self.running
        counts = dict(done=self.done, running=self.running, pending=max(0, pending),
                      total=self.total)  # fmt: skip
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.log(progress_line(elapsed, counts, self._best, eta, "measure"))


def _last_line(err: BaseException) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else type(err).__name__
