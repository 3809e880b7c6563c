"""Architectures of RobustBench's CIFAR-10 L2/Linf model zoo, in the layouts of its checkpoints,
so `pags measure` loads their weights from a local file (trainables/checkpoints.py).

Written here from the published definitions rather than imported from the `robustbench`
package: robustbench 1.1.1 pins timm==1.0.9 and gdown==5.1.0 and pulls geotorch, torchdiffeq
and Jinja2, and importing it loads its whole zoo; pags needs three class layouts. A state_dict
only fits the layout its keys were saved from, so each family keeps its source's module names:

    wrn-D-W        WideResNet-D-W as in TRADES (Zhang et al. 2019) and RobustBench's
                   `WideResNet` (ReLU, no input normalization): Standard, Wu2020Adversarial,
                   Sehwag2021Proxy, Carmon2019Unlabeled, ... (wrn-28-10, wrn-34-10, wrn-34-20,
                   wrn-70-16). Checkpoints saved with `sub_block1` (never used in forward)
                   load with those keys dropped.
    dm-wrn-D-W     DeepMind's WideResNet (Gowal et al. 2020; RobustBench `DMWideResNet`):
                   Swish, CIFAR-10 mean/std normalization inside the model (not in the
                   state_dict): Gowal2020Uncovering_*, Rebuffi2021Fixing_* (dm-wrn-70-16,
                   dm-wrn-28-10).
    preact-resnet-18  PreActResNet-18 (He et al. 2016; RobustBench `PreActResNet` with
                   `PreActBlock`, ReLU, no normalization): Wong2020Fast and similar.

D = depth (D - 4 divisible by 6), W = widen factor; any D, W parse, so tests use tiny ones.
All take images in [0, 1] `(B, C, H, W)`; the final average pool is global (on CIFAR-10 the
published 8x8 or 4x4 pool), so other image sizes work too (the tests use digits).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # DeepMind / RobustBench dm_wide_resnet constants
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
_WRN = re.compile(r"^(dm-)?wrn-(\d+)-(\d+)$")
EXAMPLES = ("wrn-28-10", "wrn-34-10", "wrn-70-16", "dm-wrn-70-16", "dm-wrn-28-10",
            "preact-resnet-18")  # fmt: skip


def is_zoo_arch(arch: str) -> bool:
    return arch == "preact-resnet-18" or bool(_WRN.match(arch))


def normalization(arch: str) -> str:
    """The input normalization built into `arch` ("none" if it has none), as recorded."""
    if arch.startswith("dm-"):
        mean, std = (",".join(f"{v:.4g}" for v in t) for t in (CIFAR10_MEAN, CIFAR10_STD))
        return f"mean=({mean}) std=({std}) in the architecture"
    return "none"


def build(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """A fresh zoo architecture; ValueError for a name that is not one."""
    if arch == "preact-resnet-18":
        return PreActResNet18(in_channels, num_classes)
    m = _WRN.match(arch)
    if not m:
        raise ValueError(f"arch {arch!r} is not a zoo architecture; e.g. {', '.join(EXAMPLES)}")
    depth, width = int(m.group(2)), int(m.group(3))
    if depth < 10 or (depth - 4) % 6 or width < 1:
        raise ValueError(f"arch {arch!r}: depth - 4 must be a positive multiple of 6, width >= 1")
    cls = DMWideResNet if m.group(1) else WideResNet
    return cls(depth, width, in_channels, num_classes)


def adapt_state_dict(arch: str, sd: dict) -> dict:
    """Keys a zoo checkpoint may carry beyond the layout: TRADES-style `sub_block1.*`, a
    module that forward never calls."""
    if _WRN.match(arch) and not arch.startswith("dm-"):
        return {k: v for k, v in sd.items() if not k.startswith("sub_block1.")}
    return sd


# ---- TRADES / RobustBench WideResNet ---------------------------------------------------------
class _WRNBlock(nn.Module):
    """Pre-activation block; with a width change the activated input feeds both paths."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.convShortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, 0,
                                                                  bias=False)  # fmt: skip

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return out + (x if self.convShortcut is None else self.convShortcut(a))


def _stack(block, n: int, c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """n blocks; the first changes the width and the stride."""
    return nn.Sequential(*(block(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                           for i in range(n)))  # fmt: skip


class _WRNGroup(nn.Module):
    """A stage as TRADES names it (`layer`); DeepMind's names it `block` (_DMGroup)."""

    def __init__(self, n: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layer = _stack(_WRNBlock, n, c_in, c_out, stride)

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, width: int, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        n, ch = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = _WRNGroup(n, ch[0], ch[1], 1)
        self.block2 = _WRNGroup(n, ch[1], ch[2], 2)
        self.block3 = _WRNGroup(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out)).mean((2, 3))  # = the 8x8 average pool on CIFAR-10
        return self.fc(out)


# ---- DeepMind WideResNet ---------------------------------------------------------------------
class _DMBlock(nn.Module):
    """As _WRNBlock, with TensorFlow's SAME padding done by hand before the first conv (the
    published weights were trained with it: asymmetric (0, 1) padding at stride 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(c_in)
        self.conv_0 = nn.Conv2d(c_in, c_out, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(c_out)
        self.conv_1 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, 0,
                                                              bias=False)  # fmt: skip
        self.stride = stride

    def forward(self, x):
        a = F.silu(self.batchnorm_0(x))
        pad = (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1)
        out = self.conv_1(F.silu(self.batchnorm_1(self.conv_0(F.pad(a, pad)))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class _DMGroup(nn.Module):
    def __init__(self, n: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.block = _stack(_DMBlock, n, c_in, c_out, stride)

    def forward(self, x):
        return self.block(x)


class DMWideResNet(nn.Module):
    def __init__(self, depth: int, width: int, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        n, ch = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        # not in the state_dict (RobustBench: persistent=False), so the weights load as saved
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), False)
        self.init_conv = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(
            _DMGroup(n, ch[0], ch[1], 1), _DMGroup(n, ch[1], ch[2], 2), _DMGroup(n, ch[2], ch[3], 2)
        )
        self.batchnorm = nn.BatchNorm2d(ch[3])
        self.logits = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        if x.shape[1] != self.mean.shape[1]:  # broadcasting would silently turn grey into RGB
            raise ValueError(f"normalization expects {self.mean.shape[1]} channels")
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        out = F.silu(self.batchnorm(out)).mean((2, 3))  # = the 8x8 pool on CIFAR
        return self.logits(out)


# ---- PreActResNet-18 -------------------------------------------------------------------------
class _PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        skip = self.shortcut(x) if hasattr(self, "shortcut") else x  # the raw input, as published
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + skip


class PreActResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        widths, c_in, layers = (64, 128, 256, 512), 64, []
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(_PreActBlock(c_in, w, 1 if i == 0 else 2),
                                        _PreActBlock(w, w, 1)))  # fmt: skip
            c_in = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(out.mean((2, 3)))  # = the 4x4 average pool on CIFAR-10
