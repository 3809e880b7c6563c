"""Training throughput (images per second) per method: fp32 against bf16 autocast with
channels_last (`mixed_precision="on"`), same model, same batches, same run.

    python benchmarks/bench_training.py                        # CPU, ~2 min on 2 cores
    python benchmarks/bench_training.py --model small-cnn --batch 128
    python benchmarks/bench_training.py --device cuda --batch 128 --steps 50   # on a GPU

Each (method, precision) runs `--steps` optimizer steps of the real training step
(`trainables.loop.train_epoch` on a CIFAR-shaped in-memory set), best of `--repeats`; the
baseline is fp32. Prints images/s and the mixed/fp32 ratio per method. On a CPU, bf16 autocast
is not expected to pay (most CPUs lack fast bf16 units); the number that matters is the GPU's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch
from timing import add_machine_args, best_time, setup_machine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch.utils.data import TensorDataset  # noqa: E402

from trainables.config import TrialConfig  # noqa: E402
from trainables.data import DataBundle  # noqa: E402
from trainables.loop import build_state, train_epoch  # noqa: E402

# (method, strength) at a mid-grid strength of the cifar10 preset's kind.
METHODS = [("none", 0.0), ("gradnorm", 0.1), ("smoothness", 1.0), ("randsmooth", 0.25),
           ("pgd_l2", 0.5)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18-cifar")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    add_machine_args(ap)
    args = ap.parse_args()
    device = setup_machine(args)
    n = args.batch * args.steps
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,)))
    bundle = DataBundle("bench", data, data, 10, (3, 32, 32))
    print(f"model {args.model}, batch {args.batch}, {args.steps} steps, augment crop-flip")
    print(f"{'method':<11} {'fp32 img/s':>11} {'mixed img/s':>12} {'mixed/fp32':>11}")
    for method, strength in METHODS:
        rates = []
        for mode in ("off", "on"):
            cfg = TrialConfig(
                dataset="cifar10", model=args.model, method=method, strength=strength,
                batch_size=args.batch, optimizer="sgd", lr=0.01, schedule="constant",
                augment="crop-flip", mixed_precision=mode, epochs=1,
            )  # fmt: skip
            state = build_state(cfg, bundle, device)
            step = functools.partial(train_epoch, state, cfg, data, device)
            seconds = best_time(step, args.repeats, device)
            rates.append(n / seconds)
        print(f"{method:<11} {rates[0]:>11.1f} {rates[1]:>12.1f} {rates[1] / rates[0]:>11.2f}")


if __name__ == "__main__":
    main()
