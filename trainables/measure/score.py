"""Scores of the noise-smoothed data distribution, behind one interface (docs/method.md, "Score").

Every estimate is a `ScoreFn`: an object with `.name` (recorded with every result row), a
`.conditional` flag and `__call__(x, y=None)` mapping images `(B, C, H, W)` in [0, 1] to
grad_x log p_sigma(x), or grad_x log p_sigma(x | y) when labels `y` `(B,)` are given, in the same
pixel units, `(B, C, H, W)`. p_sigma is the data distribution convolved with N(0, sigma^2 I).

Sources, by name:
- "dsm-mlp@0.25" / "dsm-unet@0.25": a small noise-conditional denoiser (`denoiser.py`) trained
  here by denoising score matching (`denoiser_training.py`; the artifacts train over sigma in
  [s/2, 2s] around the read-out s), read through EDM eq. 3: score = (D(x; sigma) - x) /
  sigma^2. Optionally class-conditional (label dropout gives the unconditional score from the
  same net).
- "edm-file:net.pt@0.5(conditional)": a user's EDM-style denoiser loaded from a file
  (`edm.py`; `score = "edm:PATH"` in a trial config, `score_source.py`).
The tests check these against exact oracles that no trial uses (tests/score_oracles.py):
"kde@0.25", the score of the sigma-smoothed empirical distribution, and "exact@0.25", the
synthetic set's closed form.
Denoisers see clean inputs as out of distribution (they are trained on noisy ones): always
report which score an alignment used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from trainables.measure.denoiser import Denoiser

# For images in [0, 1]: the prototype's MLP denoiser agreed best with the exact smoothed score here.
DEFAULT_SCORE_SIGMA = 0.25


class ScoreFn(Protocol):
    name: str
    conditional: bool

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


def score_from_denoiser(D: Callable, x: torch.Tensor, sigma: float, y=None) -> torch.Tensor:
    """EDM eq. 3: score of p_sigma at x `(B, C, H, W)` is (D(x; sigma) - x) / sigma^2."""
    out = D(x, sigma) if y is None else D(x, sigma, y)
    # float64 where the device has it: D(x) - x and score(x | y) - score(x) (the Bayes-gradient
    # estimate) cancel most digits, which float32 would lose.
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    return (out.to(wide) - x.to(wide)) / sigma**2


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
