"""Measure one model from a checkpoint file exactly as a trial measures its final model.

Same data, same shared artifacts, same `build_measurer`, same measurement seed: the measurer
seeds its noise from (seed, epoch), so a pags checkpoint is measured with its trial's seed at
its last epoch and reproduces the trial's final measurement bit for bit; other formats take
seed and epoch from the user (default 0) or, for the robustness library, the file's epoch.
No Ray in here: `sweep/files/run.py` runs this as one Ray task per checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from analysis.results.record import TrialRecord
from trainables import checkpoints
from trainables.config import TrialConfig
from trainables.data import DataBundle
from trainables.loop import accuracy
from trainables.measure.artifacts import Artifacts
from trainables.measure.evaluate import build_measurer
from trainables.runtime import denormals_flushed

# The TrialConfig fields that change a measurement (besides dataset and seed); the only ones
# `pags measure --set` accepts.
MEASURE_FIELDS = (
    "eval_points", "noise_draws", "eps", "latent_dim", "score_sigma", "alignment_metric",
    "ae_max_epochs", "denoiser_max_epochs",
    "robustness", "attack", "attack_radius", "smoothing_sigma", "certify_n0", "certify_n",
    "certify_alpha", "score",
)  # fmt: skip
DEFAULT_LABEL = "pretrained"


@dataclass(frozen=True)
class ModelSpec:
    """One checkpoint to measure: a `--checkpoint` or a manifest row.

    `label` becomes the tables' `method`, `strength` their strength (e.g. the epsilon a robust
    model was trained at). `seed`/`epoch` None: from the checkpoint where it says, else 0."""

    name: str
    path: str
    arch: str = ""
    format: str = "pags"
    label: str = DEFAULT_LABEL
    strength: float = 0.0
    activation: str = "softplus"
    seed: int | None = None
    epoch: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def measure_checkpoint(
    spec: ModelSpec,
    base: TrialConfig,
    bundle_for: Callable[[int], DataBundle],
    artifacts: Artifacts,
    device: torch.device,
) -> tuple[dict, dict | None]:
    """(record, maps). `base` carries the dataset and measurement settings; its seed is
    replaced by the checkpoint's, and `bundle_for(seed)` gives the data at that seed (as the
    trial's: on the distractor sets the test images depend on it). Raises
    `checkpoints.CheckpointError` for a bad file."""
    start = time.perf_counter()
    shape, num_classes = bundle_for(0).shape, bundle_for(0).num_classes
    loaded = checkpoints.load(
        spec.path, spec.format, spec.arch, shape, num_classes, spec.activation
    )
    seed = _first(spec.seed, loaded.seed, 0)
    epoch = _first(spec.epoch, loaded.epoch, 0)
    cfg = base.replace(seed=seed)
    if spec.label == "randsmooth" and spec.strength > 0 and not cfg.smoothing_sigma:
        # a randomized-smoothing model is certified at the sigma it was trained with
        cfg = cfg.replace(smoothing_sigma=spec.strength)
    bundle = bundle_for(seed)
    model = loaded.model.to(device)
    with denormals_flushed():  # as run_trial measures, so that the numbers match
        test_accuracy = accuracy(model, bundle.test, device)
        summary, rows = build_measurer(cfg, bundle, device, artifacts)(model, epoch)
    maps = summary.pop("maps", None)
    measured = {"epoch": epoch, "test_accuracy": test_accuracy, "measures": summary,
                "measure_rows": rows, "epoch_time_s": time.perf_counter() - start}  # fmt: skip
    record = TrialRecord.from_history(
        {k: v for k, v in cfg.to_dict().items() if k in (*MEASURE_FIELDS, "dataset", "seed")},
        "",  # the config_id: sweep/files/run.py's plan names it (file hash and settings)
        [measured],
        "completed",
        n_test=len(bundle.test),
        num_classes=bundle.num_classes,
        versions={"torch": torch.__version__},
        checkpoint={
            "spec": spec.to_dict(),
            "arch": loaded.arch,
            "input_normalization": loaded.normalization,
            "input_size": "x".join(map(str, bundle.shape)),
            "weights_sha256": checkpoints.weights_sha256(loaded.model),
        },
    )
    # The model was trained `epoch` epochs elsewhere: the record's epochs are the file's.
    record.epochs_trained = epoch
    return record.to_dict(), maps


def _first(*values):
    return next(v for v in values if v is not None)
