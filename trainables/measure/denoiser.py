"""The denoiser network D(x, sigma, y=None): EDM preconditioning around a mixture-of-Gaussians
baseline and a small MLP or conv net (docs/method.md, "Score"). Trained by
`trainables.measure.denoiser_training`, read as a score by `trainables.measure.score`."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from trainables.measure.mixture import MixtureParams, fit_mixture, posterior_mean


def _sigma_vector(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Noise level as a `(B,)` tensor on x's device and dtype."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.expand(x.shape[0]) if s.ndim == 0 else s.reshape(x.shape[0])


class _MLPBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin1, self.lin2 = nn.Linear(width, width), nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return h + self.lin2(F.silu(self.lin1(F.silu(self.norm(h))) + self.emb(e)))


class _MLPNet(nn.Module):
    """F(x `(B, C, H, W)`, emb `(B, E)`) -> `(B, C, H, W)` through flattened residual blocks."""

    def __init__(self, shape: tuple[int, int, int], width: int, depth: int, emb_dim: int):
        super().__init__()
        d = math.prod(shape)
        self.inp, self.out = nn.Linear(d, width), nn.Linear(width, d)
        self.blocks = nn.ModuleList(_MLPBlock(width, emb_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        nn.init.zeros_(self.out.weight)  # start as the baseline denoiser (Denoiser docstring)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, e)
        return self.out(F.silu(self.norm(h))).view_as(x)


class _ConvBlock(nn.Module):
    def __init__(self, ch_in: int, ch: int, emb_dim: int):
        super().__init__()
        self.n1, self.n2 = nn.GroupNorm(min(8, ch_in), ch_in), nn.GroupNorm(min(8, ch), ch)
        self.c1, self.c2 = nn.Conv2d(ch_in, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, ch)
        self.skip = nn.Conv2d(ch_in, ch, 1) if ch_in != ch else nn.Identity()

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        r = self.c1(F.silu(self.n1(h))) + self.emb(e)[:, :, None, None]
        return self.skip(h) + self.c2(F.silu(self.n2(r)))


class _UNet(nn.Module):
    """A two-level conv U-Net: full resolution (width ch) and half resolution (width 2 ch)."""

    def __init__(self, shape: tuple[int, int, int], width: int, depth: int, emb_dim: int):
        super().__init__()
        c = shape[0]
        self.inp = nn.Conv2d(c, width, 3, padding=1)
        self.enc = _ConvBlock(width, width, emb_dim)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.ModuleList(_ConvBlock(2 * width, 2 * width, emb_dim) for _ in range(depth))
        self.up = nn.Conv2d(2 * width, width, 3, padding=1)
        self.dec = _ConvBlock(2 * width, width, emb_dim)
        self.out = nn.Sequential(
            nn.GroupNorm(min(8, width), width), nn.SiLU(), nn.Conv2d(width, c, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)  # start as the baseline denoiser
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        skip = self.enc(self.inp(x), e)
        h = self.down(skip)
        for block in self.mid:
            h = block(h, e)
        # Interpolating to the skip's size handles odd heights/widths (e.g. 28x14 -> 14x7).
        h = self.up(F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
        return self.out(self.dec(torch.cat([h, skip], dim=1), e))


class Denoiser(nn.Module):
    """D(x, sigma, y=None) -> E[x_clean | x], images `(B, C, H, W)`, sigma float or `(B,)`.

    D = G(x; sigma, y) + c_out(sigma) F(c_in(sigma) (x - mean), emb(sigma, y)), with EDM's c_out,
    c_in (Karras et al. 2022, table 1) and G the exact denoiser of a mixture of local low-rank
    Gaussians fitted to the data (`trainables.measure.mixture`; per class for a conditional
    denoiser). Why G rather than EDM's c_skip x: G is closed-form at every input, so it answers
    sensibly where the noisy training never goes, above all at *clean* images, where alignment
    is measured; the net (zero-initialized output) learns only what the mixture misses.
    `baseline="none"` gives plain EDM c_skip x.
    With `num_classes > 0` labels `y` `(B,)` are embedded one-hot; `y=None` selects an extra
    "no label" slot trained by label dropout, so the same net is also an unconditional denoiser.
    `components` and `rank` size the mixture's buffers (`fit_data` sets them; a saved
    denoiser is rebuilt with the sizes it was fitted with).
    """

    def __init__(
        self,
        shape,
        arch="mlp",
        width=512,
        depth=3,
        num_classes=0,
        emb_dim=128,
        baseline="mixture",
        components=1,
        rank=1,
    ):
        super().__init__()
        self.shape, self.arch, self.num_classes = tuple(shape), arch, num_classes
        self.baseline = baseline
        d = math.prod(self.shape)
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("sigma_data", torch.tensor(0.5))
        self._register_mixture(MixtureParams(
            means=torch.zeros(components, d), bases=torch.zeros(components, d, rank),
            variances=torch.ones(components, rank), rest=torch.ones(components),
            log_weights=torch.zeros(components), classes=torch.zeros(components, dtype=torch.long),
        ))  # fmt: skip
        self.register_buffer("freqs", math.pi * torch.arange(1, 9, dtype=torch.float32))
        self.sigma_emb = nn.Sequential(
            nn.Linear(17, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_emb = nn.Linear(num_classes + 1, emb_dim, bias=False) if num_classes else None
        net = {"mlp": _MLPNet, "unet": _UNet}[arch]
        self.net = net(self.shape, width, depth, emb_dim)

    def _register_mixture(self, p: MixtureParams) -> None:
        for field in dataclasses.fields(MixtureParams):
            self.register_buffer(f"mix_{field.name}", getattr(p, field.name))

    @property
    def mixture(self) -> MixtureParams:
        return MixtureParams(**{
            f.name: getattr(self, f"mix_{f.name}") for f in dataclasses.fields(MixtureParams)
        })  # fmt: skip

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @torch.no_grad()
    def fit_data(self, x: torch.Tensor, y: torch.Tensor | None, sigma: float, seed: int
                 ) -> list[tuple[int, int]]:  # fmt: skip
        """Set mean, sigma_data and the mixture from training images x `(N, C, H, W)` (labels
        y `(N,)` for a conditional denoiser), the mixture chosen for noise level sigma.
        Returns the mixture's (components, rank) per class."""
        self.mean.copy_(x.mean(0))
        self.sigma_data.fill_((x - x.mean(0)).std().item())
        if self.baseline != "mixture":
            return []
        params, chosen = fit_mixture(x, y if self.conditional else None, self.num_classes,
                                     sigma, seed)  # fmt: skip
        self._register_mixture(params)  # on x's device, like the rest of the net
        return chosen

    def forward(self, x: torch.Tensor, sigma, y: torch.Tensor | None = None) -> torch.Tensor:
        s = _sigma_vector(sigma, x)
        sd = self.sigma_data
        c_noise = (s.log() / 4)[:, None]
        e = self.sigma_emb(
            torch.cat([c_noise, (c_noise * self.freqs).sin(), (c_noise * self.freqs).cos()], 1)
        )
        mix_y = None
        if self.label_emb is not None:
            idx = torch.full_like(s, self.num_classes, dtype=torch.long) if y is None else y.long()
            e = e + self.label_emb(F.one_hot(idx, self.num_classes + 1).to(x.dtype))
            mix_y = torch.where(idx == self.num_classes, -1, idx)  # dropped label: all classes
        elif y is not None:
            raise ValueError("this denoiser is unconditional: train it with labels to use y")
        s4 = s[:, None, None, None]
        c_out = s4 * sd / (s4**2 + sd**2).sqrt()
        c_in = 1 / (s4**2 + sd**2).sqrt()
        xc = x - self.mean
        if self.baseline == "mixture":
            base = posterior_mean(self.mixture, x.flatten(1), s, mix_y).view_as(x)
        else:
            base = self.mean + sd**2 / (s4**2 + sd**2) * xc
        return base + c_out * self.net(c_in * xc, e)
