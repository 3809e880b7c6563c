"""The robustness part of a trial's measurement: robust accuracy under an L2 attack at the
standard radius (robustness.py) and, for a smoothed classifier, Cohen et al.'s certificate
(certify.py). `measure_robust` is the suite's measure (last in evaluate.MEASURES), with its
own random stream, so the other measures' numbers do not change with it.

Summary keys (trials.parquet, analysis/results/columns.py): eval_accuracy, robust_accuracy,
robust_attack, robust_radius; with a sigma also certify_sigma, smoothed_accuracy,
predict_abstain_rate, certify_abstain_rate, certified_accuracy (at robust_radius),
certified_radius_mean. Rows (measures.parquet): robust_accuracy (eps = radius, metric =
attack), certified_accuracy at every radius of the ladder (eps = radius), smoothed_accuracy,
predict_abstain, certify_abstain (eps = sigma).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.measure import certify, robustness

SEED_OFFSET = 7_919  # the robustness measures' random stream, apart from the other measures'
SUMMARY_KEYS = (
    "eval_accuracy", "robust_accuracy", "robust_attack", "robust_radius", "certify_sigma",
    "smoothed_accuracy", "predict_abstain_rate", "certify_abstain_rate", "certified_accuracy",
    "certified_radius_mean",
)  # fmt: skip


def smoothing_sigma(cfg: TrialConfig) -> float | None:
    """The sigma to certify at: `smoothing_sigma` if set, else a randsmooth trial's own sigma (its
    strength), else None (no certificate)."""
    if cfg.smoothing_sigma > 0:
        return cfg.smoothing_sigma
    if cfg.method == "randsmooth" and cfg.strength > 0:
        return cfg.strength
    return None


def measure_robustness(
    cfg: TrialConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int,
    row: Callable[..., dict],
) -> tuple[dict, list[dict]]:  # fmt: skip
    """(summary, rows) at the evaluation points x `(N, C, H, W)`, y `(N,)`; `row(measure,
    per_point_values, **keys)` builds one measures.parquet row (keys: eps, metric)."""
    d = x[0].numel()
    radius = cfg.attack_radius or robustness.standard_radius(d)
    summary: dict = {k: math.nan for k in SUMMARY_KEYS}
    summary.update(robust_attack="", robust_radius=radius)
    rows: list[dict] = []
    if not cfg.robustness:
        return summary, rows
    model.eval()
    with torch.no_grad():
        logits = model(x)
    num_classes = logits.shape[1]
    clean = (logits.argmax(1) == y).double().cpu()
    rows.append(row("eval_accuracy", clean))
    summary["eval_accuracy"] = float(clean.mean())
    # The attack keeps images in [0, 1] (pyautoattack clips there); a set outside it (the linear
    # synthetic set) would be moved by the clipping itself, so it gets no robust accuracy.
    in_box = bool(x.min() >= 0) and bool(x.max() <= 1)
    if cfg.attack != "none" and in_box:
        ok = robustness.robust_correct(
            model, x, y, radius, cfg.attack, seed=cfg.seed + 1000 * epoch
        ).cpu()
        name = robustness.attack_name(cfg.attack)
        rows.append(row("robust_accuracy", ok, eps=radius, metric=name))
        summary.update(robust_accuracy=float(ok.mean()), robust_attack=name)
    sigma = smoothing_sigma(cfg)
    if sigma is not None:
        gen = torch.Generator(device=x.device).manual_seed(cfg.seed + 1000 * epoch + SEED_OFFSET)
        cert = certify.smooth_and_certify(
            model, x, sigma, num_classes, gen, cfg.certify_n0, cfg.certify_n, cfg.certify_alpha
        )
        for r in sorted({*certify.radius_ladder(d), radius}):
            rows.append(row("certified_accuracy", cert.certified_correct(y, r), eps=r))
        rows.append(row("smoothed_accuracy", cert.smoothed_correct(y), eps=sigma))
        rows.append(row("predict_abstain", cert.predict_abstained(), eps=sigma))
        rows.append(row("certify_abstain", cert.certify_abstained(), eps=sigma))
        summary.update(
            certify_sigma=sigma,
            smoothed_accuracy=float(cert.smoothed_correct(y).mean()),
            predict_abstain_rate=float(cert.predict_abstained().mean()),
            certify_abstain_rate=float(cert.certify_abstained().mean()),
            certified_accuracy=float(cert.certified_correct(y, radius).mean()),
            # mean certified radius over points certified correct (0 elsewhere), Cohen's ACR
            certified_radius_mean=float(
                torch.where(cert.certified == y.cpu(), cert.radius, 0.0).nan_to_num(0.0).mean()
            ),
        )
    return summary, rows


def measure_robust(ctx, probe) -> dict:
    """The suite's measure (trainables/measure/evaluate.py MEASURES): rows through
    `probe.row`, the summary returned."""
    summary, _ = measure_robustness(ctx.cfg, probe.model, ctx.x, ctx.y, probe.epoch, probe.row)
    return summary
