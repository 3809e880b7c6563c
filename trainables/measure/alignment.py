"""Perceptual alignment of gradient maps with scores, and its references (METHOD.md, 4.2).

alignment(g, s) = 1 - LPIPS(scale(g), scale(s)) per image, with both maps scaled by their max
|value| into [-1, 1] (LPIPS's input range). Metrics, named in every result row:
- "lpips-alex": `lpips.LPIPS(net="alex")` as in the paper; needs torchvision's AlexNet trunk in the
  torch hub cache (`lpips_trunk_path()`), which this machine cannot download -- we never try.
- "stlpips-alex": stlpips-pytorch's shift-tolerant AlexNet; its wheel ships the complete weights
  (trunk and linear heads) and builds the trunk without torchvision, so it works offline.
LPIPS needs 3 channels and enough pixels for AlexNet's strides: grey maps are replicated to
3 channels and maps are bilinearly upsampled by an integer factor so the short side is >= 64.
Report alignment beside null references (`null_maps`: Gaussian noise, the centered input) and,
on the synthetic set, beside `subspace_energy` and `bayes_cosine` (PROTOTYPE-NOTES).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MIN_SIDE = 64


def scale_maxabs(m: torch.Tensor) -> torch.Tensor:
    """Each map of m `(B, ...)` divided by its max |value|, into [-1, 1]; all-zero maps stay 0."""
    peak = m.flatten(1).abs().amax(1).clamp_min(torch.finfo(m.dtype).tiny)
    return m / peak.view(-1, *[1] * (m.ndim - 1))


def to_lpips_input(m: torch.Tensor) -> torch.Tensor:
    """Maps `(B, C, H, W)` (C = 1 or 3) -> `(B, 3, H', W')` with min(H', W') >= MIN_SIDE."""
    if m.shape[1] == 1:
        m = m.expand(-1, 3, -1, -1)
    elif m.shape[1] != 3:
        raise ValueError(f"LPIPS needs 1 or 3 channels, got {m.shape[1]}")
    factor = math.ceil(MIN_SIDE / min(m.shape[-2:]))
    if factor > 1:
        m = F.interpolate(m, scale_factor=factor, mode="bilinear", align_corners=False)
    return m


def lpips_trunk_path() -> Path:
    """Where torchvision keeps AlexNet's ImageNet weights: <torch hub dir>/checkpoints/<file>."""
    from torchvision.models import AlexNet_Weights

    name = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


class PerceptualMetric:
    """Batched LPIPS-type distance: `__call__(a, b)` on maps `(B, C, H, W)` in [-1, 1] -> `(B,)`."""

    def __init__(self, name: str, net: nn.Module, batch_size: int = 64):
        self.name, self.net, self.batch_size = name, net.eval(), batch_size
        for p in self.net.parameters():
            p.requires_grad_(False)

    def to(self, device) -> PerceptualMetric:
        self.net.to(device)
        return self

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(a), self.batch_size):
            ai = to_lpips_input(a[i : i + self.batch_size].to(device, torch.float32))
            bi = to_lpips_input(b[i : i + self.batch_size].to(device, torch.float32))
            out.append(self.net(ai, bi).flatten())
        return torch.cat(out).to(a.device) if out else a.new_zeros(0)


def _quiet(fn, *args, **kw):
    # Both packages print set-up banners and lpips calls torchvision's deprecated `pretrained=`
    # argument; keep sweep logs clean.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        return fn(*args, **kw)


def _build_lpips() -> PerceptualMetric:
    path = lpips_trunk_path()
    if not path.is_file():
        raise ValueError(
            f"metric 'lpips' needs torchvision's AlexNet weights at {path} (cannot be downloaded"
            f" here); copy {path.name} there or use metric 'stlpips'"
        )
    import lpips

    # pnet_rand=True builds the trunk without torchvision's download path; we load the cached
    # file ourselves (strictly), then lpips's own linear heads come from its wheel.
    net = _quiet(lpips.LPIPS, net="alex", pnet_rand=True, verbose=False)
    trunk = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key in net.net.state_dict():
        _, idx, param = key.split(".")  # "slice1.0.weight" <- "features.0.weight"
        mapped[key] = trunk[f"features.{idx}.{param}"]
    net.net.load_state_dict(mapped, strict=True)
    return PerceptualMetric("lpips-alex", net)


def _build_stlpips() -> PerceptualMetric:
    from stlpips_pytorch import stlpips

    # pretrained=False: build, then load the shipped file ourselves and check every weight is in
    # it (the package loads with strict=False, which would hide a partial load).
    net = _quiet(
        stlpips.LPIPS, pretrained=False, net="alex", variant="shift_tolerant", verbose=False
    )
    path = Path(stlpips.__file__).parent / "weights" / "vST0.0" / "alex_shift_tolerant.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    # lins.* are aliases of lin0..lin4 (a ModuleList over the same layers), saved once.
    missing = [k for k in missing if not k.startswith("lins.")]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match ST-LPIPS: missing {missing}, unexpected {unexpected}"
        )
    return PerceptualMetric("stlpips-alex", net)


def build_metric(kind: str = "auto", device: str | torch.device = "cpu") -> PerceptualMetric:
    """ "lpips" (paper; needs cached AlexNet weights), "stlpips" (offline), or "auto" (lpips if
    its weights are present, else stlpips). Never touches the network."""
    if kind == "auto":
        kind = "lpips" if lpips_trunk_path().is_file() else "stlpips"
    builders = {"lpips": _build_lpips, "stlpips": _build_stlpips}
    if kind not in builders:
        raise ValueError(f"unknown metric {kind!r}; known: auto, lpips, stlpips")
    return builders[kind]().to(device)


def alignment(g: torch.Tensor, s: torch.Tensor, metric: PerceptualMetric) -> torch.Tensor:
    """1 - LPIPS(scale(g), scale(s)) per image, `(B,)`, for maps `(B, C, H, W)`; higher = closer."""
    return 1 - metric(scale_maxabs(g), scale_maxabs(s))


def cosine(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Pixel-space cosine similarity per image, `(B,)`; 0 when either map is all zero."""
    return F.cosine_similarity(g.flatten(1).double(), s.flatten(1).double(), dim=1, eps=1e-30).to(
        g.dtype
    )


def null_maps(x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Trivial maps `(B, C, H, W)` to score like gradients: "noise" N(0, I) and "input" = x minus
    its per-image mean (a gradient that merely copies the image should not count as aligned)."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    centered = x - x.flatten(1).mean(1).view(-1, *[1] * (x.ndim - 1))
    return {"noise": noise, "input": centered}


def subspace_energy(
    g: torch.Tensor, A: torch.Tensor, B_basis: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Fractions of ||g||^2 in span[A], span[B] and off both, each `(B,)`, summing to 1.

    g is `(B, d)` or `(B, C, H, W)`; A `(d, k_a)`, B_basis `(d, k_b)`. The columns are
    orthonormalized here; the split is exact when span[A] is orthogonal to span[B] (the synthetic
    set: signal and distractor halves), and "off" is the rest. All-zero maps give NaN.
    """
    gf = g.reshape(g.shape[0], -1).double()
    qa = torch.linalg.qr(A.to(gf.device, torch.float64))[0]
    qb = torch.linalg.qr(B_basis.to(gf.device, torch.float64))[0]
    total = gf.pow(2).sum(1)
    sig = (gf @ qa).pow(2).sum(1) / total
    dis = (gf @ qb).pow(2).sum(1) / total
    return {"signal": sig, "distractor": dis, "off": 1 - sig - dis}


def bayes_cosine(g: torch.Tensor, bayes_grad: torch.Tensor) -> torch.Tensor:
    """Cosine `(B,)` between gradient maps and the Bayes-optimal classifier's gradient."""
    return cosine(g, bayes_grad.to(g.device, g.dtype))
