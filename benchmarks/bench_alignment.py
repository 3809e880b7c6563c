"""Alignment of a trial's five gradient/reference pairs (trainables/measure/evaluate.py):
`alignments`, which runs the LPIPS trunk once per map (7 maps), against one `alignment` call
per pair (10 trunk passes: what the measurer did before), same metric, same maps, same run.

    python benchmarks/bench_alignment.py                 # digits-shaped maps (1x28x14)
    python benchmarks/bench_alignment.py --shape 3,32,32 --points 64
    python benchmarks/bench_alignment.py --device cuda   # on a GPU machine

Prints seconds per evaluation point for both, their ratio, and the largest difference between
their values (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from timing import add_machine_args, best_time, setup_machine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainables.measure.perceptual import alignment, alignments, build_metric  # noqa: E402

# The measurer's pairs (evaluate.py): three gradients, two null maps, two scores.
PAIRS = [
    ("logit_sum", "score_uncond"),
    ("pred_logit", "score"),
    ("log_prob", "score"),
    ("null_noise", "score"),
    ("null_input", "score"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="1,28,14", help="map shape C,H,W (default: digits)")
    ap.add_argument("--points", type=int, default=32, help="evaluation points")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    add_machine_args(ap)
    args = ap.parse_args()
    device = setup_machine(args)
    shape = tuple(int(v) for v in args.shape.split(","))
    metric = build_metric("stlpips", device)
    g = torch.Generator().manual_seed(0)
    names = sorted({n for pair in PAIRS for n in pair})
    maps = {n: torch.randn(args.points, *shape, generator=g).to(device) for n in names}
    alignments(maps, PAIRS[:1], metric)  # warm-up

    shared, per_pair = {}, {}

    def ours():
        shared.update(alignments(maps, PAIRS, metric))

    def baseline():
        per_pair.update({(x, y): alignment(maps[x], maps[y], metric) for x, y in PAIRS})

    t_ours = best_time(ours, args.repeats, device) / args.points
    t_base = best_time(baseline, args.repeats, device) / args.points
    gap = max(float((shared[p] - per_pair[p]).abs().max()) for p in PAIRS)
    print(f"{metric.name}, maps {shape}, {args.points} points, {len(PAIRS)} pairs")
    print(f"one alignment call per pair ({2 * len(PAIRS)} trunk passes): {t_base * 1e3:.1f} ms/pt")
    print(f"alignments, features shared ({len(names)} trunk passes): {t_ours * 1e3:.1f} ms/pt")
    print(f"speedup: {t_base / t_ours:.2f}x; largest difference in values {gap:.1e}")
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
