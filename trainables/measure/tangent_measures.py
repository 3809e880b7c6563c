"""rho2 and on/off-manifold sensitivity under every tangent estimate, and the estimator-free
part of rho2 (docs/method.md, "Tangent estimators").

`measure_tangent_estimates` adds, per estimate the artifacts keep (tangent_estimators.
ESTIMATORS), the rows rho2 (headline gradient) and on/off-manifold sensitivity (headline step)
with the measures column `tangent` naming the estimate; the headline estimate's rows come from
the suite's own measures (rho.py, sensitivity.py), tagged the same way. The trial summary gets
the spread of rho2 across the estimates (max - min). The denoiser's Jacobian is left out where
its eigenvalues show no gap at k (`usable`).

`measure_estimator_free` splits the headline gradient g on digits-distractor, whose true
tangent spaces all lie in a known subspace S: the distractor half is a fixed glyph (no tangent
there) and the digit half a bilinear upsampling of 8x8 images (every tangent inside the rank-64
upsampling span U). So P_perp g contains the part of g outside S whatever the tangent space,
and rho2 >= ||g_distractor||^2 / ||g||^2 + ||(I - U U^T) g_digit||^2 / ||g||^2 (both exact);
only the remaining within-span share depends on an estimate. On mnist-distractor only the
distractor share is exact (its digit half spans every pixel).
"""

from __future__ import annotations

import math

import torch

from analysis.results.rows import measure_row
from trainables.data.digits import DIGIT_SIZE, upsampling_basis
from trainables.facts import facts_for
from trainables.measure.rho import rho2
from trainables.measure.sensitivity import manifold_sensitivity
from trainables.measure.tangent_estimators import DENOISER_JACOBIAN, HEADLINE

# The exactly known span of the signal half, by the facts record's `signal_span` (None: every
# pixel of the half).
SPANS = {"pixels": lambda: None, "upsampled-8x8": lambda: upsampling_basis(DIGIT_SIZE)}
# measures rows of the agreement between two estimates (tangent vs reference), by figure
AGREEMENT_MEASURES = {
    "overlap": "tangent_overlap", "mean_angle_deg": "tangent_mean_angle",
    "median_angle_deg": "tangent_median_angle", "largest_angle_deg": "tangent_largest_angle",
}
JACOBIAN_GAP_MIN = 0.1  # linear set: 0.997, curved: 0.26, digits: 0.003 (the artifacts' figures)
SPLIT_MEASURES = ("gradient_distractor_share", "gradient_outside_span_share",
                  "gradient_in_span_share")  # fmt: skip


def measure_tangent_estimates(ctx, probe) -> dict:
    """rho2 and on/off sensitivity at the headline step under every estimate but the headline
    (whose rows the suite already wrote); summary: rho2's spread across all estimates."""
    g = probe.grads[ctx.head.gradient]
    values = {HEADLINE: _headline_rho2(probe)}
    for name, q in ctx.tangents.items():
        if name == HEADLINE or not usable(name, ctx.quality):
            continue
        values[name] = probe.row("rho2", rho2(g, q).cpu(), gradient=ctx.head.gradient,
                                 tangent=name)["value"]  # fmt: skip
        sens = manifold_sensitivity(probe.model, ctx.x, q, [ctx.ref_eps], ctx.cfg.noise_draws,
                                    probe.gen)  # fmt: skip
        for kind in ("on", "off"):
            probe.row(f"{kind}_manifold_sensitivity", sens[f"{kind}_per_point"][0],
                      eps=ctx.ref_eps, tangent=name)  # fmt: skip
    n = len(ctx.x)
    for pair in ctx.agreement:  # the artifacts' figures, so tables need no artifact files
        for key, measure in AGREEMENT_MEASURES.items():
            probe.rows.append(measure_row(measure, probe.epoch, pair[key], 0.0, n,
                                          tangent=pair["a"], reference=pair["b"]))  # fmt: skip
    for name, seconds in ctx.tangent_build_times.items():
        probe.rows.append(measure_row("tangent_build_time", probe.epoch, seconds, 0.0, n,
                                      tangent=name))  # fmt: skip
    finite = [v for v in values.values() if math.isfinite(v)]
    return {"rho2_tangent_spread": max(finite) - min(finite) if len(finite) > 1 else math.nan}


def usable(name: str, quality: dict) -> bool:
    """Whether figures are measured under estimate `name`. The denoiser's Jacobian is not when
    its eigenvalues have no gap at k (mean relative gap below JACOBIAN_GAP_MIN): it then singles
    out no k-dimensional space, and its top k are an arbitrary pick from a larger span (on
    digits: relative gap 0.003, all 17 top eigenvalues within 0.97-1.00). Its agreement rows
    are still written, so the report shows it."""
    if name != DENOISER_JACOBIAN:
        return True
    return quality.get("jacobian_eigenvalue_gap", math.nan) >= JACOBIAN_GAP_MIN


def _headline_rho2(probe) -> float:
    rows = [r for r in probe.rows if r["measure"] == "rho2" and r["tangent"] == HEADLINE
            and r["gradient"] == probe.ctx.head.gradient]  # fmt: skip
    return rows[-1]["value"] if rows else math.nan


def gradient_split(g: torch.Tensor, mask: torch.Tensor, span: torch.Tensor | None) -> dict:
    """Shares of ||g||^2 `(B,)` each (float64): on the distractor half (~mask), in the digit
    half outside `span` `(h, k)` (orthonormal, h = pixels of the half; None = all of them) and
    within it. g, mask `(B, C, H, W)`; the three shares sum to 1."""
    gf = g.reshape(len(g), -1).to(torch.float64)
    m = mask.reshape(len(g), -1).to(gf.device)
    total = gf.pow(2).sum(1)
    digit = gf[m].view(len(g), -1)  # row-major pixels of each image's digit half
    distractor = total - digit.pow(2).sum(1)
    if span is None:
        inside = digit.pow(2).sum(1)
    else:
        inside = (digit @ span.to(gf)).pow(2).sum(1)
    outside = digit.pow(2).sum(1) - inside
    return {
        "gradient_distractor_share": distractor / total,
        "gradient_outside_span_share": outside / total,
        "gradient_in_span_share": inside / total,
    }


def basis_outside_span(q: torch.Tensor, mask: torch.Tensor, span: torch.Tensor | None):
    """Share of a tangent estimate's dimensions that lie where no tangent exists, `(B,)`:
    ||Q outside S||_F^2 / k for bases q `(B, d, k)` (S as in `gradient_split`). 0 for a basis
    inside S; the true tangent spaces read 0."""
    qd = q.to(torch.float64)
    k = q.shape[2]
    m = mask.reshape(len(q), -1).to(qd.device)
    digit = qd[m].view(len(q), -1, k)  # (B, h, k)
    inside = digit.pow(2).sum((1, 2)) if span is None else (
        span.to(qd).T @ digit).pow(2).sum((1, 2))  # fmt: skip
    return 1 - inside / k


def measure_estimator_free(ctx, probe) -> dict:
    """The exact split of the headline gradient (module docstring); summary `rho2_floor`, the
    estimator-free lower bound on rho2 (NaN on sets without a known span)."""
    known = facts_for(ctx.cfg.dataset).signal_span
    if ctx.mask is None or not known:
        return {"rho2_floor": math.nan}
    span = SPANS[known]()
    shares = gradient_split(probe.grads[ctx.head.gradient], ctx.mask, span)
    rows = {name: probe.row(name, v.cpu(), gradient=ctx.head.gradient)["value"]
            for name, v in shares.items()}  # fmt: skip
    for name, q in ctx.tangents.items():  # an estimator-free check of each estimate
        probe.row("tangent_outside_span_share", basis_outside_span(q, ctx.mask, span).cpu(),
                  tangent=name)  # fmt: skip
    return {"rho2_floor": rows["gradient_distractor_share"] + rows["gradient_outside_span_share"]}
