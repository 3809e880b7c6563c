"""The measurement suite: everything a trial measures on one model, from the shared artifacts
(docs/method.md; paper sections 3 and 4.1-4.3).

A `MeasureContext` is built once per trial (`build_context`: the evaluation points, tangent
bases, step sizes, score maps, the perceptual metric); each measurement (`Measurer(model,
epoch)`) opens a `Probe` on the model (the noise generator, and the input gradients,
prediction and maps, computed once on first use) and runs the ordered list `MEASURES`. A
measure is a function `measure(ctx, probe) -> dict`: it adds its long-format rows with
`probe.row(...)` (one per measure, step size or noise level, gradient/reference/metric;
analysis/results/rows.py) and returns its summary scalars (trials.parquet columns). Each
family lives beside its math: sensitivity.py, rho.py, perceptual.py.

Adding a measure:
  1. write `measure_<name>(ctx, probe) -> dict` beside its math (draw noise only from
     `probe.gen`; return {} or NaN where the dataset lacks what it needs);
  2. append it to `MEASURES` below (at the end: the measures share `probe.gen`, so the order
     fixes every earlier measure's noise, and appending keeps their numbers bit for bit);
  3. add one `Column(...)` per summary key to analysis/results/columns.py (optional=True) and
     its measure name to `MEASURES` there.
Nothing else: the record, the tables, Tune's reported metrics and pags measure pick it up.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis.results.rows import measure_row
from trainables.config import TrialConfig
from trainables.data import DataBundle
from trainables.measure.artifacts import Artifacts, prepare_artifacts
from trainables.measure.bayes import exact_bayes_gradient
from trainables.measure.calibration import measure_calibration, trial_yardsticks
from trainables.measure.gradients import input_gradients, input_gradients_many
from trainables.measure.perceptual import (
    build_metric,
    measure_alignment,
    measure_gradient_share,
    measure_oracle_gradient,
    null_maps,
)
from trainables.measure.perceptual import metric_name as alignment_metric_name
from trainables.measure.protocol import Headline, headline_eps, headline_for
from trainables.measure.rho import measure_exact_rho, measure_rho
from trainables.measure.robust_measures import measure_robust
from trainables.measure.score import ScoreFn
from trainables.measure.score_source import trial_score
from trainables.measure.sensitivity import (
    NOISE_LEVELS,
    REFERENCE_NOISE_LEVEL,
    default_eps,
    measure_manifold,
    measure_mask_noise,
)
from trainables.measure.tangent_measures import measure_estimator_free, measure_tangent_estimates

__all__ = [
    "MEASURES", "NOISE_LEVELS", "REFERENCE_NOISE_LEVEL", "MeasureContext", "Measurer", "Probe",
    "build_context", "build_measurer", "step_sizes",
]  # fmt: skip
N_MAPS = 8  # gradient/score maps kept per trial for the gallery
GRADIENTS = ("logit_sum", "pred_logit", "log_prob")  # the input gradients every probe takes


def step_sizes(cfg_eps: tuple[float, ...], d: int) -> tuple[list[float], float]:
    """(all step sizes, the headline one): the user's steps or the four reference steps scaled
    to d, always including the headline 2.64 * sqrt(d / 3072) (added when missing)."""
    head = headline_eps(d)
    eps = sorted(cfg_eps) if cfg_eps else default_eps(d)
    match = [e for e in eps if math.isclose(e, head, rel_tol=1e-9)]
    if match:
        return eps, match[0]
    return sorted([*eps, head]), head


@dataclass
class MeasureContext:
    """What every measurement of one trial shares, built once (`build_context`)."""

    cfg: TrialConfig
    device: torch.device
    x: torch.Tensor  # evaluation points (B, C, H, W) on device
    y: torch.Tensor  # their labels
    mask: torch.Tensor | None  # signal mask, sets with a distractor
    q: torch.Tensor  # tangent bases (B, d, k) of the headline estimate
    eps: list[float]  # step sizes of the on/off sensitivity
    ref_eps: float  # the headline step size
    head: Headline  # the dataset's headline gradient/reference pair
    score: ScoreFn
    score_uncond: torch.Tensor
    score_label: torch.Tensor | None  # class-conditional score at the true label
    metric: Any  # perceptual metric (perceptual.build_metric)
    metric_name: str
    oracle: Any  # synthetic sets: exact tangents, scores and Bayes classifier; else None
    score_sigma: float
    quality: dict[str, float]  # the artifacts' quality figures (every summary carries them)
    tangents: dict[str, torch.Tensor]  # every tangent estimate by name (tangent_estimators.py)
    agreement: list[dict]  # every pair of estimates: subspace.AGREEMENT_KEYS (Artifacts)
    tangent_build_times: dict[str, float]  # seconds per estimate (Artifacts.build_times)
    # The artifact set's calibration rows and the yardstick they make the headline:
    # (gradient, reference, metric, why) by analysis.results.calibration.choose_headline.
    calibration: list[dict]
    yardstick: tuple[str, str, str, str]


class Probe:
    """One measurement of one model: its noise generator (seeded by trial seed and epoch, so a
    checkpoint measured later draws the same noise), the rows so far, and what several
    measures need, computed once on first use (`grads`, `pred`, `maps`)."""

    def __init__(self, ctx: MeasureContext, model: nn.Module, epoch: int):
        self.ctx, self.model, self.epoch = ctx, model, epoch
        self.gen = torch.Generator(device=ctx.device).manual_seed(ctx.cfg.seed + 1000 * epoch)
        self.rows: list[dict] = []

    def row(self, measure: str, values, **keys) -> dict:
        """Add the row of `measure` over per-point `values` (non-finite ones left out): mean,
        std (unbiased, as torch) and count; `keys`: eps, gradient, reference, metric."""
        v = torch.as_tensor(np.asarray(values, dtype=np.float64))
        v = v[torch.isfinite(v)]
        value = float(v.mean()) if len(v) else float("nan")
        std = float(v.std()) if len(v) > 1 else 0.0
        out = measure_row(measure, self.epoch, value, std, int(len(v)), **keys)
        self.rows.append(out)
        return out

    @functools.cached_property
    def grads(self) -> dict[str, torch.Tensor]:
        out = input_gradients_many(self.model, self.ctx.x, list(GRADIENTS))
        # grad log p(y|x) at the true label, beside the Bayes-gradient estimate there
        out["log_prob_label"] = input_gradients(self.model, self.ctx.x, "log_prob", self.ctx.y)
        return out

    @functools.cached_property
    def pred(self) -> torch.Tensor:
        self.grads  # noqa: B018 (the gradients first: the order the suite always had)
        with torch.no_grad():
            return self.model.eval()(self.ctx.x).argmax(1)

    @functools.cached_property
    def maps(self) -> dict[str, torch.Tensor]:
        """Every gradient and reference map by name (null maps draw from `gen`)."""
        ctx, pred = self.ctx, self.pred
        score_cond = ctx.score(ctx.x, pred) if ctx.score.conditional else ctx.score_uncond
        nulls = null_maps(ctx.x, self.gen)
        maps = {**self.grads, "null_noise": nulls["noise"], "null_input": nulls["input"],
                "score": score_cond, "score_uncond": ctx.score_uncond}  # fmt: skip
        if ctx.score_label is not None:
            maps["score_label"] = ctx.score_label
            # The Bayes-gradient estimate score(x|y) - score(x) (bayes.py), at the predicted
            # class and at the true label.
            maps["bayes_est"] = score_cond - ctx.score_uncond
            maps["bayes_est_label"] = ctx.score_label - ctx.score_uncond
        if ctx.oracle is not None:  # synthetic set: the exact class-conditional score
            exact = ctx.oracle.score(ctx.x.cpu(), ctx.score_sigma, pred.cpu())
            maps["exact_score"] = exact.to(ctx.x)
            bayes = exact_bayes_gradient(ctx.oracle, ctx.x.cpu(), pred.cpu())
            maps["bayes_exact"] = bayes.to(ctx.x)
        return maps


def measure_maps(ctx: MeasureContext, probe: Probe) -> dict:
    """A few inputs with their headline reference and gradient maps, for the gallery (the
    summary's "maps", which the record leaves out and the maps file keeps)."""
    return {
        "maps": {
            "inputs": ctx.x[:N_MAPS].cpu().numpy(),
            "score": probe.maps[ctx.head.reference][:N_MAPS].cpu().numpy(),
            "gradient": probe.grads[ctx.head.gradient][:N_MAPS].cpu().numpy(),
        }
    }


Measure = Callable[[MeasureContext, Probe], dict]
# The suite, in order (append new measures at the end; see the module docstring).
MEASURES: list[Measure] = [
    measure_manifold,  # sensitivity.py
    measure_mask_noise,  # sensitivity.py
    measure_alignment,  # perceptual.py
    measure_rho,  # rho.py
    measure_gradient_share,  # perceptual.py
    measure_oracle_gradient,  # perceptual.py
    measure_exact_rho,  # rho.py
    measure_maps,
    measure_robust,  # robust_measures.py (its own random stream)
    measure_calibration,  # calibration.py: the artifact set's calibration rows
    measure_tangent_estimates,  # tangent_measures.py: rho2, on/off under every estimate
    measure_estimator_free,  # tangent_measures.py: the exact split of rho2 (digits)
]


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=4)
def _metric(kind: str, device: str):
    return build_metric(kind, device)


def build_context(
    cfg: TrialConfig,
    bundle: DataBundle,
    device: torch.device,
    artifacts: Artifacts | None = None,
    cache_dir: str | None = None,
) -> MeasureContext:
    """The trial's context; prepares (or loads cached) artifacts if none are given."""
    # Progress goes to stderr: stdout may carry a result (`pags train --json`).
    art = artifacts or prepare_artifacts(
        cfg, cache_dir or cfg.artifacts_dir or None, bundle, log=_to_stderr
    )
    x = art.x.to(device)
    eps, ref_eps = step_sizes(cfg.eps, x[0].numel())
    score = trial_score(cfg, art, device)
    metric = _metric(cfg.alignment_metric, str(device))
    metric_name = alignment_metric_name(metric.name, *x.shape[-2:])
    # Which yardsticks measure alignment here, and so which one is the headline (issue 19).
    calibration, yardstick = trial_yardsticks(cfg, art, bundle, score, metric, metric_name,
                                              device)  # fmt: skip
    return MeasureContext(
        cfg=cfg,
        device=device,
        x=x,
        y=art.y.to(device),
        mask=art.signal_mask.to(device) if art.signal_mask is not None else None,
        q=art.tangent.to(device),
        eps=eps,
        ref_eps=ref_eps,
        head=headline_for(cfg.dataset),
        score=score,
        score_uncond=score(x),
        score_label=score(x, art.y.to(device)) if score.conditional else None,
        metric=metric,
        metric_name=metric_name,
        oracle=bundle.oracle,
        score_sigma=art.config.score_sigma,
        quality=dict(art.quality),
        tangents={name: q.to(device) for name, q in art.tangents.items()},
        agreement=list(art.agreement),
        tangent_build_times=dict(art.build_times),
        calibration=calibration,
        yardstick=yardstick,
    )


class Measurer:
    """`measurer(model, epoch) -> (summary, rows)`: every measure of `measures` in order."""

    def __init__(self, ctx: MeasureContext, measures: list[Measure] | None = None):
        self.ctx = ctx
        self.measures = MEASURES if measures is None else measures

    def __call__(self, model: nn.Module, epoch: int) -> tuple[dict, list[dict]]:
        probe = Probe(self.ctx, model, epoch)
        summary: dict = {"reference_eps": self.ctx.ref_eps, **self.ctx.quality}
        for measure in self.measures:
            summary.update(measure(self.ctx, probe))
        return summary, probe.rows


def build_measurer(
    cfg: TrialConfig,
    bundle: DataBundle,
    device: torch.device,
    artifacts: Artifacts | None = None,
    cache_dir: str | None = None,
) -> Measurer:
    """The trial's measurer: `build_context` once, then `Measurer(ctx)`."""
    return Measurer(build_context(cfg, bundle, device, artifacts, cache_dir))
