"""Tangent spaces of the data manifold from an autoencoder's decoder (docs/method.md,
"Tangent spaces"; paper appendix B.6): the tangent space at x is the column span of the decoder
Jacobian `J = d dec(z) / dz` (d x k) at `z = enc(x)`, with an orthonormal basis Q from a QR of J.

The reference code builds J with one backward pass per output pixel (d passes per image) and
orthonormalizes with an SVD per image. Here J comes from forward-mode AD, k JVPs batched by
`vmap` over both the tangent directions and the images, so its cost is close to k decoder
forward passes per image; `tangent_basis_reference` keeps the per-pixel method for tests and
benchmarks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.func import jacfwd, vmap

Decode = Callable[[torch.Tensor], torch.Tensor]  # (B, k) -> (B, C, H, W)


def tangent_bases(decode: Decode, z: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
    """Orthonormal tangent bases Q `(B, d, k)` at latents z `(B, k)`; d = C*H*W.

    `decode` maps `(B, k) -> (B, C, H, W)` (an eval-mode module, no dropout or batch statistics:
    vmap feeds it one latent at a time). `chunk_size` latents are processed at once: the
    transient memory is about chunk_size * k times the decoder's activations for one image
    (measured for the CIFAR decoder, k = 128: ~55 MiB per image of the chunk) plus J for the
    chunk. The result, B * d * k floats (1.5 GiB for 1,000 CIFAR images at k = 128), lives on
    z's device. Columns of Q follow QR's sign convention; only span(Q) (the projector QQ^T) is
    meaningful.
    """

    def flat_decode(zi: torch.Tensor) -> torch.Tensor:  # (k,) -> (d,)
        return decode(zi.unsqueeze(0)).reshape(-1)

    jacobian = vmap(jacfwd(flat_decode))  # (b, k) -> (b, d, k)
    b, k = z.shape
    out = None
    # no_grad: forward-mode AD needs no autograd graph through the decoder's parameters.
    # torch's first forward-AD call scripts its JVP decompositions with the deprecated
    # torch.jit.script and warns once per process; that warning is torch's, not ours.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        for start in range(0, b, chunk_size):
            q, _ = torch.linalg.qr(jacobian(z[start : start + chunk_size]), mode="reduced")
            if out is None:
                out = q.new_empty(b, q.shape[1], k)
            out[start : start + len(q)] = q
    return out


def split_on_off(q: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split u into its tangent part `u_on = Q Q^T u` and the rest `u_off = u - u_on`.

    q: `(B, d, k)` orthonormal columns; u: `(B, d)` or `(B, n, d)` (n vectors per point).
    Returns two tensors shaped like u. Costs O(B n d k), never forms the d x d projector.
    """
    squeeze = u.dim() == 2
    v = u.unsqueeze(1) if squeeze else u  # (B, n, d)
    u_on = (v @ q) @ q.transpose(1, 2)  # (B, n, k) coefficients, mapped back to (B, n, d)
    if squeeze:
        u_on = u_on.squeeze(1)
    return u_on, u - u_on


def jacobian_reference(
    decode: Decode, z_i: torch.Tensor, pixels: int | None = None
) -> torch.Tensor:
    """The reference code's decoder Jacobian at one latent z_i `(k,)`: one backward pass per
    output pixel. Returns J `(d, k)`, or its first `pixels` rows (benchmarks time a part and
    scale: every pass costs the same). Slow; for tests and benchmarks only."""
    z = z_i.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = decode(z.unsqueeze(0)).reshape(-1)
        rows = out.numel() if pixels is None else pixels
        # out[i], as the reference does: iterating `for o in out` would unbind all d outputs,
        # and every backward pass would then stack d zero gradients (3x slower at d = 3072).
        return torch.stack(
            [torch.autograd.grad(out[i], z, retain_graph=True)[0] for i in range(rows)]
        )


def tangent_basis_reference(decode: Decode, z_i: torch.Tensor) -> torch.Tensor:
    """The reference code's tangent basis at one latent z_i `(k,)`: J from d backward passes
    (`jacobian_reference`), then an SVD keeping the left singular vectors above
    scipy.linalg.orth's rank cut-off. Returns Q `(d, r)`, r = rank(J) <= k."""
    return orth_svd(jacobian_reference(decode, z_i))


def orth_svd(jac: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis `(d, r)` of the column span of `jac (d, k)`, as scipy.linalg.orth."""
    u, s, _ = torch.linalg.svd(jac, full_matrices=False)
    tol = max(jac.shape) * torch.finfo(s.dtype).eps * s.max()
    return u[:, : int((s > tol).sum())]


def principal_angles(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Principal angles in degrees between span(q1) and span(q2), ascending.

    q1: `(..., d, k1)`, q2: `(..., d, k2)`, both orthonormal (broadcast over leading dims).
    Returns `(..., min(k1, k2))`; the last entry is the largest angle, the one that says how far
    apart the subspaces are (two subspaces that share all but one direction have every other
    angle at 0). svdvals returns the cosines in descending order, so the angles come ascending.
    """
    cos = torch.linalg.svdvals(q1.transpose(-1, -2) @ q2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def largest_principal_angle(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """The largest principal angle in degrees between span(q1) and span(q2), `(...)`."""
    return principal_angles(q1, q2)[..., -1]
