"""A user's EDM-style denoiser file (Karras et al. 2022) as a score: loaded, adapted from its
[-1, 1] pixel range to ours, and read through EDM eq. 3 like our own denoiser."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainables.measure.denoiser import _sigma_vector
from trainables.measure.score import DEFAULT_SCORE_SIGMA, DenoiserScore


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


def edm_score(
    path: str | os.PathLike, sigma: float = DEFAULT_SCORE_SIGMA, device="cpu", **kw
) -> DenoiserScore:
    """ScoreFn "edm-file:<file name>@<sigma>(conditional|unconditional)" from a user's
    EDM-style denoiser file (see load_edm_denoiser); conditional when the net has a label_dim
    (or `num_classes` is given)."""
    D = load_edm_denoiser(path, device=device, **kw)
    kind = "conditional" if D.conditional else "unconditional"
    return DenoiserScore(D, sigma, name=f"edm-file:{Path(path).name}@{sigma:g}({kind})")
