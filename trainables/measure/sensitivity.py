"""On/off-manifold and signal/distractor sensitivity (docs/method.md, "Sensitivity"; paper
section 4 and appendix B.6).

Sensitivity of a classifier f at x to a perturbation delta is the L1 change of its softmax,
`|| softmax(f(x + delta)) - softmax(f(x)) ||_1` (in [0, 2]). Both measures here average it
over noise draws per point, then report mean and std over points, plus the per-point values
so callers can bootstrap.

Everything is batched: the perturbed copies of a chunk of points (all step sizes, both
directions, all draws) are concatenated and pushed through the model in large batches; the
only Python loops are over chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from trainables.measure.protocol import CIFAR_DIM
from trainables.measure.tangent import split_on_off
from trainables.measure.tangent_estimators import HEADLINE

# The reference's step sizes, logspace(-3, 2, 20)[12:16] = 1.44, 2.64, 4.83, 8.86 on CIFAR-10;
# the second is the headline (protocol.PAPER_EPS_CIFAR, the paper's Figure 3).
REFERENCE_EPS_CIFAR = [float(e) for e in np.logspace(-3, 2, 20)[12:16]]


def default_eps(d: int) -> list[float]:
    """L2 step sizes for images with d values in [0, 1].

    The reference steps `logspace(-3, 2, 20)[12:16]` = 1.44, 2.64, 4.83, 8.86 are for CIFAR-10
    (d = 3072). We scale them by sqrt(d / 3072): a perturbation of fixed per-pixel size has an L2
    norm growing as sqrt(d), so this keeps the per-pixel noise level of the reference across
    image sizes (e.g. d = 392, digits with distractor: 0.51, 0.94, 1.73, 3.17; the headline
    is the second, `protocol.headline_eps(d)`).
    """
    scale = math.sqrt(d / CIFAR_DIM)
    return [e * scale for e in REFERENCE_EPS_CIFAR]


def _device(model: nn.Module, x: torch.Tensor) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else x.device


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal draws from `generator` (on its own device), then moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def _prob_change(
    model: nn.Module, x: torch.Tensor, deltas: torch.Tensor, scales: list[float], batch_size: int
) -> torch.Tensor:
    """Mean over draws of the softmax L1 change, `(E, S, P)`.

    x: `(P, C, H, W)` points; deltas: `(S, P, n, C, H, W)` unit-scale perturbations of S kinds
    (on/off, signal/distractor), n draws each; scales: E step sizes. The model sees
    `x + scale * delta` for all E * S * P * n combinations, batch_size rows at a time.
    """
    s, p, n = deltas.shape[:3]
    p_clean = torch.softmax(model(x).float(), dim=1)  # (P, K)
    scale = torch.tensor(scales, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1, 1, 1)
    perturbed = (x[None, None, :, None] + scale * deltas[None]).flatten(0, 3)  # (E*S*P*n, ...)
    probs = torch.cat(
        [torch.softmax(model(b).float(), dim=1) for b in perturbed.split(batch_size)]
    ).view(len(scales), s, p, n, -1)
    return (probs - p_clean[None, None, :, None]).abs().sum(-1).mean(-1)


def _run_chunks(
    model: nn.Module,
    x: torch.Tensor,
    make_deltas: Callable[[slice, torch.device], torch.Tensor],
    scales: list[float],
    kinds: int,
    n_draws: int,
    batch_size: int,
) -> torch.Tensor:
    """Per-point sensitivities `(E, S, B)`, chunking points so one chunk is ~ one model batch."""
    device = _device(model, x)
    points = max(1, batch_size // (len(scales) * kinds * n_draws))
    was_training = model.training
    model.eval()  # BatchNorm uses running stats; restored below (caller's model, not ours)
    try:
        with torch.no_grad():
            out = [
                _prob_change(model, x[sl].to(device), make_deltas(sl, device), scales, batch_size)
                for sl in (slice(i, i + points) for i in range(0, len(x), points))
            ]
    finally:
        model.train(was_training)
    return torch.cat(out, dim=2).double().cpu()


def _summary(names: tuple[str, str], key: str, steps: list[float], values: torch.Tensor) -> dict:
    """Dict of per-step means/stds over points and per-point arrays for the two kinds."""
    result: dict = {key: list(steps)}
    for name, v in zip(names, values.unbind(1), strict=True):  # v: (E, B)
        result[f"{name}_mean"] = v.mean(1).tolist()
        result[f"{name}_std"] = (v.std(1) if v.shape[1] > 1 else torch.zeros(len(v))).tolist()
        result[f"{name}_per_point"] = v.numpy()
    num, den = np.asarray(result[f"{names[0]}_mean"]), np.asarray(result[f"{names[1]}_mean"])
    with np.errstate(divide="ignore", invalid="ignore"):
        result["relative"] = (num / den).tolist()  # nan at 0 / 0 (e.g. noise level 0)
    return result


def manifold_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    q: torch.Tensor,
    eps: list[float],
    n_draws: int,
    generator: torch.Generator | None,
    *,
    batch_size: int = 512,
    noise: torch.Tensor | None = None,
) -> dict:
    """On- and off-manifold sensitivity at step sizes eps (docs/method.md, "Sensitivity").

    x: `(B, C, H, W)`; q: `(B, d, k)` orthonormal tangent bases (tangent.tangent_bases).
    For each point, draw u ~ N(0, I_d) n_draws times; u_on = QQ^T u, u_off = u - u_on, each
    scaled to unit L2 norm; the same draw serves every eps (as in the reference code).
    `noise` `(B, n_draws, d)` replaces the draws (tests use it); otherwise they come from
    `generator` chunk by chunk, so a result is reproducible for a fixed generator state, x and
    batch_size. The model runs in eval mode under no_grad (its mode is restored afterwards).

    Returns {"eps": [E], "on_mean", "on_std", "off_mean", "off_std": lists of E floats (mean
    and sample std over points of the per-point average over draws), "on_per_point",
    "off_per_point": numpy (E, B), "relative": off_mean / on_mean per eps (below 1 = relatively
    off-manifold robust)}.
    """
    b, d = len(x), x[0].numel()
    if q.shape[:2] != (b, d):
        raise ValueError(f"q must be (B, d, k) = ({b}, {d}, k); got {tuple(q.shape)}")

    def make_deltas(sl: slice, device) -> torch.Tensor:  # (2, P, n, C, H, W)
        p = len(range(b)[sl])
        u = (
            noise[sl].to(device)
            if noise is not None
            else _randn((p, n_draws, d), generator, device)
        )
        on, off = split_on_off(q[sl].to(device=device, dtype=u.dtype), u)
        dirs = torch.stack([on, off])
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return dirs.view(2, p, n_draws, *x.shape[1:]).to(x.dtype)

    values = _run_chunks(model, x, make_deltas, list(eps), 2, n_draws, batch_size)
    return _summary(("on", "off"), "eps", eps, values)


def mask_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    signal_mask: torch.Tensor,
    levels: list[float],
    n_draws: int,
    generator: torch.Generator | None,
    *,
    batch_size: int = 512,
    noise: torch.Tensor | None = None,
) -> dict:
    """Sensitivity to N(0, s^2) pixel noise inside the signal mask vs inside the distractor mask
    (its complement), for noise levels s (docs/method.md "Signal vs distractor"; paper 4.3).

    x: `(B, C, H, W)`; signal_mask: bool `(B, 1 or C, H, W)`, True on the label-carrying part.
    One standard normal draw z `(C, H, W)` per point and draw gives both perturbations,
    `s * z * mask` and `s * z * ~mask`, for every level. `noise` `(B, n_draws, C, H, W)` replaces
    the draws. Returns {"levels", "signal_mean", "signal_std", "distractor_mean",
    "distractor_std", "signal_per_point", "distractor_per_point" (numpy (E, B)), "relative":
    signal_mean / distractor_mean per level (the relative noise robustness; nan at s = 0)}.
    """
    mask = signal_mask.expand(len(x), *x.shape[1:])

    def make_deltas(sl: slice, device) -> torch.Tensor:  # (2, P, n, C, H, W)
        p = len(range(len(x))[sl])
        shape = (p, n_draws, *x.shape[1:])
        z = noise[sl].to(device) if noise is not None else _randn(shape, generator, device)
        m = mask[sl].to(device)[:, None]
        return torch.stack([z * m, z * ~m]).to(x.dtype)

    values = _run_chunks(model, x, make_deltas, list(levels), 2, n_draws, batch_size)
    return _summary(("signal", "distractor"), "levels", levels, values)


# ---- The measurement suite's sensitivity families (trainables/measure/evaluate.py) ----------
# Noise levels s (per-pixel std, pixels in [0, 1]) for signal vs distractor noise: every third
# of the reference's logspace(-2, 1, 30), which keeps the curve's shape at a tenth of the cost.
NOISE_LEVELS = [float(s) for s in np.logspace(-2, 1, 30)[::3]]
REFERENCE_NOISE_LEVEL = min(NOISE_LEVELS, key=lambda s: abs(math.log(s / 0.3)))


def measure_manifold(ctx, probe) -> dict:
    """On/off-manifold sensitivity at every step size; the summary at the headline step, and
    their ratio off / on (docs/method.md): below 1 = relatively off-manifold robust."""
    sens = manifold_sensitivity(probe.model, ctx.x, ctx.q, ctx.eps, ctx.cfg.noise_draws,
                                probe.gen)  # fmt: skip
    for i, e in enumerate(sens["eps"]):
        for kind in ("on", "off"):
            probe.row(f"{kind}_manifold_sensitivity", sens[f"{kind}_per_point"][i], eps=e,
                      tangent=HEADLINE)  # fmt: skip
    i_ref = ctx.eps.index(ctx.ref_eps)
    on, off = sens["on_mean"][i_ref], sens["off_mean"][i_ref]
    return {
        "on_manifold_sensitivity": on,
        "off_manifold_sensitivity": off,
        "relative_off_manifold_robustness": off / on if on else math.nan,
    }


def measure_mask_noise(ctx, probe) -> dict:
    """Signal vs distractor noise sensitivity (sets with a signal mask; NaN elsewhere)."""
    out = dict(signal_sensitivity=math.nan, distractor_sensitivity=math.nan,
               relative_noise_robustness=math.nan)  # fmt: skip
    if ctx.mask is None:
        return out
    ms = mask_sensitivity(probe.model, ctx.x, ctx.mask, NOISE_LEVELS, ctx.cfg.noise_draws,
                          probe.gen)  # fmt: skip
    for i, s in enumerate(ms["levels"]):
        for kind in ("signal", "distractor"):
            probe.row(f"{kind}_sensitivity", ms[f"{kind}_per_point"][i], eps=s)
    j = NOISE_LEVELS.index(REFERENCE_NOISE_LEVEL)
    out.update(signal_sensitivity=ms["signal_mean"][j],
               distractor_sensitivity=ms["distractor_mean"][j],
               relative_noise_robustness=ms["relative"][j])  # fmt: skip
    return out
