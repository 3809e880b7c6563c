"""Classifiers from checkpoint files, in the formats `pags measure` reads.

A loaded model always takes images in [0, 1] `(B, C, H, W)` and returns logits `(B, K)`: a
format whose weights expect normalized inputs gets its normalization as the first layer, so
the measurements (which perturb and differentiate in pixel space) see what a trial's model
sees. Formats (`FORMATS`):

    pags         what `pags train --checkpoint-dir` and sweep trials save (trainables/loop.py):
                 {"model": state_dict, "config": TrialConfig dict, "epoch": int, ...}; the
                 architecture, activation and seed come from its config
    state_dict   a plain `model.state_dict()` of `arch` (a pags or torchvision architecture);
                 a DataParallel "module." prefix on every key is removed
    torchvision  a torchvision architecture by name with a state_dict from the file; inputs
                 normalized with the ImageNet mean/std torchvision's weights are trained on
    robustbench  a RobustBench-zoo checkpoint of a `trainables.zoo` architecture (wrn-28-10,
                 dm-wrn-70-16, preact-resnet-18, ...): {"state_dict": ...} or a plain
                 state_dict, "module." prefixes removed; inputs in [0, 1] as RobustBench's
                 (DeepMind's nets normalize inside, recorded as such)
    robustness   MadryLab's robustness library (Salman et al. 2020's checkpoints):
                 {"model": {"module.model.*", "module.normalizer.new_mean", ...}, "epoch": int};
                 normalization as its `InputNormalize`: clamp to [0, 1], then (x - mean) / std

Everything wrong with a file raises `CheckpointError` with one line naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from analysis.results.atomic import file_digest
from analysis.results.errors import InputError, one_line
from trainables import zoo
from trainables.models import MODELS, build_model

FORMATS = ("pags", "state_dict", "torchvision", "robustbench", "robustness")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROBUSTNESS_MODEL, ROBUSTNESS_NORMALIZER = "module.model.", "module.normalizer."


class CheckpointError(InputError):
    """A checkpoint that cannot be measured; the one-line message names the file."""


class Normalized(nn.Module):
    """`model((clamp(x) - mean) / std)` with per-channel mean/std `(C,)`."""

    def __init__(self, model: nn.Module, mean, std, clamp: bool):
        super().__init__()
        self.model, self.clamp = model, clamp
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.mean.shape[1]:  # broadcasting would silently turn grey into RGB
            raise ValueError(f"normalization expects {self.mean.shape[1]} channels")
        if self.clamp:
            x = x.clamp(0, 1)
        return self.model((x - self.mean) / self.std)


@dataclass
class Loaded:
    """A model ready to measure, and what the file said about it."""

    model: nn.Module
    arch: str
    normalization: str  # "none" or "mean=(...) std=(...)" (+ " clamp01")
    seed: int | None = None  # pags checkpoints: the trial's seed
    epoch: int | None = None  # pags and robustness checkpoints: epochs trained


def torchvision_archs() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_arch(arch: str, in_channels: int, num_classes: int, activation: str) -> nn.Module:
    """A fresh `arch`: a pags architecture (trainables.models), a RobustBench-zoo one
    (trainables.zoo) or a torchvision one by name. ValueError naming the allowed ones."""
    if arch in MODELS:
        return build_model(arch, in_channels, num_classes, activation)
    if zoo.is_zoo_arch(arch):
        return zoo.build(arch, in_channels, num_classes)
    if arch in torchvision_archs():
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    raise ValueError(
        f"arch {arch!r} is unknown; allowed: {', '.join(MODELS.names())}, a RobustBench-zoo "
        f"architecture ({', '.join(zoo.EXAMPLES)}) or a torchvision one (e.g. resnet18)"
    )


def _read(path: str, trusted: bool) -> object:
    """torch.load on CPU. Files from elsewhere are unpickled with weights_only (tensors and
    containers only: a checkpoint must not run code); pags's own hold numpy maps too."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except Exception as err:  # zip, pickle and EOF errors: all mean "not a checkpoint"
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({one_line(err, limit=200)})"
        ) from None


def _entry(path: str, obj: object, key: str, what: str) -> dict:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
        found = sorted(map(str, obj))[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a {what} checkpoint (no {key!r} dict; found {found})")
    return obj[key]


def _fit(path: str, model: nn.Module, sd: dict, arch: str) -> None:
    """load_state_dict(strict) with one line instead of torch's paragraph."""
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {bad[0]!r} is not a tensor; expected a state_dict")
    want = model.state_dict()
    missing, unexpected = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: keys do not fit {arch}: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for k, v in sd.items():
        if v.shape != want[k].shape:
            raise CheckpointError(
                f"{path}: {k} has shape {tuple(v.shape)}, {arch} needs {tuple(want[k].shape)} "
                "(another architecture or number of classes?)"
            )
    model.load_state_dict(sd)


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def saved_config(path: str) -> dict | None:
    """The trial config a pags checkpoint carries, or None when the file cannot be read or has
    none (`load` reports those problems, one line per file, when it measures)."""
    try:
        obj = _read(path, trusted=True)
    except CheckpointError:
        return None
    cfg = obj.get("config") if isinstance(obj, dict) else None
    return cfg if isinstance(cfg, dict) else None


def load(
    path: str, fmt: str, arch: str, shape: tuple[int, int, int], num_classes: int,
    activation: str = "softplus",
) -> Loaded:  # fmt: skip
    """Load `path` in format `fmt` as a model for `shape` (C, H, W) inputs and `num_classes`,
    in eval mode on the CPU, checked with one forward pass. CheckpointError on any problem."""
    if fmt not in FORMATS:
        raise CheckpointError(f"{path}: format {fmt!r} is unknown; allowed: {', '.join(FORMATS)}")
    obj = _read(path, trusted=fmt == "pags")
    seed = epoch = None
    norm: tuple | None = None  # (mean, std, clamp)
    if fmt == "pags":
        sd = _entry(path, obj, "model", "pags")
        cfg = obj.get("config")
        if not isinstance(cfg, dict):
            raise CheckpointError(
                f"{path}: pags checkpoint without its config (saved before configs were "
                "included); allowed: measure it as --format state_dict --arch ARCH"
            )
        arch, activation, seed = cfg["model"], cfg["activation"], int(cfg["seed"])
        epoch = int(obj.get("epoch", 0))
    elif fmt == "robustness":
        full = _entry(path, obj, "model", "robustness-library")
        sd = _strip(full, ROBUSTNESS_MODEL)
        stats = _strip(full, ROBUSTNESS_NORMALIZER)
        if not sd or set(stats) != {"new_mean", "new_std"}:
            raise CheckpointError(
                f"{path}: not a robustness-library checkpoint (needs {ROBUSTNESS_MODEL}* and "
                f"{ROBUSTNESS_NORMALIZER}new_mean/new_std keys in 'model')"
            )
        norm = (stats["new_mean"].flatten(), stats["new_std"].flatten(), True)
        epoch = int(obj["epoch"]) if isinstance(obj.get("epoch"), int) else None
    else:
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a state_dict")
        sd = obj
        if fmt == "robustbench" and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
            sd = _strip(sd, "module.")
        if fmt == "robustbench":
            if not zoo.is_zoo_arch(arch):
                raise CheckpointError(
                    f"{path}: arch {arch!r} is not a RobustBench-zoo architecture; allowed: "
                    f"{', '.join(zoo.EXAMPLES)} (any wrn-D-W, dm-wrn-D-W)"
                )
            sd = zoo.adapt_state_dict(arch, sd)
        if fmt == "torchvision":
            if arch not in torchvision_archs():
                raise CheckpointError(
                    f"{path}: arch {arch!r} is not a torchvision architecture; allowed: "
                    "torchvision.models.list_models(), e.g. resnet18"
                )
            norm = (IMAGENET_MEAN, IMAGENET_STD, False)
    try:
        model = build_arch(arch, shape[0], num_classes, activation)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    _fit(path, model, sd, arch)
    text = zoo.normalization(arch) if zoo.is_zoo_arch(arch) else "none"
    if norm is not None:
        mean, std, clamp = norm
        model = Normalized(model, mean, std, clamp)
        text = f"mean={_fmt(model.mean)} std={_fmt(model.std)}" + (" clamp01" if clamp else "")
    model.eval()
    _check_io(path, model, arch, shape, num_classes)
    return Loaded(model, arch, text, seed, epoch)


def _check_io(path: str, model: nn.Module, arch: str, shape, num_classes: int) -> None:
    """One forward pass: the wrong input size or channel count fails here, not mid-measure."""
    size = "x".join(map(str, shape))
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as err:  # conv/linear shape errors come as RuntimeError or ValueError
        raise CheckpointError(
            f"{path}: {arch} does not take {size} inputs ({one_line(err, limit=200)})"
        ) from None
    if tuple(out.shape) != (2, num_classes):
        raise CheckpointError(
            f"{path}: {arch} gives outputs of shape {tuple(out.shape[1:])} for {size} inputs; "
            f"the dataset has {num_classes} classes"
        )


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over the model's tensors (names, dtypes, shapes, bytes), in key order."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (checkpoints, cached artifacts)."""
    return file_digest(path, "sha256")


def _fmt(t: torch.Tensor) -> str:
    return "(" + ",".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"
