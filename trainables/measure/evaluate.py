"""Everything a trial measures on one model, from the shared artifacts (docs/method.md; paper
sections 3 and 4.1-4.3).

`build_measurer` returns `measure(model, epoch) -> (summary, rows)`: the summary holds the
headline numbers (at the headline step size `protocol.headline_eps`, with the dataset's
headline gradient/score pair `protocol.headline_for`) and a few gradient/score maps for figures;
the rows are the long-format `measures.parquet` records (analysis/schema.py), one per measure,
step size or noise level, and gradient/reference/metric.

Alignment pairs recorded for every dataset, whichever is the headline: the sum-of-logits
gradient vs the unconditional score, the predicted class's logit vs the class-conditional score
at the predicted class ("score") and at the true label ("score_label"), the gradient of
log p(y|x) vs "score" and vs the Bayes-gradient estimate score(x|y) - score(x) ("bayes_est",
and at the true label "bayes_est_label"; `bayes.py`), on the oracle sets vs the exact Bayes
gradient ("bayes_exact"), and null maps (Gaussian noise, the centred input) vs the scores, so a
reader can tell a meaningful value from a trivial one. Every measurement also carries the
artifact set's calibration rows (`calibration.py`), and the headline `alignment` is the
yardstick the calibration rule picks (`analysis.calibration.choose_headline`).
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import DataBundle
from trainables.measure.artifacts import Artifacts, prepare_artifacts
from trainables.measure.bayes import exact_bayes_gradient
from trainables.measure.calibration import trial_yardsticks
from trainables.measure.gradients import input_gradients, input_gradients_many
from trainables.measure.perceptual import (
    alignments,
    bayes_cosine,
    build_metric,
    cosine,
    null_maps,
    subspace_energy,
)
from trainables.measure.perceptual import metric_name as alignment_metric_name
from trainables.measure.protocol import headline_eps, headline_for
from trainables.measure.rho import RHO1_DRAWS, RHO1_LEVELS, isotropic_rho2, rho1, rho2
from trainables.measure.score import DenoiserScore
from trainables.measure.sensitivity import default_eps, manifold_sensitivity, mask_sensitivity

# Noise levels s (per-pixel std, pixels in [0, 1]) for signal vs distractor noise: every third
# of the reference's logspace(-2, 1, 30), which keeps the curve's shape at a tenth of the cost.
NOISE_LEVELS = [float(s) for s in np.logspace(-2, 1, 30)[::3]]
REFERENCE_NOISE_LEVEL = min(NOISE_LEVELS, key=lambda s: abs(math.log(s / 0.3)))
N_MAPS = 8  # gradient/score maps kept per trial for the gallery


def step_sizes(cfg_eps: tuple[float, ...], d: int) -> tuple[list[float], float]:
    """(all step sizes, the headline one): the user's steps or the four reference steps scaled
    to d, always including the headline 2.64 * sqrt(d / 3072) (added when missing)."""
    head = headline_eps(d)
    eps = sorted(cfg_eps) if cfg_eps else default_eps(d)
    match = [e for e in eps if math.isclose(e, head, rel_tol=1e-9)]
    if match:
        return eps, match[0]
    return sorted([*eps, head]), head


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    # Progress goes to stderr: stdout may carry a result (`pags train --json`).
    art = artifacts or prepare_artifacts(
        cfg, cache_dir or cfg.artifacts_dir or None, bundle, log=_to_stderr
    )
    x = art.x.to(device)
    mask = art.signal_mask.to(device) if art.signal_mask is not None else None
    q = art.tangent.to(device)
    eps, ref_eps = step_sizes(cfg.eps, x[0].numel())
    head = headline_for(cfg.dataset)
    score = DenoiserScore(art.denoiser.to(device), art.config.score_sigma)
    metric = _metric(cfg.alignment_metric, str(device))
    metric_name = alignment_metric_name(metric.name, *x.shape[-2:])
    oracle = bundle.oracle
    score_uncond = score(x)
    score_label = score(x, art.y.to(device)) if score.conditional else None
    # Which yardsticks measure alignment here, and so which one is the headline (issue 19).
    calib_rows, (head_g, head_ref, head_metric, head_why) = trial_yardsticks(
        cfg, art, bundle, score, metric, metric_name, device)  # fmt: skip

    def measure(model: nn.Module, epoch: int) -> tuple[dict, list[dict]]:
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1000 * epoch)
        rows: list[dict] = []
        summary: dict = {"reference_eps": ref_eps, **art.quality}

        sens = manifold_sensitivity(model, x, q, eps, cfg.noise_draws, gen)
        for i, e in enumerate(sens["eps"]):
            for kind in ("on", "off"):
                rows.append(_row(f"{kind}_manifold_sensitivity", sens[f"{kind}_per_point"][i],
                                 epoch, eps=e))  # fmt: skip
        i_ref = eps.index(ref_eps)
        summary["on_manifold_sensitivity"] = sens["on_mean"][i_ref]
        summary["off_manifold_sensitivity"] = sens["off_mean"][i_ref]
        # off / on (docs/method.md): below 1 = relatively off-manifold robust
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
        grads["log_prob_label"] = input_gradients(model, x, "log_prob", art.y.to(device))
        with torch.no_grad():
            pred = model.eval()(x).argmax(1)
        score_cond = score(x, pred) if score.conditional else score_uncond
        rows += [{**r, "epoch": epoch} for r in calib_rows]
        nulls = null_maps(x, gen)
        maps = {**grads, "null_noise": nulls["noise"], "null_input": nulls["input"],
                "score": score_cond, "score_uncond": score_uncond}  # fmt: skip
        pairs = [("logit_sum", "score_uncond"), ("pred_logit", "score"), ("log_prob", "score")]
        # Null references (a noise map, the input image) against every score a gradient meets,
        # so each alignment figure has a trivial map's value beside it.
        for ref in dict.fromkeys((head.reference, "score", "score_uncond")):
            pairs += [("null_noise", ref), ("null_input", ref)]
        if score_label is not None:
            maps["score_label"] = score_label
            pairs.append(("pred_logit", "score_label"))
            # The identifiable pair: grad log p(y|x) vs the Bayes-gradient estimate
            # score(x|y) - score(x), at the predicted class and at the true label.
            maps["bayes_est"] = score_cond - score_uncond
            maps["bayes_est_label"] = score_label - score_uncond
            pairs += [("log_prob", "bayes_est"), ("log_prob_label", "bayes_est_label"),
                      ("null_noise", "bayes_est"), ("null_input", "bayes_est")]  # fmt: skip
        if oracle is not None:  # synthetic set: the exact class-conditional score
            maps["exact_score"] = oracle.score(x.cpu(), art.config.score_sigma, pred.cpu()).to(x)
            maps["bayes_exact"] = exact_bayes_gradient(oracle, x.cpu(), pred.cpu()).to(x)
            pairs += [("pred_logit", "exact_score"), ("log_prob", "bayes_exact")]
        headline_pair = (head_g, head_ref)
        if headline_pair not in pairs:
            raise ValueError(f"{cfg.dataset}: headline pair {headline_pair} is not measured")
        with torch.no_grad():
            aligned = alignments(maps, pairs, metric)
            for g_name, ref in pairs:
                a = aligned[(g_name, ref)]
                rows.append(_row("alignment", a.cpu(), epoch, gradient=g_name, reference=ref,
                                 metric=metric_name))  # fmt: skip
                rows.append(_row("alignment", cosine(maps[g_name], maps[ref]).cpu(), epoch,
                                 gradient=g_name, reference=ref, metric="cosine"))  # fmt: skip
            head_values = (cosine(maps[head_g], maps[head_ref]) if head_metric == "cosine"
                           else aligned[headline_pair])  # fmt: skip
            summary["alignment"] = float(head_values.mean())
        summary["alignment_metric"] = head_metric
        summary["alignment_gradient"] = head_g
        summary["alignment_reference"] = head_ref
        summary["alignment_score"] = score.name

        # Definition 1 / Theorem 1 on the scalar output whose gradient the headline uses.
        g = grads[head.gradient]
        r2_row = _row("rho2", rho2(g, q).cpu(), epoch, gradient=head.gradient)
        for other in ("logit_sum", "pred_logit", "log_prob"):  # rho2 of every pair's gradient
            if other != head.gradient:
                rows.append(_row("rho2", rho2(grads[other], q).cpu(), epoch, gradient=other))
        r1 = rho1(model, x, q, RHO1_LEVELS, RHO1_DRAWS, gen, head.gradient)  # (S, B)
        r1_rows = [
            _row("rho1", v, epoch, eps=level, gradient=head.gradient)
            for level, v in zip(RHO1_LEVELS, r1, strict=True)
        ]
        rows += [r2_row, *r1_rows]
        summary["rho2"] = r2_row["value"]  # mean over points with a non-zero gradient
        summary["rho1"] = r1_rows[0]["value"]  # at the smallest noise level: Theorem 1's limit
        summary["rho1_sigma"] = RHO1_LEVELS[0]
        summary["rho2_isotropic"] = isotropic_rho2(q.shape[1], q.shape[2])

        if mask is not None:  # share of the gradient's energy on the signal (digit) half
            g2 = g.pow(2)
            share = (g2 * mask).flatten(1).sum(1) / g2.flatten(1).sum(1).clamp_min(1e-30)
            rows.append(_row("gradient_signal_share", share.cpu(), epoch,
                             gradient=head.gradient))  # fmt: skip
            summary["gradient_signal_share"] = float(share.mean())
        if oracle is not None:
            xc = x.cpu()
            energy = subspace_energy(
                g.cpu(), oracle.signal_tangent_at(xc), oracle.distractor_tangent_at(xc)
            )
            for part, v in energy.items():
                rows.append(_row(f"energy_{part}", v, epoch, gradient=head.gradient))
            # Like with like: grad log p(y_hat|x) of the model and of the Bayes classifier (a
            # logit's gradient differs by grad logsumexp, which cross-entropy never sees).
            b_cos = bayes_cosine(grads["log_prob"].cpu().double(), maps["bayes_exact"].cpu())
            rows.append(_row("bayes_cosine", b_cos, epoch, gradient="log_prob",
                             reference="bayes_exact", metric="cosine"))  # fmt: skip
            # rho2 with the exact tangent spaces: what the estimate above should read
            exact_r2 = rho2(g.cpu(), oracle.tangent_at(xc))
            rows.append(_row("rho2_exact", exact_r2, epoch, gradient=head.gradient))
            summary["rho2_exact"] = float(exact_r2[torch.isfinite(exact_r2)].mean())

        summary["maps"] = {
            "inputs": x[:N_MAPS].cpu().numpy(),
            "score": maps[head.reference][:N_MAPS].cpu().numpy(),
            "gradient": g[:N_MAPS].cpu().numpy(),
        }
        return summary, rows

    return measure
