"""The Ray Tune trainable: `run_trial` plus Tune's checkpoints and per-epoch reports.

The only trial-side module that imports `ray.tune`, shaped as the Ray Tune docs show: restore
from `tune.get_checkpoint()` first, then run the plain loop, which ends every epoch with
`tune.report(metrics, checkpoint=...)`. A checkpoint directory holds

    state.pt      everything `run_trial` needs to resume exactly (model, optimizer, RNGs, history)
    record.json   the trial's TrialRecord so far (analysis/results/record.py)
    maps.npz      the latest gradient/score maps (inputs, score, gradient), if measured

so the driver builds the results tables from the final checkpoint alone, on any storage.
A diverged trial ends normally with status "diverged"; only infrastructure failures raise (and
Tune retries them from the last checkpoint).
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import tempfile
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from analysis.results.columns import TRIALS_COLUMNS
from analysis.results.layout import MAPS_FILE, RECORD_FILE, STATE_FILE
from analysis.results.methods import scaled_lr
from analysis.results.record import HISTORY_KEYS, TrialRecord, package_versions
from analysis.results.record import latest_maps as record_maps
from trainables.config import TrialConfig
from trainables.data import load_dataset
from trainables.loop import load_checkpoint, run_trial, save_checkpoint, train_subset
from trainables.recipes import derive_trial_dict
from trainables.runtime import choose_device, use_cpus

# Summary numbers every report carries (NaN until measured), so that a searcher or scheduler
# keyed on one of them finds it in every result (Tune checks this strictly): every measured
# float column of the trials table (a new measure's column is included by itself).
SUMMARY_FLOATS = tuple(
    c.name
    for c in TRIALS_COLUMNS
    if c.dtype == "float64" and c.name not in ("strength", "wall_time_s", *HISTORY_KEYS)
)


def searched_strength(log10_strength: float) -> float:
    """The strength a search's suggestion stands for: 4 significant digits (readable, a stable
    config id)."""
    return float(f"{10**log10_strength:.4g}")


def trial_config(config: dict) -> TrialConfig:
    """The TrialConfig of a Tune config: `{"trial": dict}` (grid), or for a search over
    log-strength `{"derive": {...}, "where": {...}, "log10_strength": x, "seed": s}`, derived
    by `derive_trial_dict` like every other trial (sweep/plan/config.py `search_space`)."""
    if "derive" in config:
        strength = searched_strength(config["log10_strength"])
        d = derive_trial_dict(**config["derive"], strength=strength, seed=config["seed"])
        return TrialConfig.from_dict({**d, **config.get("where", {})})
    d = dict(config["trial"])
    if "seed" in config:
        d["seed"] = config["seed"]
    if "log10_strength" in config:
        # Searches started before `derive` existed: {"trial": dict, "lr_rule": None |
        # [threshold, scale, base_lr]}; kept so that they resume.
        d["strength"] = searched_strength(config["log10_strength"])
        if config.get("lr_rule"):
            threshold, scale, base_lr = config["lr_rule"]
            d["lr"] = scaled_lr(base_lr, d["strength"], (threshold, scale))
    return TrialConfig.from_dict(d)


def train(config: dict, artifacts: dict | None = None) -> None:
    """One Tune trial. `artifacts`: {artifacts_key: Artifacts or ObjectRef} from the driver
    (through `tune.with_parameters`), needed when the trial measures."""
    cfg = trial_config(config)
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    use_cpus(cpus)
    device = choose_device(gpus_assigned=bool(ray.get_gpu_ids()))
    bundle = _dataset(cfg.dataset, cfg.seed, cfg.data_root)
    measurer = _measurer(cfg, bundle, device, artifacts) if cfg.measure else None

    state, record = None, None
    start = tune.get_checkpoint()
    if start is not None:
        with start.as_directory() as d:
            state = load_checkpoint(os.path.join(d, STATE_FILE))
            with open(os.path.join(d, RECORD_FILE)) as f:
                record = json.load(f)
    info = {
        "pid": os.getpid(),  # the reliability tests SIGKILL this process
        "node": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "n_train": len(train_subset(bundle, cfg)),
        "n_test": len(bundle.test),
        "num_classes": bundle.num_classes,
        "versions": package_versions(),
    }
    reported = False

    def on_epoch(metrics: dict, make_checkpoint) -> None:
        nonlocal reported, record
        snapshot = make_checkpoint()
        if metrics.get("status") == "diverged":
            status = "diverged"
        else:
            status = "completed" if metrics["epoch"] >= cfg.epochs else "running"
        record = build_record(cfg, snapshot["history"], status, info)
        with tempfile.TemporaryDirectory(prefix="pags-checkpoint-") as d:
            save_checkpoint(snapshot, os.path.join(d, STATE_FILE))
            _write_json(record, os.path.join(d, RECORD_FILE))
            maps = latest_maps(snapshot["history"])
            if maps is not None:
                np.savez_compressed(os.path.join(d, MAPS_FILE), **maps)
            # report() persists the checkpoint to storage before returning, so the temporary
            # directory may go right after.
            tune.report(flat_metrics(record, info), checkpoint=tune.Checkpoint.from_directory(d))
        reported = True

    # Epoch lines go to the trial's own log (`stdout` in its trial directory: launch.py).
    run_trial(cfg, device=device, bundle=bundle, checkpoint=state, on_epoch=on_epoch,
              measurer=measurer, log=lambda line: print(line, flush=True))  # fmt: skip
    if not reported and record is not None:
        # Restored from the final checkpoint (the driver died after the last report): report
        # once more so the trial's last result is its final one.
        tune.report(flat_metrics(record, info))


def build_record(cfg: TrialConfig, history: list[dict], status: str, info: dict) -> dict:
    """The trial's result so far, JSON-ready (analysis/results/record.py): what
    `sweep.export` turns into table rows."""
    return TrialRecord.from_history(cfg.to_dict(), cfg.config_id, history, status, **info).to_dict()


def flat_metrics(record: dict, info: dict) -> dict[str, Any]:
    """One Tune result: scalars only, the same keys every epoch."""
    cfg, last = record["config"], (record["history"] or [{}])[-1]
    out: dict[str, Any] = {k: last.get(k, math.nan) for k in HISTORY_KEYS}
    out.update(
        status=record["status"],
        wall_time_s=record["wall_time_s"],
        pid=info["pid"],
        node=info["node"],
        config_id=record["config_id"],
        method=cfg["method"],
        strength=cfg["strength"],
        seed=cfg["seed"],
    )
    out.update({k: math.nan for k in SUMMARY_FLOATS})
    out.update({k: v for k, v in record["summary"].items() if k not in out or k in SUMMARY_FLOATS})
    return out


def latest_maps(history: list[dict]) -> dict[str, np.ndarray] | None:
    maps = record_maps(history)
    return None if maps is None else {k: np.asarray(v) for k, v in maps.items()}


@functools.lru_cache(maxsize=2)
def _dataset(name: str, seed: int, data_root: str):
    """Reused actors run many trials: keep the last data sets instead of reloading them."""
    return load_dataset(name, seed, data_root)


def _measurer(cfg: TrialConfig, bundle, device: torch.device, artifacts: dict | None):
    from trainables.measure.artifacts import artifacts_key
    from trainables.measure.evaluate import build_measurer

    key = artifacts_key(cfg)
    if not artifacts or key not in artifacts:
        raise RuntimeError(
            f"trial {cfg.config_id} has no shared artifacts (key {key}); the sweep driver "
            "prepares them before any trial, trials never rebuild them"
        )
    art = artifacts[key]
    if isinstance(art, ray.ObjectRef):
        art = ray.get(art)
    return build_measurer(cfg, bundle, device, art)


def _write_json(obj: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic, torch.Tensor)):
        return obj.item() if getattr(obj, "ndim", 0) == 0 else obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
