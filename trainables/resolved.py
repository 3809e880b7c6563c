"""What a trial's "dataset default" settings resolve to, before anything runs.

A config keeps `0`, `()` and `"auto"` for "the dataset's documented default" (so one preset
serves every dataset); the values a trial will actually use are decided in several places
(the artifacts, the headline protocol, the metric). `resolved_settings` asks each of them,
without loading the data or training anything, so `--dry-run` can print them.
"""

from __future__ import annotations

import math
from typing import Any

from trainables.config import TrialConfig


def input_shape(cfg: TrialConfig) -> tuple[int, int, int]:
    """(C, H, W) of the dataset's images: declared for the file-backed sets (their files need
    not exist here), else read off the embedded set itself (generated in seconds)."""
    from trainables.data import load_dataset
    from trainables.data.external import SHAPES

    if cfg.dataset in SHAPES:
        return SHAPES[cfg.dataset]
    return tuple(load_dataset(cfg.dataset, 0, cfg.data_root).shape)


def resolved_settings(cfg: TrialConfig, shape: tuple[int, int, int] | None = None) -> dict:
    """The measurement and training settings `cfg` resolves to (JSON-ready)."""
    from trainables.measure.artifacts import ArtifactConfig
    from trainables.measure.evaluate import step_sizes
    from trainables.measure.perceptual import METRIC_NAMES, metric_name, resolve_metric_kind
    from trainables.measure.protocol import headline_for
    from trainables.precision import uses_mixed_precision

    shape = shape or input_shape(cfg)
    artifacts = ArtifactConfig.for_trial(cfg)
    head = headline_for(cfg.dataset)
    eps, head_eps = step_sizes(cfg.eps, math.prod(shape))
    kind = resolve_metric_kind(cfg.alignment_metric)
    out: dict[str, Any] = {
        "input_shape": list(shape),
        "eval_points": cfg.eval_points,
        "noise_draws": cfg.noise_draws,
        "eps": [round(e, 6) for e in eps],
        "headline_eps": round(head_eps, 6),
        "latent_dim": artifacts.latent_dim,
        "score_sigma": artifacts.score_sigma,
        # The paper's pair and the perceptual metric: the row's `alignment` if it passes
        # calibration, else the fallback of the headline rule (analysis/results/calibration.py).
        "alignment_metric": metric_name(METRIC_NAMES[kind], *shape[-2:]),
        "alignment_gradient": head.gradient,
        "alignment_reference": head.reference,
        "ae_max_epochs": artifacts.ae_max_epochs,
        "denoiser_max_epochs": artifacts.denoiser_max_epochs,
        "augment": cfg.augment,
        "mixed_precision_on_cuda": uses_mixed_precision(cfg.mixed_precision, "cuda"),
    }
    return out
