"""Classifiers: a small CNN for the embedded sets and ResNet18s for CIFAR-10 and ImageNet-64.

The activation is an option with a smooth default (softplus): gradient-norm training through
ReLU did not reproduce the paper's effects in a prototype (ReLU nets have zero input Hessian
almost everywhere, so the penalty only shrinks the local gradient), and our measurements
differentiate the
model w.r.t. its input.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from trainables.registry import Registry

MODELS: Registry = Registry("model")


class ShiftedSoftplus(nn.Softplus):
    """softplus(x) - log 2: the same first and second derivatives as softplus, zero at zero.

    Plain softplus outputs about 0.69 at initialization in every unit; the small CNN did not
    train at all with it on digits-distractor (8.6% test accuracy after 3 Adam epochs, loss
    stuck at log 10) while the shifted one reached 67% (ReLU 73%, SiLU 66%).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - math.log(2.0)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "softplus": ShiftedSoftplus,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def build_model(
    name: str, in_channels: int, num_classes: int, activation: str = "softplus"
) -> nn.Module:
    """A fresh model; `name` from MODELS. Input `(B, in_channels, H, W)`, output logits `(B, K)`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}")
    return MODELS[name](in_channels, num_classes, ACTIVATIONS[activation])


@MODELS.register("small-cnn")
class SmallCNN(nn.Module):
    """Three 3x3 conv layers of width 32/64 and a linear head; a few ms per batch on one core.

    Any input size: the head reads a 4x4 adaptive average pool, which keeps where things are
    (a global pool could not tell the digit's half from the distractor's and did not train).
    No BatchNorm, so train and eval mode compute the same function (attacks and measurements
    switch modes).
    """

    def __init__(self, in_channels: int, num_classes: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), act(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), act(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), act(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(64 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act1, self.act2 = act(), act()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 with a 3x3 stride-1 stem and no max-pool (the CIFAR variant, as in the paper's
    reference code); `stem_stride` 2 halves 64 px inputs once so ImageNet-64 costs CIFAR-like
    compute per stage."""

    def __init__(
        self, in_channels: int, num_classes: int, act: Callable[[], nn.Module], stem_stride: int
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(64),
            act(),
        )
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride, act), BasicBlock(cout, cout, 1, act)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


@MODELS.register("resnet18-cifar")
def resnet18_cifar(in_channels: int, num_classes: int, act: Callable[[], nn.Module]) -> nn.Module:
    return ResNet18(in_channels, num_classes, act, stem_stride=1)


@MODELS.register("resnet18-imagenet64")
def resnet18_imagenet64(
    in_channels: int, num_classes: int, act: Callable[[], nn.Module]
) -> nn.Module:
    return ResNet18(in_channels, num_classes, act, stem_stride=2)
