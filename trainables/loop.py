"""One trial as a plain function: train, evaluate, checkpoint, resume. No Ray in here.

`run_trial` is deterministic for a seed: model init from `torch.manual_seed(seed)`, batch order
from a CPU generator, training noise from a generator on the model's device. All three states
travel in the checkpoint, so resuming after epoch k reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from analysis.results.atomic import atomic_write
from analysis.results.record import TrialRecord
from trainables.augment import AUGMENT
from trainables.config import TrialConfig
from trainables.data import DataBundle, load_dataset
from trainables.models import build_model
from trainables.objectives import OBJECTIVES
from trainables.precision import autocast, to_channels_last, uses_mixed_precision
from trainables.progress import Log, epoch_line
from trainables.runtime import denormals_flushed

# Measurer: (model, epoch) -> (summary metrics, long-format rows). Built by trainables.measure.
Measurer = Callable[[nn.Module, int], tuple[dict, list[dict]]]
OnEpoch = Callable[[dict, Callable[[], dict]], None]


@dataclass
class TrialState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data_gen: torch.Generator  # CPU: batch order
    noise_gen: torch.Generator  # on device: objective noise
    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "history": self.history,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.data_gen.set_state(sd["data_gen"])
        self.noise_gen.set_state(sd["noise_gen"])
        torch.set_rng_state(sd["torch_rng"])
        self.epoch = sd["epoch"]
        self.history = list(sd["history"])


def train_subset(bundle: DataBundle, cfg: TrialConfig) -> Dataset:
    if cfg.train_subset and cfg.train_subset < len(bundle.train):
        return Subset(bundle.train, range(cfg.train_subset))
    return bundle.train


def build_state(cfg: TrialConfig, bundle: DataBundle, device: torch.device) -> TrialState:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, bundle.shape[0], bundle.num_classes, cfg.activation).to(device)
    if uses_mixed_precision(cfg.mixed_precision, device):
        model = model.to(memory_format=torch.channels_last)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    steps = math.ceil(len(train_subset(bundle, cfg)) / cfg.batch_size)
    if cfg.schedule == "onecycle":  # stepped per batch
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps
        )
    elif cfg.schedule == "multistep":  # stepped per epoch
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=0.1)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    data_gen = torch.Generator().manual_seed(cfg.seed + 2)
    return TrialState(model, opt, sched, data_gen, noise_gen)


def batches(dataset: Dataset, order: torch.Tensor, batch_size: int, device: torch.device):
    """Yield `(x, y)` batches in `order`; in-memory sets are sliced directly (no collate cost)."""
    base, index = dataset, order
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        base, index = dataset.dataset, torch.as_tensor(dataset.indices)[order]
    if isinstance(base, TensorDataset):
        x_all, y_all = base.tensors[0], base.tensors[1]
        for i in range(0, len(index), batch_size):
            idx = index[i : i + batch_size]
            yield x_all[idx].to(device, non_blocking=True), y_all[idx].to(device)
        return
    loader = DataLoader(
        Subset(dataset, order.tolist()), batch_size=batch_size, num_workers=2, pin_memory=True
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device)


def train_epoch(state: TrialState, cfg: TrialConfig, data: Dataset, device) -> float:
    """One pass over `data`; mean training loss, or NaN as soon as a loss is non-finite."""
    objective = OBJECTIVES[cfg.method]
    augment = AUGMENT[cfg.augment]
    mixed = uses_mixed_precision(cfg.mixed_precision, device)
    state.model.train()
    order = torch.randperm(len(data), generator=state.data_gen)
    total, count = 0.0, 0
    for x, y in batches(data, order, cfg.batch_size, device):
        if augment is not None:
            x = augment(x, state.data_gen)
        with autocast(mixed, device):
            loss = objective(
                state.model, to_channels_last(x, mixed), y, cfg.strength, cfg, state.noise_gen
            )
        if not torch.isfinite(loss):
            return float("nan")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        if cfg.schedule == "onecycle":
            state.scheduler.step()
        total += loss.item() * len(y)
        count += len(y)
    if cfg.schedule != "onecycle":
        state.scheduler.step()
    return total / count


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, device, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1], model in eval mode."""
    model.eval()
    correct = 0
    for x, y in batches(data, torch.arange(len(data)), batch_size, device):
        correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(data)


def run_trial(
    cfg: TrialConfig,
    *,
    device: torch.device | None = None,
    bundle: DataBundle | None = None,
    checkpoint: dict | None = None,
    on_epoch: OnEpoch | None = None,
    measurer: Measurer | None = None,
    log: Log | None = None,
) -> TrialRecord:
    """Train `cfg.epochs` epochs (from `checkpoint` if given) and return the trial's record.

    After each epoch `on_epoch(metrics, make_checkpoint)` is called; `make_checkpoint()` returns
    the full state as a dict (for torch.save). `measurer(model, epoch)` runs every
    `cfg.measure_every` epochs and after the last one. A non-finite loss ends the trial with
    status "diverged" (its row stays; no exception). `log` gets one line per epoch.
    """
    with denormals_flushed():
        return _run_trial(cfg, device, bundle, checkpoint, on_epoch, measurer, log)


def _run_trial(cfg, device, bundle, checkpoint, on_epoch, measurer, log) -> TrialRecord:
    device = torch.device(device or "cpu")
    bundle = bundle or load_dataset(cfg.dataset, cfg.seed, cfg.data_root)
    data = train_subset(bundle, cfg)
    state = build_state(cfg, bundle, device)
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
    status = "diverged" if any(h.get("status") == "diverged" for h in state.history) else "running"
    while state.epoch < cfg.epochs and status == "running":
        start = time.perf_counter()
        loss = train_epoch(state, cfg, data, device)
        state.epoch += 1
        metrics: dict[str, Any] = {"epoch": state.epoch, "train_loss": loss}
        if math.isnan(loss):
            status = "diverged"
            metrics.update(status=status, test_accuracy=float("nan"))
        else:
            metrics["test_accuracy"] = accuracy(state.model, bundle.test, device)
            last = state.epoch == cfg.epochs
            every = cfg.measure_every and state.epoch % cfg.measure_every == 0
            if measurer is not None and cfg.measure and (last or every):
                summary, rows = measurer(state.model, state.epoch)
                metrics["measures"] = summary
                metrics["measure_rows"] = rows
        metrics["epoch_time_s"] = time.perf_counter() - start
        state.history.append(metrics)
        if log is not None:
            log(epoch_line(metrics, cfg.epochs))
        if on_epoch is not None:
            on_epoch(metrics, functools.partial(checkpoint_dict, cfg, state))
    status = "completed" if status == "running" else status
    return summarize(cfg, state, status, n_train=len(data), n_test=len(bundle.test),
                     num_classes=bundle.num_classes)  # fmt: skip


def summarize(cfg: TrialConfig, state: TrialState, status: str, **info) -> TrialRecord:
    """The trial's result (analysis/results/record.py): the last measurement's summary, the
    per-epoch history and every measurement row."""
    return TrialRecord.from_history(cfg.to_dict(), cfg.config_id, state.history, status, **info)


def checkpoint_dict(cfg: TrialConfig, state: TrialState) -> dict:
    """The trial's full state plus its config: a pags checkpoint says which architecture,
    activation and seed it holds, so `pags measure` can rebuild and measure it alone."""
    return {**state.state_dict(), "config": cfg.to_dict()}


def save_checkpoint(state: dict, path: str) -> None:
    """Atomic (analysis/results/atomic.py): a reader never sees half a checkpoint."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
