"""What a sweep will cost: a throughput model, stated so that a user can check it.

GPU-hours of one trial = epochs x training images x passes per step / throughput / 3600, where
- throughput is images per second of one plain cross-entropy training step (forward and
  backward) of the model on one GPU. These are ASSUMPTIONS, not measurements of ours (no GPU
  was available where pags is developed): ResNet18 at 32x32 about 2,500 images/s in fp32 on an
  NVIDIA A10G (the g5.xlarge of cluster.yaml); at 64x64 a quarter of that (four times the
  pixels); the small CNN of the CPU sets 20,000. bf16 mixed precision is on by default on CUDA
  and typically faster: not modelled, so the estimate errs high. Measure yours with
  `python benchmarks/bench_training.py --device cuda` and pass it as `throughput`.
- passes per step: forward/backward passes of a method's step relative to plain
  cross-entropy, from the method registry (analysis/results/methods.py: the noise methods 1,
  the smoothness penalty 2, gradient-norm 3 (double backprop), L2 PGD 1 + its attack steps).
Measurement, the shared artifacts and evaluation are not included.
"""

from __future__ import annotations

from collections import defaultdict

from analysis.results.methods import method as method_facts

# Assumed images/s of one plain CE training step on one GPU (see the module docstring).
ASSUMED_THROUGHPUT = {"resnet18-cifar": 2500.0, "resnet18-imagenet64": 625.0,
                      "small-cnn": 20000.0}  # fmt: skip
TRAIN_IMAGES = {"cifar10": 50_000, "imagenet64": 1_281_167, "mnist-distractor": 60_000}


def gpu_hours(cfg, n_train: int, throughput: float | None = None) -> float:
    """Estimated GPU-hours to train one trial `cfg` (a TrialConfig) on `n_train` images."""
    rate = throughput or ASSUMED_THROUGHPUT.get(cfg.model, ASSUMED_THROUGHPUT["resnet18-cifar"])
    images = min(cfg.train_subset, n_train) if cfg.train_subset else n_train
    return cfg.epochs * images * method_facts(cfg.method).cost(cfg.pgd_steps) / rate / 3600


def cost_lines(trials: list, n_train: int, throughput: float | None = None) -> list[str]:
    """One line per method: trials, GPU-hours under the model, then the total."""
    hours, count = defaultdict(float), defaultdict(int)
    for cfg in trials:
        hours[cfg.method] += gpu_hours(cfg, n_train, throughput)
        count[cfg.method] += 1
    model = trials[0].model if trials else ""
    rate = throughput or ASSUMED_THROUGHPUT.get(model, ASSUMED_THROUGHPUT["resnet18-cifar"])
    lines = [f"cost estimate (training only; {rate:g} images/s per GPU assumed for {model}, "
             f"{n_train} training images; sweep/plan/cost.py):"]  # fmt: skip
    for method in hours:
        lines.append(f"  {method:<11} {count[method]:>4} trials  {hours[method]:>10.1f} GPU-hours")
    lines.append(f"  {'total':<11} {sum(count.values()):>4} trials  "
                 f"{sum(hours.values()):>10.1f} GPU-hours")  # fmt: skip
    return lines
