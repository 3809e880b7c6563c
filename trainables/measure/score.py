"""Scores of the noise-smoothed data distribution, behind one interface (docs/method.md, "Score").

Every estimate is a `ScoreFn`: an object with `.name` (recorded with every result row), a
`.conditional` flag and `__call__(x, y=None)` mapping images `(B, C, H, W)` in [0, 1] to
grad_x log p_sigma(x), or grad_x log p_sigma(x | y) when labels `y` `(B,)` are given, in the same
pixel units, `(B, C, H, W)`. p_sigma is the data distribution convolved with N(0, sigma^2 I).

Sources, by name:
- "dsm-mlp@0.25" / "dsm-unet@0.25": a small noise-conditional denoiser trained here by denoising
  score matching (`train_denoiser`; the artifacts train over sigma in [s/2, 2s] around the
  read-out s), read through EDM eq. 3: score = (D(x; sigma) - x) / sigma^2. Optionally
  class-conditional (label dropout gives the unconditional score from the same net).
- "edm-file@0.5": a user's EDM-style denoiser loaded from a file (`load_edm_denoiser`).
The tests check these against exact oracles that no trial uses (tests/score_oracles.py):
"kde@0.25", the score of the sigma-smoothed empirical distribution, and "exact@0.25", the
synthetic set's closed form.
Denoisers see clean inputs as out of distribution (they are trained on noisy ones): always
report which score
an alignment used.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

# For images in [0, 1]: the prototype's MLP denoiser agreed best with the exact smoothed score here.
DEFAULT_SCORE_SIGMA = 0.25
DEFAULT_SIGMA_RANGE = (0.05, 1.0)
# Flattened sizes up to this use the MLP (prototype: it beat a small conv net on small images).
MLP_MAX_DIM = 2048
_FORMAT = "pags-denoiser/1"


class ScoreFn(Protocol):
    name: str
    conditional: bool

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


def _sigma_vector(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Noise level as a `(B,)` tensor on x's device and dtype."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.expand(x.shape[0]) if s.ndim == 0 else s.reshape(x.shape[0])


# ---------------------------------------------------------------------------------------------
# Denoiser networks (EDM preconditioning around a small MLP or conv net)


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

    D = G(x; sigma) + c_out(sigma) F(c_in(sigma) (x - mean), emb(sigma, y)), with EDM's c_out, c_in
    (Karras et al. 2022, table 1) and G the exact denoiser of a Gaussian fit to the data (Wiener
    filter on the top `k` principal components, isotropic beyond). Why G rather than EDM's
    c_skip x: G is linear, so it extrapolates sensibly to inputs the noisy training never shows,
    above all *clean* images, where alignment is measured; the net (zero-initialized output)
    learns only the non-Gaussian correction. `baseline="none"` gives plain EDM c_skip x.
    With `num_classes > 0` labels `y` `(B,)` are embedded one-hot; `y=None` selects an extra
    "no label" slot trained by label dropout, so the same net is also an unconditional denoiser.
    """

    def __init__(
        self,
        shape,
        arch="mlp",
        width=512,
        depth=3,
        num_classes=0,
        emb_dim=128,
        baseline="gauss",
        k=0,
    ):
        super().__init__()
        self.shape, self.arch, self.num_classes = tuple(shape), arch, num_classes
        self.baseline = baseline
        d = math.prod(self.shape)
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("sigma_data", torch.tensor(0.5))
        self.register_buffer("pca_basis", torch.zeros(d, k))  # (d, k) orthonormal columns
        self.register_buffer("pca_var", torch.zeros(k))  # (k,) variance along each column
        self.register_buffer("rest_var", torch.tensor(0.0))  # mean variance off the top k
        self.register_buffer("freqs", math.pi * torch.arange(1, 9, dtype=torch.float32))
        self.sigma_emb = nn.Sequential(
            nn.Linear(17, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_emb = nn.Linear(num_classes + 1, emb_dim, bias=False) if num_classes else None
        net = {"mlp": _MLPNet, "unet": _UNet}[arch]
        self.net = net(self.shape, width, depth, emb_dim)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @torch.no_grad()
    def fit_data(self, x: torch.Tensor) -> None:
        """Set mean, sigma_data and the Gaussian fit from training images x `(N, C, H, W)`."""
        xc = (x - x.mean(0)).flatten(1).double()
        self.mean.copy_(x.mean(0))
        self.sigma_data.fill_(xc.std().item())
        k, d = self.pca_var.numel(), xc.shape[1]
        if k == 0:
            return
        if d <= 4096:
            var, vec = torch.linalg.eigh(xc.T @ xc / max(len(xc) - 1, 1))
            var, vec = var.flip(0)[:k], vec.flip(1)[:, :k]
        else:  # a full d x d covariance is too big here: randomized top-k PCA
            _, sv, vec = torch.pca_lowrank(xc, q=k, center=False)
            var = sv**2 / max(len(xc) - 1, 1)
        total = xc.pow(2).sum() / max(len(xc) - 1, 1)
        self.pca_basis.copy_(vec)
        self.pca_var.copy_(var.clamp_min(0))
        self.rest_var.fill_(float((total - var.sum()).clamp_min(0) / max(d - k, 1)))

    def _gauss(self, xc: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        """Wiener filter of centered inputs xc `(B, C, H, W)` at noise s4 `(B, 1, 1, 1)`."""
        flat, s2 = xc.flatten(1), s4.flatten(1) ** 2
        coef = flat @ self.pca_basis
        top = coef @ self.pca_basis.T
        shrunk = (coef * self.pca_var / (self.pca_var + s2)) @ self.pca_basis.T
        rest = (flat - top) * self.rest_var / (self.rest_var + s2)
        return (shrunk + rest).view_as(xc)

    def forward(self, x: torch.Tensor, sigma, y: torch.Tensor | None = None) -> torch.Tensor:
        s = _sigma_vector(sigma, x)
        sd = self.sigma_data
        c_noise = (s.log() / 4)[:, None]
        e = self.sigma_emb(
            torch.cat([c_noise, (c_noise * self.freqs).sin(), (c_noise * self.freqs).cos()], 1)
        )
        if self.label_emb is not None:
            idx = torch.full_like(s, self.num_classes, dtype=torch.long) if y is None else y.long()
            e = e + self.label_emb(F.one_hot(idx, self.num_classes + 1).to(x.dtype))
        elif y is not None:
            raise ValueError("this denoiser is unconditional: train it with labels to use y")
        s4 = s[:, None, None, None]
        c_out = s4 * sd / (s4**2 + sd**2).sqrt()
        c_in = 1 / (s4**2 + sd**2).sqrt()
        xc = x - self.mean
        base = self._gauss(xc, s4) if self.baseline == "gauss" else sd**2 / (s4**2 + sd**2) * xc
        return self.mean + base + c_out * self.net(c_in * xc, e)


def score_from_denoiser(D: Callable, x: torch.Tensor, sigma: float, y=None) -> torch.Tensor:
    """EDM eq. 3: score of p_sigma at x `(B, C, H, W)` is (D(x; sigma) - x) / sigma^2."""
    out = D(x, sigma) if y is None else D(x, sigma, y)
    return (out - x) / sigma**2


def _dsm_loss(D, x, sigma, noise, y) -> torch.Tensor:
    """EDM's weighted denoising loss per example `(B,)`: unit-scale at every sigma."""
    sd2 = D.sigma_data**2
    weight = (sigma**2 + sd2) / (sigma**2 * sd2)  # EDM's lambda
    noisy = x + sigma[:, None, None, None] * noise
    return weight * (D(noisy, sigma, y) - x).pow(2).flatten(1).mean(1)


def train_denoiser(
    x_train: torch.Tensor,
    max_epochs: int,
    seed: int,
    sigma_range: tuple[float, float] = DEFAULT_SIGMA_RANGE,
    out_path: str | os.PathLike | None = None,
    y_train: torch.Tensor | None = None,
    num_classes: int = 0,
    arch: str = "auto",
    width: int | None = None,
    depth: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    label_dropout: float = 0.2,
    baseline: str = "gauss",
    pca_k: int = 512,
    patience: int = 30,
    val_fraction: float = 0.1,
    device: str | torch.device | None = None,
) -> Path:
    """Train D by denoising score matching on x_train `(N, C, H, W)` in [0, 1]; save; return path.

    sigma is drawn log-uniformly from sigma_range per example and the loss is EDM's weighted
    ||D(x + sigma n; sigma) - x||^2, so one net serves every sigma in the range. Trained to
    convergence: a `val_fraction` of the images is held out with fixed noise draws, noise levels
    and label drops (a deterministic validation loss); the learning rate halves after
    patience / 3 epochs without a gain, training stops after `patience` (or at `max_epochs`), and
    the weights kept are those with the lowest validation loss. The checkpoint's config records
    that loss beside `baseline_val_loss`, the same loss of the Gaussian baseline alone (the net's
    output starts at zero): the gap is what the net learned.
    `arch="auto"` picks the MLP when C*H*W <= MLP_MAX_DIM, else the conv U-Net; width defaults
    to 512 (MLP) or 32 (U-Net). Pass y_train `(N,)` and num_classes for a class-conditional
    denoiser. baseline="gauss" fits the Wiener-filter baseline on the top pca_k components.
    """
    if out_path is None:
        raise ValueError("train_denoiser needs out_path (where to save the checkpoint)")
    if y_train is not None and num_classes <= 0:
        raise ValueError("y_train given: pass num_classes > 0 as well")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = tuple(x_train.shape[1:])
    if arch == "auto":
        arch = "mlp" if math.prod(shape) <= MLP_MAX_DIM else "unet"
    width = width or (512 if arch == "mlp" else 32)
    torch.manual_seed(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    x_all = x_train.to(device, torch.float32)
    y_all = y_train.to(device).long() if y_train is not None else None
    order = torch.randperm(len(x_all), generator=g, device=device)
    n_val = max(1, int(round(val_fraction * len(x_all))))
    fit_idx, val_idx = order[n_val:], order[:n_val]
    x_fit = x_all[fit_idx]
    k = min(pca_k, math.prod(shape)) if baseline == "gauss" else 0
    n_cls = num_classes if y_train is not None else 0
    D = Denoiser(shape, arch, width, depth, n_cls, baseline=baseline, k=k).to(device)
    D.fit_data(x_fit)
    log_lo, log_hi = math.log(sigma_range[0]), math.log(sigma_range[1])

    def draw(n: int, gen: torch.Generator, labels: torch.Tensor | None):
        """Noise levels `(n,)`, standard noise `(n, C, H, W)` and (dropped-out) labels."""
        u = torch.rand(n, generator=gen, device=device)
        sigma = (log_lo + (log_hi - log_lo) * u).exp()
        noise = torch.randn((n, *shape), generator=gen, device=device)
        if labels is not None:
            drop = torch.rand(n, generator=gen, device=device) < label_dropout
            labels = torch.where(drop, num_classes, labels)
        return sigma, noise, labels

    x_val = x_all[val_idx]
    val_draw = draw(n_val, torch.Generator(device=device).manual_seed(seed + 1),
                    None if y_all is None else y_all[val_idx])  # fmt: skip

    @torch.no_grad()
    def val_loss() -> float:
        D.eval()
        sigma, noise, y = val_draw
        parts = [
            _dsm_loss(
                D,
                x_val[i : i + 512],
                sigma[i : i + 512],
                noise[i : i + 512],
                None if y is None else y[i : i + 512],
            )  # fmt: skip
            for i in range(0, n_val, 512)
        ]
        D.train()
        return float(torch.cat(parts).mean())

    opt = torch.optim.Adam(D.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=patience // 3)
    baseline_loss = best = val_loss()  # the net's output is zero: the Gaussian baseline alone
    best_state, best_epoch, history = copy.deepcopy(D.state_dict()), 0, []
    D.train()
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(len(x_fit), generator=g, device=device)
        for idx in perm.split(batch_size):
            labels = None if y_all is None else y_all[fit_idx[idx]]
            sigma, noise, y = draw(len(idx), g, labels)
            loss = _dsm_loss(D, x_fit[idx], sigma, noise, y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(D.parameters(), 1.0)
            opt.step()
        history.append(val_loss())
        sched.step(history[-1])
        if history[-1] < best * (1 - 1e-3):
            best, best_epoch, best_state = history[-1], epoch, copy.deepcopy(D.state_dict())
        elif epoch - best_epoch >= patience:
            break
    D.load_state_dict(best_state)
    config = dict(
        shape=list(shape),
        arch=arch,
        width=width,
        depth=depth,
        num_classes=D.num_classes,
        baseline=baseline,
        k=k,
        sigma_range=list(sigma_range),
        max_epochs=max_epochs,
        epochs_run=len(history),
        best_epoch=best_epoch,
        seed=seed,
        val_loss=best,
        baseline_val_loss=baseline_loss,
        val_loss_history=history,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in D.state_dict().items()}
    torch.save({"format": _FORMAT, "config": config, "state_dict": state}, out_path)
    return out_path


def load_denoiser(path: str | os.PathLike, device: str | torch.device = "cpu") -> Denoiser:
    """A denoiser saved by `train_denoiser`, in eval mode; `.config` holds its training settings."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not a {_FORMAT} checkpoint (use load_edm_denoiser for EDM files)"
        )
    cfg = ckpt["config"]
    D = Denoiser(
        cfg["shape"],
        cfg["arch"],
        cfg["width"],
        cfg["depth"],
        cfg["num_classes"],
        baseline=cfg["baseline"],
        k=cfg["k"],
    )
    D.load_state_dict(ckpt["state_dict"])
    D.config = cfg
    return D.to(device).eval()


# ---------------------------------------------------------------------------------------------
# A user's EDM-style denoiser


class EDMAdapter(nn.Module):
    """Wraps an EDM-style net `D'(x', sigma', class_labels=None)` as our D(x, sigma, y).

    The wrapped net works on pixels in `data_range` (EDM: [-1, 1]) with sigma in those units,
    sigma' `(B,)`, and class_labels one-hot `(B, label_dim)` float or None. Our images are in
    [0, 1]: with a = hi - lo, x' = lo + a x and sigma' = a sigma (the noise scales with the
    pixels), and the output maps back as (D' - lo) / a. Then (D(x) - x) / sigma^2 is the score
    in [0, 1] pixel units, which equals a * (EDM-space score): for EDM, 2 * grad_x' log p'.
    """

    def __init__(self, net: nn.Module, data_range=(-1.0, 1.0), label_dim: int | None = None):
        super().__init__()
        self.net, self.data_range = net, tuple(data_range)
        self.label_dim = label_dim if label_dim is not None else int(getattr(net, "label_dim", 0))

    @property
    def conditional(self) -> bool:
        return self.label_dim > 0

    def forward(self, x: torch.Tensor, sigma, y: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = self.data_range
        a = hi - lo
        xp, sp = lo + a * x, a * _sigma_vector(sigma, x)
        if y is None:
            out = self.net(xp, sp)  # relies on class_labels=None as EDM's default
        elif not self.conditional:
            raise ValueError("labels given but the EDM net has no label_dim (pass num_classes)")
        else:
            out = self.net(xp, sp, F.one_hot(y.long(), self.label_dim).to(xp.dtype))
        return (out.to(x.dtype) - lo) / a


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold a code/ folder; torch.save archives only data.pkl and tensors."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.split("/")[1:2] == ["code"] for name in z.namelist())


def load_edm_denoiser(
    path: str | os.PathLike,
    data_range: tuple[float, float] = (-1.0, 1.0),
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> EDMAdapter:
    """Load an EDM-style denoiser from a file and adapt it to [0, 1] images (see EDMAdapter).

    Accepts a TorchScript file (torch.jit.save), a module saved with torch.save(module), or a
    pickle of dict(ema=module) as EDM's network-snapshot-*.pkl (its modules need EDM's dnnlib and
    torch_utils importable). The last two unpickle arbitrary code: load only files you trust.
    num_classes overrides the net's `label_dim` attribute (EDM nets carry one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no denoiser file at {path}")
    if _is_torchscript(path):
        with (
            warnings.catch_warnings()
        ):  # TorchScript is deprecated, but users still have such files
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=device)
    elif zipfile.is_zipfile(path):
        net = torch.load(path, map_location=device, weights_only=False)
    else:  # EDM's snapshots are plain pickles, not torch.save archives
        with open(path, "rb") as f:
            net = pickle.load(f)
    if isinstance(net, dict):
        net = next((net[k] for k in ("ema", "net", "model") if k in net), net)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{path} holds a {type(net).__name__}, not a denoiser module")
    return EDMAdapter(net.to(device).eval(), data_range, num_classes).eval()


# ---------------------------------------------------------------------------------------------
# ScoreFn implementations


class DenoiserScore:
    """ScoreFn from a denoiser D(x, sigma, y=None) at fixed sigma (EDM eq. 3); batched, no grad."""

    def __init__(
        self,
        D: Callable,
        sigma: float = DEFAULT_SCORE_SIGMA,
        name: str | None = None,
        batch_size: int = 512,
    ):
        self.D, self.sigma, self.batch_size = D, sigma, batch_size
        self.conditional = bool(getattr(D, "conditional", False))
        prefix = f"dsm-{D.arch}" if isinstance(D, Denoiser) else "denoiser"
        self.name = name or f"{prefix}@{sigma:g}"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None and not self.conditional:
            raise ValueError(f"score {self.name} is unconditional; it cannot condition on y")
        parts = []
        for i in range(0, len(x), self.batch_size):
            yi = None if y is None else y[i : i + self.batch_size]
            parts.append(score_from_denoiser(self.D, x[i : i + self.batch_size], self.sigma, yi))
        return torch.cat(parts)


def edm_score(
    path: str | os.PathLike, sigma: float = DEFAULT_SCORE_SIGMA, device="cpu", **kw
) -> DenoiserScore:
    """ScoreFn "edm-file@<sigma>" from a user's EDM-style denoiser file (see load_edm_denoiser)."""
    return DenoiserScore(
        load_edm_denoiser(path, device=device, **kw), sigma, name=f"edm-file@{sigma:g}"
    )
