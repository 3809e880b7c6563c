"""Calibration of the alignment yardsticks, once per dataset, artifact set, model architecture
and perceptual metric, cached beside the artifacts (docs/method.md, "Calibration").

`calibrate` scores the probe maps of `analysis.calibration` (noise ladder, nulls, and on the
oracle sets the exact Bayes gradient) against every target a trial's alignment rows use, with
the pixel cosine and the perceptual metric, and returns them as `measures` rows (measure
"calibration"); on the oracle sets also the Bayes-gradient estimate's cosine with the exact
Bayes gradient (measure "bayes_estimate_cosine"). The rule that turns them into a verdict
lives in `analysis.calibration.judge` (one definition, shared with the report).

Targets are taken at the true labels (no model is involved): "score" = score(x | y),
"score_uncond" = score(x), "bayes_est" = score(x | y) - score(x), and on the oracle sets
"exact_score" and "bayes_exact". Trial rows name the same targets at the predicted class
(analysis reads the verdict by name: the yardstick, not the class it is evaluated at).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import torch

from analysis.results.atomic import atomic_write
from analysis.results.calibration import (
    BAYES_EST,
    CALIBRATION,
    COSINE,
    IDEAL,
    LADDER,
    LADDER_SNRS,
    NEGATED,
    judge,
    probe_key,
)
from trainables.measure.bayes import (
    bayes_gradient_estimate,
    exact_bayes_gradient,
    exact_smoothed_bayes_gradient,
)
from trainables.measure.gradients import input_gradients
from trainables.measure.perceptual import PerceptualMetric, alignments, cosine, null_maps

FORMAT = "pags-calibration/1"
SEED = 12345  # probe noise and the random-init model: fixed, so every trial reads the same
ESTIMATE_COSINE = "bayes_estimate_cosine"


def _rows(probe: str, target: str, metric: str, v: torch.Tensor, eps=float("nan"),
          measure: str = CALIBRATION) -> dict:  # fmt: skip
    v = v.double().cpu()
    v = v[torch.isfinite(v)]
    return {"measure": measure,
            "eps": eps, "value": float(v.mean()) if len(v) else float("nan"),
            "std": float(v.std()) if len(v) > 1 else 0.0, "n": int(len(v)),
            "gradient": probe, "reference": target, "metric": metric}  # fmt: skip


def targets_at_labels(score, x, y, oracle, sigma: float) -> dict[str, torch.Tensor]:
    """Every target a trial's rows compare gradients with, at the true labels y."""
    out = {"score_uncond": score(x)}
    if score.conditional:
        out["score"] = score(x, y)
        out[BAYES_EST] = bayes_gradient_estimate(score, x, y)
    if oracle is not None:
        out["exact_score"] = oracle.score(x.cpu(), sigma, y.cpu()).to(x)
        out[IDEAL] = exact_bayes_gradient(oracle, x.cpu(), y.cpu()).to(x)
    return out


def calibrate(
    score,
    x: torch.Tensor,
    y: torch.Tensor,
    oracle,
    sigma: float,
    random_model: torch.nn.Module,
    metric: PerceptualMetric,
    metric_name: str,
) -> list[dict]:
    """Calibration rows (module docstring) for images x `(B, C, H, W)`, labels y `(B,)`."""
    gen = torch.Generator(device=x.device).manual_seed(SEED)
    targets = targets_at_labels(score, x, y, oracle, sigma)
    base = null_maps(x, gen)
    common = {"null_input": base["input"], "null_noise": base["noise"],
              "null_random_init": input_gradients(random_model, x, "log_prob", y)}  # fmt: skip
    if oracle is not None:
        common[IDEAL] = targets[IDEAL]
    rows: list[dict] = []
    for target, t in targets.items():
        probes = dict(common)
        probes[NEGATED] = -t
        probes["null_other_point"] = t.roll(1, dims=0)
        t_norm = t.flatten(1).norm(dim=1).view(-1, *[1] * (t.ndim - 1))
        for snr in LADDER_SNRS:
            n = torch.randn(t.shape, generator=gen, device=t.device, dtype=t.dtype)
            n_norm = n.flatten(1).norm(dim=1).view_as(t_norm).clamp_min(1e-30)
            probes[probe_key(LADDER, snr)] = t + n * t_norm / (n_norm * snr)
        if target == IDEAL:
            del probes[IDEAL]  # the target itself: trivially 1
        maps = {"target": t, **probes}
        pairs = [(p, "target") for p in probes]
        with torch.no_grad():
            perceptual = alignments(maps, pairs, metric)
        for p in probes:
            snr = float(p.split("@")[1]) if p.startswith(LADDER) else float("nan")
            name = LADDER if p.startswith(LADDER) else p
            rows.append(_rows(name, target, metric_name, perceptual[(p, "target")], snr))
            rows.append(_rows(name, target, COSINE, cosine(probes[p], t), snr))
    if oracle is not None and BAYES_EST in targets:
        est = targets[BAYES_EST]
        smoothed = exact_smoothed_bayes_gradient(oracle, x.cpu(), y.cpu(), sigma).to(x)
        for ref, exact in ((IDEAL, targets[IDEAL]), ("bayes_exact_smoothed", smoothed)):
            rows.append(_rows(BAYES_EST, ref, COSINE, cosine(est, exact),
                              measure=ESTIMATE_COSINE))  # fmt: skip
    return rows


def verdicts(rows: list[dict], oracle: bool) -> dict[tuple[str, str], bool]:
    """(metric, target) -> calibrated, by `analysis.calibration.judge`."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if r["measure"] == CALIBRATION:
            key = (r["metric"], r["reference"])
            values.setdefault(key, {})[probe_key(r["gradient"], r["eps"])] = r["value"]
    # the exact Bayes gradient as a target has no ideal probe: it is the ideal itself
    return {k: judge(v, oracle and k[1] != IDEAL)[0] for k, v in values.items()}


def cached_calibration(folder: str, key: str, compute) -> list[dict]:
    """Rows from `<folder>/calibration-<key>.json`, or `compute()` written there atomically
    (no folder: computed, not cached). `key` names what the rows depend on beyond the artifact
    set: the model architecture, the metric and the score (a `--score edm:PATH` trial must not
    read the denoiser's calibration)."""
    if not folder:
        return compute()
    safe = re.sub(r"[^A-Za-z0-9@.=+-]", "_", key)
    path = os.path.join(folder, f"calibration-{safe}.json")
    try:
        with open(path) as f:
            blob = json.load(f)
        if blob.get("format") == FORMAT:
            return blob["rows"]
    except (OSError, ValueError, KeyError):
        pass
    rows = compute()
    text = json.dumps({"format": FORMAT, "rows": rows}, allow_nan=True)
    atomic_write(path, lambda f: f.write(text.encode()))
    return rows


def fresh_model(build, seed: int = SEED) -> torch.nn.Module:
    """`build()` under a fixed seed, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mean_value(rows: list[dict], measure: str, **keys) -> float:
    vals = [r["value"] for r in rows
            if r["measure"] == measure and all(r[k] == v for k, v in keys.items())]  # fmt: skip
    return float(np.mean(vals)) if vals else float("nan")


def trial_yardsticks(cfg, art, bundle, score, metric, metric_name: str, device):
    """(calibration rows, the headline (gradient, reference, metric, why)) for a trial's
    measurer: calibrated once per artifact set, model and metric (cached), the headline chosen
    by `analysis.calibration.choose_headline`."""
    from analysis.results.calibration import choose_headline
    from trainables.measure.protocol import headline_for
    from trainables.models import build_model

    x, y = art.x.to(device), art.y.to(device)
    oracle, sigma = bundle.oracle, art.config.score_sigma

    def compute() -> list[dict]:
        model = fresh_model(lambda: build_model(cfg.model, x.shape[1], bundle.num_classes,
                                                cfg.activation)).to(device)  # fmt: skip
        return calibrate(score, x, y, oracle, sigma, model, metric, metric_name)

    rows = cached_calibration(art.path, f"{cfg.model}-{metric_name}-{score.name}", compute)
    head = headline_for(cfg.dataset)
    chosen = choose_headline(verdicts(rows, oracle is not None), metric_name,
                             (head.gradient, head.reference), score.conditional)  # fmt: skip
    return rows, chosen


def measure_calibration(ctx, probe) -> dict:
    """The measurement suite's hook: the artifact set's calibration rows, stamped with the
    probe's epoch, so every results directory carries the yardsticks' calibration."""
    probe.rows.extend({**r, "epoch": probe.epoch} for r in ctx.calibration)
    return {}
