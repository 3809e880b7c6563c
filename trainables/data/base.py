"""The data bundle every dataset returns, and the dataset registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from analysis.results.errors import InputError
from trainables.registry import Registry


class DataUnavailableError(InputError):
    """Files are missing and cannot be downloaded; the one-line message names the path and what
    to put there."""


@dataclass
class DataBundle:
    """A dataset split into train and test, with everything the measurements need.

    `train` / `test` yield `(x, y)` with x a float32 tensor `(C, H, W)` in [0, 1] and y an int.
    In-memory sets are `torch.utils.data.TensorDataset`s so the trial loop can slice batches
    directly. `signal_mask_*` (bool, `(N, 1, H, W)`, True on the label-carrying part) exist only
    for sets with a known signal/distractor split; the distractor mask is its complement.
    `oracle` is set only for the synthetic manifold set (exact tangent spaces, Bayes logits, score).
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W)
    signal_mask_train: torch.Tensor | None = None
    signal_mask_test: torch.Tensor | None = None
    oracle: Any = None
    info: dict = field(default_factory=dict)


# Each entry: a function (seed: int, data_root: str) -> DataBundle.
DATASETS: Registry = Registry("dataset")
