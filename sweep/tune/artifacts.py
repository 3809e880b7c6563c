"""Shared artifacts, prepared once per artifact set before any trial and handed to every trial.

The autoencoder, tangent bases, denoiser and evaluation subset (trainables/measure/artifacts.py)
are identical for every trial of a dataset, so the driver prepares each distinct set once, as a
Ray task (on a GPU worker when trials get GPUs; the data may live only on the workers), cached
on disk by the hash of its config. The task's result stays in Ray's object store; trials get the
object references through `tune.with_parameters` and fetch them from any node.

A sweep without measurements still runs one task per dataset that loads the data, so that
missing files are reported before any trial starts.
"""

from __future__ import annotations

import ray
from ray.util.queue import Queue

from analysis.results.errors import InputError, one_line
from trainables.config import TrialConfig
from trainables.data import DataUnavailableError
from trainables.measure.artifacts import artifacts_key


def _prepare(cfg_dict: dict, cache_dir: str, messages: Queue):
    """Ray task: the artifact set of `cfg` (loaded from the cache or built), or None when the
    trial does not measure (then only the data is loaded, as a check). What preparing it says
    (stage, epoch, time left; a corrupt cache set rebuilt) goes into `messages` as it happens,
    for the driver to print: worker output does not reach the driver (cluster.connect)."""
    from trainables.data import load_dataset
    from trainables.runtime import use_cpus

    use_cpus(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    cfg = TrialConfig.from_dict(cfg_dict)
    if not cfg.measure:
        load_dataset(cfg.dataset, cfg.seed, cfg.data_root)
        return None
    from trainables.measure.artifacts import prepare_artifacts

    return prepare_artifacts(cfg, cache_dir, log=messages.put)


def artifact_groups(trials: list[TrialConfig]) -> dict[str, TrialConfig]:
    """One representative trial per artifact set (per dataset for unmeasured trials)."""
    groups: dict[str, TrialConfig] = {}
    for cfg in trials:
        key = artifacts_key(cfg) if cfg.measure else f"data:{cfg.dataset}"
        groups.setdefault(key, cfg)
    return groups


def prepare_shared(
    trials: list[TrialConfig], cache_dir: str, cpus: float, gpus: float, log=print
) -> dict[str, ray.ObjectRef]:
    """{artifacts_key: ObjectRef} for every measured trial's artifact set, all ready.

    Raises ValueError (one line) for missing data, RuntimeError for other failures."""
    groups = artifact_groups(trials)
    task = ray.remote(_prepare)
    # A trial's resources: on small sets one thread beats two (small ops, threads that wait on
    # each other), and on a cluster the task lands on a node that can run a trial.
    options = dict(num_cpus=cpus, num_gpus=1 if gpus > 0 else 0, max_retries=1)
    messages = Queue(actor_options={"num_cpus": 0})  # the tasks' progress, printed live
    refs = {}
    for key, cfg in groups.items():
        what = f"artifacts for {cfg.dataset} ({key})" if cfg.measure else f"data of {cfg.dataset}"
        log(f"[pags] preparing {what} ...")
        refs[key] = task.options(**options).remote(cfg.to_dict(), cache_dir, messages)
    pending = list(refs.values())
    while True:
        for message in messages.get_nowait_batch(messages.qsize()):
            log(f"[pags] {message}")
        if not pending:
            break
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
    messages.shutdown()
    for key, ref in refs.items():
        try:
            ray.get(ref)  # surface a failure before any trial starts
        except ray.exceptions.RayTaskError as err:
            cause: BaseException | None = getattr(err, "cause", None)
            if isinstance(cause, DataUnavailableError):
                raise InputError(str(cause)) from None
            raise RuntimeError(f"preparing {key} failed: {one_line(err, last=True)}") from None
    return {k: r for k, r in refs.items() if groups[k].measure}
