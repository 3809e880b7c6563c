"""Tangent-space estimators beside the autoencoder's (docs/method.md, "Tangent estimators").

Every estimate is an orthonormal basis `(B, d, k)` per evaluation point, named once here
(ESTIMATORS) and kept in the artifacts under that name:
  - "ae", "ae-seed1": the decoder Jacobian's span of two autoencoders trained with different
    seeds (tangent.py, autoencoder.py);
  - "denoiser-jacobian": the top-k eigenvectors of the Jacobian of a denoiser D(x, sigma) =
    E[x0 | x] at small sigma. Tweedie: dD/dx = Cov[x0 | x] / sigma^2, and as sigma -> 0 the
    posterior spreads along the manifold only, so its top-k eigenvectors span the tangent space
    (eigenvalues near 1 there, near 0 across). The denoiser is a separate, unconditional one
    fitted at small noise (artifacts.py); the score's denoiser is fitted at the score sigma,
    where the posterior already spreads across the manifold's curvature.
  - "local-pca": the top-k principal directions of the nearest training points, the classical
    baseline;
  - "exact": the oracle's tangent spaces (synthetic sets only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.func import jvp, vmap

from analysis.results.tangents import (  # noqa: F401  (the names, defined once there)
    AE,
    AE_SEED1,
    DENOISER_JACOBIAN,
    ESTIMATORS,
    EXACT,
    HEADLINE,
    LOCAL_PCA,
)

# Neighbours: on synthetic-curved (largest angle) 16 -> 25 deg, 32 -> 15, 64 -> 12, 128 -> 13.
LOCAL_PCA_NEIGHBOURS = 64
SUBSPACE_ITERS = 6  # power iterations of the Jacobian (each k + OVERSAMPLE JVPs per point)
OVERSAMPLE = 8

Denoise = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) -> (B, C, H, W), at fixed sigma


def local_pca_bases(
    x_train: torch.Tensor, x: torch.Tensor, k: int, neighbours: int = LOCAL_PCA_NEIGHBOURS,
    chunk_size: int = 256,
) -> torch.Tensor:  # fmt: skip
    """Top-k principal directions `(B, d, k)` of each point's `neighbours` nearest training
    points (Euclidean; centred on their own mean), float32."""
    train = x_train.flatten(1).to(torch.float32)
    out = []
    for start in range(0, len(x), chunk_size):
        xs = x[start : start + chunk_size].flatten(1).to(torch.float32)
        idx = torch.cdist(xs, train).topk(neighbours, largest=False).indices  # (b, m)
        nb = train[idx]
        nb = nb - nb.mean(1, keepdim=True)
        _, _, vh = torch.linalg.svd(nb, full_matrices=False)  # rows: principal directions
        out.append(vh[:, :k].transpose(1, 2).contiguous())
    return torch.cat(out)


def jacobian_top_eigenvectors(
    denoise: Denoise, x: torch.Tensor, k: int, generator: torch.Generator,
    iters: int = SUBSPACE_ITERS, chunk_size: int = 16, top: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Orthonormal bases `(B, d, k)` of the top-k eigenvectors of J = d denoise / dx at each
    point of x `(B, C, H, W)`, and the k + 1 largest eigenvalue estimates `(B, k + 1)` (the
    gap between the k-th and the (k+1)-th says whether k fits).

    Never forms J: subspace iteration with k + OVERSAMPLE directions, each step one batched
    forward-mode JVP per direction (vmap over directions and points, like
    tangent.tangent_bases), then Rayleigh-Ritz on the symmetrized J restricted to the subspace.
    `top=False` takes the bottom-k Ritz vectors instead (a deliberately wrong estimator, tests).
    """
    shape = x.shape[1:]
    d = x[0].numel()
    m = min(d, k + OVERSAMPLE)

    def flat(xi: torch.Tensor) -> torch.Tensor:  # (d,) -> (d,)
        return denoise(xi.view(1, *shape)).reshape(-1)

    def apply_j(xi: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:  # (d,), (m, d) -> (m, d)
        return vmap(lambda v: jvp(flat, (xi,), (v,))[1])(vs)

    batched = vmap(apply_j)
    bases, values = [], []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        for start in range(0, len(x), chunk_size):
            xs = x[start : start + chunk_size].reshape(-1, d)
            v = torch.randn(len(xs), d, m, generator=generator, dtype=xs.dtype)
            q = torch.linalg.qr(v).Q
            for _ in range(iters):
                jq = batched(xs, q.transpose(1, 2)).transpose(1, 2)  # (b, d, m)
                q = torch.linalg.qr(jq).Q
            jq = batched(xs, q.transpose(1, 2)).transpose(1, 2)
            t = q.transpose(1, 2) @ jq
            evals, evecs = torch.linalg.eigh((t + t.transpose(1, 2)).double() / 2)  # ascending
            order = evals.flip(-1)
            pick = evecs.flip(-1)[..., :k] if top else evecs[..., :k]
            bases.append((q.double() @ pick).to(xs.dtype))
            values.append(order[:, : k + 1].float())
    return torch.cat(bases), torch.cat(values)
