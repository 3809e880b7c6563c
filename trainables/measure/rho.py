"""Relative off-manifold robustness rho1 and the gradient's off-manifold share rho2 (paper
section 3, Definition 1 and Theorem 1; formulas in docs/method.md, "rho1 and rho2").

For a scalar output f (the one whose gradient the headline alignment uses), a point x, its
orthonormal tangent basis Q `(d, k)` and P_perp = I - Q Q^T:

    rho1(sigma) = E_u (f(x + P_perp u) - f(x))^2 / E_u (f(x + u) - f(x))^2,  u ~ N(0, sigma^2 I)
    rho2        = ||P_perp grad f(x)||^2 / ||grad f(x)||^2

Theorem 1: rho1(sigma) -> rho2 as sigma -> 0 (to first order f(x + u) - f(x) = g.u, and
E (g.P_perp u)^2 / E (g.u)^2 = ||P_perp g||^2 / ||g||^2). A gradient with no preferred
direction has rho2 = (d - k) / d (`isotropic_rho2`). Both are dimensionless, in [0, 1] for
rho2 and >= 0 for rho1; lower = more off-manifold robust.

The functions are pure: model (or gradient), points and bases in, per-point values out; they
work with any basis (autoencoder estimate or exact). rho1 is batched like the sensitivities:
all noise levels, both noise kinds and all draws of a chunk of points go through the model in
large batches.
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.measure.gradients import scalar_output
from trainables.measure.sensitivity import _device, _randn
from trainables.measure.tangent import split_on_off
from trainables.measure.tangent_estimators import HEADLINE

# Per-pixel noise std for rho1 (pixels in [0, 1]): small enough to approach Theorem 1's limit,
# large enough to stay clear of float32 round-off in f(x + u) - f(x). The smallest is the
# headline. 32 draws per point: the ratio-of-means bias measured +0.014 there, +0.04 at 16
# draws (docs/method.md); this is the measurer's largest forward-pass budget per point.
RHO1_LEVELS = (0.01, 0.03, 0.1)
RHO1_DRAWS = 32


def rho2(g: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Off-manifold share of the gradient's squared norm, `(B,)`, in float64.

    g: gradients `(B, d)` or `(B, C, H, W)`; q: orthonormal tangent bases `(B, d, k)`.
    A zero gradient gives NaN (0 / 0: no direction to speak of).
    """
    gf = g.reshape(len(g), -1).to(torch.float64)
    _, off = split_on_off(q.to(gf.device, torch.float64), gf)
    return off.pow(2).sum(1) / gf.pow(2).sum(1)


def isotropic_rho2(d: int, k: int) -> float:
    """rho2 of a gradient with no preferred direction: the off-manifold share of the dimensions."""
    return (d - k) / d


def rho1(
    model: nn.Module,
    x: torch.Tensor,
    q: torch.Tensor,
    sigmas: list[float] | tuple[float, ...],
    n_draws: int,
    generator: torch.Generator | None,
    kind: str,
    *,
    batch_size: int = 512,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """rho1(sigma) per point, `(S, B)` float64, for S noise levels sigmas (per-pixel std).

    x: `(B, C, H, W)`; q: `(B, d, k)`; kind: the scalar output (`gradients.scalar_output`; for
    "pred_logit"/"log_prob" the class is the prediction at the clean x, held fixed under noise,
    so f is one function per point). One standard normal draw z `(d,)` per point and draw gives
    u = sigma z for every level, and its off-manifold part P_perp u; the expectations are means
    over the n_draws draws. `noise` `(B, n_draws, d)` replaces the draws (tests); otherwise they
    come from `generator` chunk by chunk. Model in eval mode under no_grad, mode restored.
    NaN where the denominator is 0 (an output that does not change at all).
    """
    b, d = len(x), x[0].numel()
    if q.shape[:2] != (b, d):
        raise ValueError(f"q must be (B, d, k) = ({b}, {d}, k); got {tuple(q.shape)}")
    device = _device(model, x)
    scales = torch.tensor(list(sigmas), dtype=torch.float64)
    points = max(1, batch_size // (len(sigmas) * 2 * n_draws))
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, b, points):
                sl = slice(start, min(start + points, b))
                xs = x[sl].to(device)
                p = len(xs)
                z = (
                    noise[sl].to(device)
                    if noise is not None
                    else _randn((p, n_draws, d), generator, device)
                )
                _, z_off = split_on_off(q[sl].to(device=device, dtype=z.dtype), z)
                dirs = torch.stack([z_off, z]).to(x.dtype)  # (2, P, n, d)
                s = scales.to(device, x.dtype).view(-1, 1, 1, 1, 1)
                moved = xs.flatten(1)[None, None, :, None] + s * dirs[None]  # (S, 2, P, n, d)
                clean_logits = model(xs)
                cls = clean_logits.argmax(1)
                f0 = scalar_output(clean_logits, kind, cls).double()  # (P,)
                flat = moved.reshape(-1, *x.shape[1:])
                cls_rep = cls[None, None, :, None].expand(len(sigmas), 2, p, n_draws).reshape(-1)
                chunks = zip(flat.split(batch_size), cls_rep.split(batch_size), strict=True)
                f = torch.cat([scalar_output(model(xb), kind, cb).double() for xb, cb in chunks])
                f = f.view(len(sigmas), 2, p, n_draws)
                sq = (f - f0[None, None, :, None]).pow(2).mean(-1)  # (S, 2, P)
                out.append(sq[:, 0] / sq[:, 1])
    finally:
        model.train(was_training)
    return torch.cat(out, dim=1).cpu()


# ---- The measurement suite's rho family (trainables/measure/evaluate.py) ---------------------
def measure_rho(ctx, probe) -> dict:
    """Definition 1 / Theorem 1 on the scalar output whose gradient the headline uses; rho2
    also for the other pair's gradient."""
    head = ctx.head.gradient
    g = probe.grads[head]
    for other in ("logit_sum", "pred_logit", "log_prob"):  # rho2 of every pair's gradient
        if other != head:
            probe.row("rho2", rho2(probe.grads[other], ctx.q).cpu(), gradient=other,
                      tangent=HEADLINE)  # fmt: skip
    r2 = probe.row("rho2", rho2(g, ctx.q).cpu(), gradient=head, tangent=HEADLINE)
    r1 = rho1(probe.model, ctx.x, ctx.q, RHO1_LEVELS, RHO1_DRAWS, probe.gen, head)  # (S, B)
    r1_rows = [probe.row("rho1", v, eps=level, gradient=head)
               for level, v in zip(RHO1_LEVELS, r1, strict=True)]  # fmt: skip
    return {
        "rho2": r2["value"],  # mean over points with a non-zero gradient
        "rho1": r1_rows[0]["value"],  # at the smallest noise level: Theorem 1's limit
        "rho1_sigma": RHO1_LEVELS[0],
        "rho2_isotropic": isotropic_rho2(ctx.q.shape[1], ctx.q.shape[2]),
    }


def measure_exact_rho(ctx, probe) -> dict:
    """rho2 with the exact tangent spaces (synthetic sets): what the estimate should read."""
    if ctx.oracle is None:
        return {}
    g = probe.grads[ctx.head.gradient]
    exact = rho2(g.cpu(), ctx.oracle.tangent_at(ctx.x.cpu()))
    probe.row("rho2_exact", exact, gradient=ctx.head.gradient)
    return {"rho2_exact": float(exact[torch.isfinite(exact)].mean())}
