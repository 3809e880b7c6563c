"""How close two estimates of the tangent spaces are (docs/method.md, "Tangent estimators").

Two figures per point, for orthonormal bases Q1 `(d, k1)` and Q2 `(d, k2)`:
  - the projection overlap tr(P1 P2) / k = ||Q1^T Q2||_F^2 / k with k = max(k1, k2): the mean
    squared cosine of the principal angles. 1 = the same space, 0 = orthogonal spaces, and two
    independent random k-dimensional subspaces of R^d average k / d. It does not saturate: two
    16-dimensional spaces sharing 15 directions (the 16th at 90 degrees) read 15/16, two
    unrelated ones near 16 / d.
  - the principal-angle spectrum: its mean, median and largest angle (degrees). The largest
    angle is the strictest figure but saturates: one disagreeing direction sends it to 90.
Every function broadcasts over leading (batch) dimensions and never forms a d x d projector.
"""

from __future__ import annotations

import torch

from trainables.measure.tangent import principal_angles

# The agreement figures, in the order tables show them (overlap leads; see the module docstring).
AGREEMENT_KEYS = ("overlap", "mean_angle_deg", "median_angle_deg", "largest_angle_deg")


def projection_overlap(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """tr(P1 P2) / max(k1, k2) per point, `(...)`, for orthonormal q1 `(..., d, k1)` and
    q2 `(..., d, k2)`. Computed in float64 (the bases may be float32)."""
    c = q1.to(torch.float64).transpose(-1, -2) @ q2.to(torch.float64)  # (..., k1, k2) cosines
    return c.pow(2).sum((-1, -2)) / max(q1.shape[-1], q2.shape[-1])


def captured_share(estimate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """tr(P_estimate P_exact) / k_exact per point: the share of the exact space the estimate
    captures (1 = contains it; k_estimate / d for a random estimate). Equals
    `projection_overlap` when both dimensions agree; differs where the latent size is larger
    than the exact dimension (synthetic-shapes: 4 exact, a latent of 128 may contain them)."""
    c = estimate.to(torch.float64).transpose(-1, -2) @ exact.to(torch.float64)
    return c.pow(2).sum((-1, -2)) / exact.shape[-1]


def angle_spectrum(q1: torch.Tensor, q2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per point `(...)`: mean, median and largest principal angle in degrees (float64).
    Different k: the min(k1, k2) angles of the smaller space against the larger."""
    a = principal_angles(q1.to(torch.float64), q2.to(torch.float64))  # ascending
    return {
        "mean_angle_deg": a.mean(-1),
        "median_angle_deg": a.quantile(0.5, dim=-1),
        "largest_angle_deg": a[..., -1],
    }


def agreement(q1: torch.Tensor, q2: torch.Tensor, chunk: int = 256) -> dict[str, float]:
    """The figures of AGREEMENT_KEYS as means over the points of q1, q2 `(B, d, k)`.
    `chunk` points at a time, so large bases (CIFAR: d = 3072, k = 128) stay in memory."""
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in AGREEMENT_KEYS}
    for start in range(0, len(q1), chunk):
        a, b = q1[start : start + chunk], q2[start : start + chunk]
        parts["overlap"].append(projection_overlap(a, b))
        for key, v in angle_spectrum(a, b).items():
            parts[key].append(v)
    return {key: float(torch.cat(v).mean()) for key, v in parts.items()}


def random_overlap(d: int, k: int) -> float:
    """Expected overlap of two independent uniformly random k-dimensional subspaces of R^d."""
    return k / d
