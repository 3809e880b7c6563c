"""Everything a trial measures on one model, from the shared artifacts (METHOD.md sections on
sensitivity and alignment; paper sections 4.1-4.3).

`build_measurer` returns `measure(model, epoch) -> (summary, rows)`: the summary holds the
headline numbers (at the reference step size, with the headline gradient/score pair) and a few
gradient/score maps for figures; the rows are the long-format `measures.parquet` records
(analysis/schema.py), one per measure, step size and gradient/reference/metric.

Headline alignment: gradient of the predicted class's logit vs the class-conditional score at
the predicted class (METHOD.md: compare class-conditional with class-conditional). Also
recorded: the sum-of-logits gradient vs the unconditional score, the gradient of log p(y|x) vs
the class-conditional score, and null maps (Gaussian noise, the centred input) vs the same
score, so a reader can tell a meaningful value from a trivial one.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import DataBundle
from trainables.measure.alignment import (
    alignments,
    bayes_cosine,
    build_metric,
    cosine,
    null_maps,
    subspace_energy,
)
from trainables.measure.artifacts import Artifacts, prepare_artifacts
from trainables.measure.gradients import input_gradients_many
from trainables.measure.score import DenoiserScore
from trainables.measure.sensitivity import default_eps, manifold_sensitivity, mask_sensitivity

# Noise levels s (per-pixel std, pixels in [0, 1]) for signal vs distractor noise: every third
# of METHOD.md's logspace(-2, 1, 30), which keeps the curve's shape at a tenth of the cost.
NOISE_LEVELS = [float(s) for s in np.logspace(-2, 1, 30)[::3]]
REFERENCE_EPS_INDEX = 2  # the third reference step (4.83 on CIFAR-10)
REFERENCE_NOISE_LEVEL = min(NOISE_LEVELS, key=lambda s: abs(math.log(s / 0.3)))
HEADLINE_GRADIENT = "pred_logit"
N_MAPS = 8  # gradient/score maps kept per trial for the gallery


@functools.lru_cache(maxsize=4)
def _metric(kind: str, device: str):
    return build_metric(kind, device)


def _row(measure: str, values: torch.Tensor | np.ndarray, epoch: int, **keys) -> dict:
    v = torch.as_tensor(np.asarray(values, dtype=np.float64))
    v = v[torch.isfinite(v)]
    return {
        "epoch": epoch, "measure": measure, "eps": keys.get("eps", float("nan")),
        "value": float(v.mean()) if len(v) else float("nan"),
        "std": float(v.std()) if len(v) > 1 else 0.0, "n": int(len(v)),
        "gradient": keys.get("gradient", ""), "reference": keys.get("reference", ""),
        "metric": keys.get("metric", ""),
    }  # fmt: skip


def build_measurer(
    cfg: TrialConfig,
    bundle: DataBundle,
    device: torch.device,
    artifacts: Artifacts | None = None,
    cache_dir: str | None = None,
):
    """A `measure(model, epoch)` closure; prepares (or loads cached) artifacts if none given."""
    art = artifacts or prepare_artifacts(cfg, cache_dir or cfg.artifacts_dir or None, bundle)
    x = art.x.to(device)
    mask = art.signal_mask.to(device) if art.signal_mask is not None else None
    q = art.tangent.to(device)
    eps = list(cfg.eps) or default_eps(x[0].numel())
    ref_eps = eps[min(REFERENCE_EPS_INDEX, len(eps) - 1)]
    score = DenoiserScore(art.denoiser.to(device), art.config.score_sigma)
    metric = _metric(cfg.alignment_metric, str(device))
    oracle = bundle.oracle
    score_uncond = score(x)

    def measure(model: nn.Module, epoch: int) -> tuple[dict, list[dict]]:
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1000 * epoch)
        rows: list[dict] = []
        summary: dict = {"reference_eps": ref_eps}

        sens = manifold_sensitivity(model, x, q, eps, cfg.noise_draws, gen)
        for i, e in enumerate(sens["eps"]):
            for kind in ("on", "off"):
                rows.append(_row(f"{kind}_manifold_sensitivity", sens[f"{kind}_per_point"][i],
                                 epoch, eps=e))  # fmt: skip
        i_ref = eps.index(ref_eps)
        summary["on_manifold_sensitivity"] = sens["on_mean"][i_ref]
        summary["off_manifold_sensitivity"] = sens["off_mean"][i_ref]
        # off / on (METHOD.md): below 1 = relatively off-manifold robust
        summary["relative_off_manifold_robustness"] = (
            sens["off_mean"][i_ref] / sens["on_mean"][i_ref] if sens["on_mean"][i_ref] else math.nan
        )

        summary.update(signal_sensitivity=math.nan, distractor_sensitivity=math.nan,
                       relative_noise_robustness=math.nan)  # fmt: skip
        if mask is not None:
            ms = mask_sensitivity(model, x, mask, NOISE_LEVELS, cfg.noise_draws, gen)
            for i, s in enumerate(ms["levels"]):
                for kind in ("signal", "distractor"):
                    rows.append(_row(f"{kind}_sensitivity", ms[f"{kind}_per_point"][i], epoch,
                                     eps=s))  # fmt: skip
            j = NOISE_LEVELS.index(REFERENCE_NOISE_LEVEL)
            summary["signal_sensitivity"] = ms["signal_mean"][j]
            summary["distractor_sensitivity"] = ms["distractor_mean"][j]
            summary["relative_noise_robustness"] = ms["relative"][j]

        grads = input_gradients_many(model, x, ["logit_sum", "pred_logit", "log_prob"])
        with torch.no_grad():
            pred = model.eval()(x).argmax(1)
        score_cond = score(x, pred)
        nulls = null_maps(x, gen)
        maps = {**grads, "null_noise": nulls["noise"], "null_input": nulls["input"],
                "score": score_cond, "score_uncond": score_uncond}  # fmt: skip
        pairs = [("logit_sum", "score_uncond"), ("pred_logit", "score"), ("log_prob", "score"),
                 ("null_noise", "score"), ("null_input", "score")]  # fmt: skip
        if oracle is not None:  # synthetic set: the exact class-conditional score
            maps["exact_score"] = oracle.score(x.cpu(), art.config.score_sigma, pred.cpu()).to(x)
            pairs.append(("pred_logit", "exact_score"))
        with torch.no_grad():
            aligned = alignments(maps, pairs, metric)
            for g_name, ref in pairs:
                a = aligned[(g_name, ref)]
                rows.append(_row("alignment", a.cpu(), epoch, gradient=g_name, reference=ref,
                                 metric=metric.name))  # fmt: skip
                rows.append(_row("alignment", cosine(maps[g_name], maps[ref]).cpu(), epoch,
                                 gradient=g_name, reference=ref, metric="cosine"))  # fmt: skip
                if (g_name, ref) == (HEADLINE_GRADIENT, "score"):
                    summary["alignment"] = float(a.mean())
        summary["alignment_metric"] = metric.name
        summary["alignment_gradient"] = HEADLINE_GRADIENT
        summary["alignment_score"] = score.name

        if mask is not None:  # share of the gradient's energy on the signal (digit) half
            g2 = grads[HEADLINE_GRADIENT].pow(2)
            share = (g2 * mask).flatten(1).sum(1) / g2.flatten(1).sum(1).clamp_min(1e-30)
            rows.append(_row("gradient_signal_share", share.cpu(), epoch,
                             gradient=HEADLINE_GRADIENT))  # fmt: skip
            summary["gradient_signal_share"] = float(share.mean())
        if oracle is not None:
            g = grads[HEADLINE_GRADIENT].cpu()
            energy = subspace_energy(g, oracle.signal_basis(), oracle.distractor_basis())
            for part, v in energy.items():
                rows.append(_row(f"energy_{part}", v, epoch, gradient=HEADLINE_GRADIENT))
            bayes = oracle.bayes_logit_grad(x.cpu(), pred.cpu())
            rows.append(_row("bayes_cosine", bayes_cosine(g.double(), bayes), epoch,
                             gradient=HEADLINE_GRADIENT))  # fmt: skip

        summary["maps"] = {
            "inputs": x[:N_MAPS].cpu().numpy(),
            "score": score_cond[:N_MAPS].cpu().numpy(),
            "gradient": grads[HEADLINE_GRADIENT][:N_MAPS].cpu().numpy(),
        }
        return summary, rows

    return measure
