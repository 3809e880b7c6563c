"""Training a denoiser by denoising score matching, and its checkpoint format (one file per
dataset's artifacts; `load_denoiser` reads what `train_denoiser` writes)."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from torch import nn

from analysis.results.atomic import atomic_write
from trainables.measure.denoiser import Denoiser
from trainables.runtime import choose_device

DEFAULT_SIGMA_RANGE = (0.05, 1.0)
# Flattened sizes up to this use the MLP (prototype: it beat a small conv net on small images).
MLP_MAX_DIM = 2048
_FORMAT = "pags-denoiser/2"  # 2: mixture baseline


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
    baseline: str = "mixture",
    patience: int = 30,
    val_fraction: float = 0.1,
    device: str | torch.device | None = None,
    progress=None,
) -> Path:
    """Train D by denoising score matching on x_train `(N, C, H, W)` in [0, 1]; save; return path.

    sigma is drawn log-uniformly from sigma_range per example and the loss is EDM's weighted
    ||D(x + sigma n; sigma) - x||^2, so one net serves every sigma in the range. Trained to
    convergence: a `val_fraction` of the images is held out with fixed noise draws, noise levels
    and label drops (a deterministic validation loss); the learning rate halves after
    patience / 3 epochs without a gain, training stops after `patience` (or at `max_epochs`), and
    the weights kept are those with the lowest validation loss. The checkpoint's config records
    that loss beside `baseline_val_loss`, the same loss of the mixture baseline alone (the net's
    output starts at zero): the gap is what the net learned.
    `arch="auto"` picks the MLP when C*H*W <= MLP_MAX_DIM, else the conv U-Net; width defaults
    to 512 (MLP) or 32 (U-Net). Pass y_train `(N,)` and num_classes for a class-conditional
    denoiser. baseline="mixture" fits the mixture-of-local-Gaussians baseline
    (`trainables.measure.mixture`) to the training part, chosen for the range's central sigma.
    """
    if out_path is None:
        raise ValueError("train_denoiser needs out_path (where to save the checkpoint)")
    if y_train is not None and num_classes <= 0:
        raise ValueError("y_train given: pass num_classes > 0 as well")
    device = choose_device(str(device or ""))
    shape = tuple(x_train.shape[1:])
    if arch == "auto":
        arch = "mlp" if math.prod(shape) <= MLP_MAX_DIM else "unet"
    width = width or (512 if arch == "mlp" else 32)
    g = torch.Generator(device=device).manual_seed(seed)
    x_all = x_train.to(device, torch.float32)
    y_all = y_train.to(device).long() if y_train is not None else None
    order = torch.randperm(len(x_all), generator=g, device=device)
    n_val = max(1, int(round(val_fraction * len(x_all))))
    fit_idx, val_idx = order[n_val:], order[:n_val]
    x_fit = x_all[fit_idx]
    n_cls = num_classes if y_train is not None else 0
    # The net's initialization draws from torch's global generator: seed it inside a fork, so
    # the caller's random state is left as it was (a trial's own draws must not depend on
    # whether an artifact build ran in its process).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = Denoiser(shape, arch, width, depth, n_cls, baseline=baseline).to(device)
    centre = math.sqrt(sigma_range[0] * sigma_range[1])
    y_fit = None if y_all is None else y_all[fit_idx]
    mixture_choice = D.fit_data(x_fit, y_fit, centre, seed)
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
    baseline_loss = best = val_loss()  # the net's output is zero: the mixture baseline alone
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
        if progress is not None:  # progress(epoch, what, value)
            progress(epoch, "validation loss", history[-1])
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
        components=D.mix_means.shape[0],
        rank=D.mix_bases.shape[2],
        mixture_choice=[list(kr) for kr in mixture_choice],  # (K, r) per class
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
    body = {"format": _FORMAT, "config": config, "state_dict": state}
    atomic_write(out_path, lambda f: torch.save(body, f))
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
        components=cfg["components"],
        rank=cfg["rank"],
    )
    D.load_state_dict(ckpt["state_dict"])
    D.config = cfg
    return D.to(device).eval()
