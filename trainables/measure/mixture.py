"""A mixture of local low-rank Gaussians fitted to images: the denoiser's baseline
(docs/method.md, "Score").

Each class's images (all images, for an unconditional fit) are split into K groups by k-means;
each group is a Gaussian with its own mean, its top r principal directions and one isotropic
variance beyond them. K and r are chosen per class by the log-likelihood of held-out images,
so a flat data set gets one wide Gaussian and a curved one many local ones. Smoothing the
mixture with N(0, sigma^2 I) keeps it a mixture, so its posterior mean E[x0 | x] (a Wiener
filter per component, weighted by the component's responsibility) and hence its score are
closed-form at every point, clean or noisy.

`fit_mixture` returns the fitted tensors; `MixtureParams` is their layout, which the denoiser
keeps as buffers (rank padded to the largest r chosen: a zero column with variance equal to
the isotropic one changes nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

COMPONENTS = (1, 2, 4, 8, 16, 32, 64)  # K tried per class
RANKS = (1, 2, 4, 8, 16, 32, 64)  # r tried per class (capped by the points per component)
FOLDS = 5  # cross-validation folds that score the candidates
# Candidates are scored on at most this many images per class, so that choosing stays cheap
# on large sets (a CIFAR-sized class: ~5 min on 2 CPU cores with all 4,500 images); the
# chosen mixture is then fitted to all of them.
SELECT_POINTS = 1000
KMEANS_ITERS = 30
VAR_FLOOR = 1e-6  # pixels in [0, 1]: far below any noise level a score is read at
# Above this many classes one mixture serves all of them (ImageNet's 1000 classes x 64
# components x d x r would not fit in memory); conditional queries then read all components.
MAX_CLASSES = 100


@dataclass
class MixtureParams:
    """M components in d pixels, rank R: means `(M, d)`, bases `(M, d, R)` orthonormal
    columns (zero where padded), variances `(M, R)` along them, rest `(M,)` isotropic variance
    off them, log_weights `(M,)` (log p(component), summing to 1 over all components) and
    classes `(M,)` (the class a component belongs to, -1 for an unconditional fit)."""

    means: torch.Tensor
    bases: torch.Tensor
    variances: torch.Tensor
    rest: torch.Tensor
    log_weights: torch.Tensor
    classes: torch.Tensor


_FLOAT_FIELDS = ("means", "bases", "variances", "rest", "log_weights")


def _kmeans(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Cluster index `(N,)` of each row of x `(N, d)`: Lloyd's iterations from k-means++ seeds."""
    centres = x[torch.randint(len(x), (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(1).values.pow(2)
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)  # all points equal: any will do
        centres = torch.cat([centres, x[torch.multinomial(weights, 1, generator=gen)]])
    for _ in range(KMEANS_ITERS):
        assign = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    return torch.cdist(x, centres).argmin(1)


# (share of the images, mean `(d,)`, principal directions `(d, n)`, variances `(n,)`)
Group = tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]
# (weight, mean `(d,)`, basis `(d, r)`, variances `(r,)`, isotropic variance off the basis)
Component = tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, float]


def _groups(x: torch.Tensor, k: int, gen: torch.Generator) -> list[Group]:
    """Per k-means group: (share of x, mean `(d,)`, principal directions `(d, n)`, variances
    `(n,)`), from one SVD per group that every rank then reads."""
    assign = _kmeans(x, k, gen) if k > 1 else torch.zeros(len(x), dtype=torch.long)
    out = []
    for j in range(k):
        z = x[assign == j]
        if len(z) < 3:
            continue  # too few points to say anything about a spread
        mean = z.mean(0)
        _, sv, vh = torch.linalg.svd(z - mean, full_matrices=False)
        out.append((len(z) / len(x), mean, vh.T, sv.pow(2) / (len(z) - 1)))
    return out


def _components(groups: list[Group], rank: int, d: int) -> list[Component]:
    """(weight, mean, basis `(d, r)`, variances `(r,)`, rest) per group at rank r: the top r
    directions keep their variances, the rest share the remaining variance evenly."""
    comps = []
    for share, mean, vecs, var in groups:
        r = min(rank, len(var))
        rest = float(var[r:].sum()) / max(d - r, 1)
        comps.append((share, mean, vecs[:, :r], var[:r].clamp_min(VAR_FLOOR), max(rest, VAR_FLOOR)))
    total = sum(c[0] for c in comps)
    return [(w / total, *rest) for w, *rest in comps]


def _pack(comps: list[Component], classes: list[int]) -> MixtureParams:
    """The components as one MixtureParams, ranks padded to the largest (same dtype/device)."""
    d, rank = comps[0][1].shape[0], max(len(var) for _, _, _, var, _ in comps)
    like = comps[0][1]
    bases = like.new_zeros(len(comps), d, rank)
    variances = like.new_zeros(len(comps), rank)
    for m, (_, _, basis, var, rest) in enumerate(comps):
        bases[m, :, : basis.shape[1]] = basis
        variances[m] = rest  # padded columns: zero direction, the isotropic variance
        variances[m, : len(var)] = var
    return MixtureParams(
        means=torch.stack([c[1] for c in comps]),
        bases=bases,
        variances=variances,
        rest=like.new_tensor([c[4] for c in comps]),
        log_weights=like.new_tensor([math.log(c[0]) for c in comps]),
        classes=torch.tensor(classes, device=like.device),
    )


def _smoothed_terms(p: MixtureParams, x: torch.Tensor, s2: torch.Tensor):
    """For points x `(B, d)` and the mixture smoothed by noise variance s2 `(B, 1)`: the
    projections c = V^T (x - mu) `(B, M, R)` (padded columns give 0), the variances along V
    `(B, M, R)` and off it `(B, M)`, and log w_m + log N(x; mu_m, Sigma_m + s2 I) `(B, M)`
    without the constant -d/2 log(2 pi)."""
    d, rank = x.shape[1], p.variances.shape[1]
    c = torch.einsum("bd,mdr->bmr", x, p.bases) - torch.einsum("md,mdr->mr", p.means, p.bases)
    dist2 = x.pow(2).sum(1, keepdim=True) - 2 * x @ p.means.T + p.means.pow(2).sum(1)
    off2 = (dist2 - c.pow(2).sum(2)).clamp_min(0)  # |x - mu|^2 off the basis, (B, M)
    v = p.variances[None] + s2[:, :, None]
    rv = p.rest[None] + s2
    quad = (c.pow(2) / v).sum(2) + off2 / rv
    log_joint = p.log_weights - 0.5 * (quad + v.log().sum(2) + (d - rank) * rv.log())
    return c, v, rv, log_joint


def _select(x: torch.Tensor, gen: torch.Generator, sigma: float) -> tuple[int, int]:
    """(K, r) whose mixture, smoothed by sigma, gives held-out images of x `(N, d)` plus
    N(0, sigma^2 I) noise the highest log-likelihood, summed over FOLDS splits of at most
    SELECT_POINTS images. Read at sigma because the sigma-smoothed density is the one whose
    score is measured: scored on clean images instead, the choice followed the data's thin
    spread off the manifold (2 components of rank 16 per class on the curved set, whose
    score then came out 1.23x too long)."""
    order = torch.randperm(len(x), generator=gen)[:SELECT_POINTS]
    folds = order.chunk(FOLDS)
    totals: dict[tuple[int, int], list[float]] = {}
    for i, val_idx in enumerate(folds):
        fit = x[torch.cat([f for j, f in enumerate(folds) if j != i])]
        val = x[val_idx] + sigma * torch.randn(x[val_idx].shape, generator=gen, dtype=x.dtype)
        s2 = val.new_full((len(val), 1), sigma**2)
        for k in COMPONENTS:
            if len(fit) < 4 * k:
                break
            groups = _groups(fit, k, gen)
            for r in RANKS:
                if r >= len(fit) / k:  # fewer points per group than directions
                    break
                comps = _components(groups, r, x.shape[1])
                *_, log_joint = _smoothed_terms(_pack(comps, [-1] * len(comps)), val, s2)
                ll = float(torch.logsumexp(log_joint, 1).sum())
                totals.setdefault((k, r), []).append(ll)
    complete = {kr: sum(v) for kr, v in totals.items() if len(v) == len(folds)}
    return max(complete, key=complete.get) if complete else (1, 1)


def fit_mixture(
    x: torch.Tensor, y: torch.Tensor | None, num_classes: int, sigma: float, seed: int
) -> tuple[MixtureParams, list[tuple[int, int]]]:
    """Fit images x `(N, C, H, W)`, per class when labels y `(N,)` are given and
    0 < num_classes <= MAX_CLASSES, choosing K and r for the score at noise level sigma
    (`_select`). Returns the parameters and the chosen (K, r) per class (one
    entry if unconditional). Computed in float64 on the CPU (deterministic whatever the
    device); the parameters come back in float32 on x's device."""
    flat = x.detach().cpu().flatten(1).double()
    d = flat.shape[1]
    gen = torch.Generator().manual_seed(seed)
    per_class = y is not None and 0 < num_classes <= MAX_CLASSES
    parts = [(c, flat[y.cpu() == c]) for c in range(num_classes)] if per_class else [(-1, flat)]
    parts = [(c, xc) for c, xc in parts if len(xc) > 0]
    comps, classes, chosen = [], [], []
    for c, xc in parts:
        k, r = _select(xc, gen, sigma)
        chosen.append((k, r))
        share = len(xc) / len(flat)
        for w, *rest in _components(_groups(xc, k, gen), r, d):
            comps.append((w * share, *rest))
            classes.append(c)
    params = _pack(comps, classes)
    as_x = {f: getattr(params, f).to(x.device, torch.float32) for f in _FLOAT_FIELDS}
    return MixtureParams(**as_x, classes=params.classes.to(x.device)), chosen


def posterior_mean(
    p: MixtureParams, x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor | None = None
) -> torch.Tensor:
    """E[x0 | x] for x `(B, d)` under the mixture smoothed by N(0, sigma^2 I), sigma `(B,)`;
    with labels y `(B,)` only that class's components where the fit is per class (a label
    of -1 reads all of them: the unconditional density).

    Per component m: mu + V diag(lam / (lam + s^2)) V^T (x - mu) + rest / (rest + s^2) times
    the part of x - mu off V, weighted by its responsibility. Works on all components at once
    through the projections c = V^T (x - mu) `(B, M, R)`; padded columns give c = 0."""
    c, v, rv, log_r = _smoothed_terms(p, x, sigma.pow(2)[:, None])
    if y is not None and bool((p.classes >= 0).all()):  # a per-class fit
        other = (p.classes[None] != y[:, None]) & (y[:, None] >= 0)
        log_r = log_r.masked_fill(other, -math.inf)
    resp = torch.softmax(log_r, dim=1)  # (B, M)
    keep = p.rest[None] / rv  # (B, M): shrinkage off the basis
    # sum_m r_m [mu_m + keep_m (x - mu_m) + V_m ((lam/(lam+s^2) - keep_m) c_m)]
    out = (resp * keep).sum(1, keepdim=True) * x + (resp * (1 - keep)) @ p.means
    coef = resp[:, :, None] * (p.variances[None] / v - keep[:, :, None]) * c
    return out + torch.einsum("bmr,mdr->bd", coef, p.bases)
