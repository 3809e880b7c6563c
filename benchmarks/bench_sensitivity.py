"""On/off-manifold sensitivity of a CIFAR-shaped ResNet18 (trainables.models "resnet18-cifar"):
batched `manifold_sensitivity` against a per-image loop in the style of the reference code
(batch 1; an SVD orthonormalization of the tangent basis per image, as its
`project_into_tangent_space` does with scipy.linalg.orth; two forwards per step size), same
model, same run.

    python benchmarks/bench_sensitivity.py                # ~1-2 min on 2 cores
    python benchmarks/bench_sensitivity.py --threads 1 --n-batched 64 --n-loop 8
    python benchmarks/bench_sensitivity.py --device cuda            # on a GPU machine

Prints per-image times, the speedup over the loop, and the ratio to the floor: the model's
own forward passes on the perturbed batch (B * 2 directions * 4 step sizes * n_draws images),
in the same batch size. The loop runs under no_grad (the reference code builds autograd
graphs it never uses; we do not charge the baseline for that).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.linalg
import torch
from timing import add_machine_args, best_time, setup_machine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainables.measure.sensitivity import default_eps, manifold_sensitivity  # noqa: E402
from trainables.models import build_model  # noqa: E402

SHAPE, LATENT, CLASSES = (3, 32, 32), 128, 10
D = SHAPE[0] * SHAPE[1] * SHAPE[2]


def loop_reference(model, x, q, eps, generator, device) -> tuple[np.ndarray, list[float]]:
    """Per image: clean forward, one draw, scipy orth (SVD) of the basis on the CPU, projection,
    then for each eps an on and an off forward at batch 1 on `device` (x is there; q on the
    CPU, as the reference code keeps it). Returns on/off sensitivities `(2, E, B)` and the
    seconds each point took (the sensitivity's `float()` waits for the device)."""
    out, seconds = np.zeros((2, len(eps), len(x))), []
    with torch.no_grad():
        for i in range(len(x)):
            start = time.perf_counter()
            xi = x[i : i + 1]
            p0 = torch.softmax(model(xi), 1)
            noise = torch.randn(D, generator=generator).numpy()
            basis = scipy.linalg.orth(q[i].numpy())  # (d, k), SVD as in the reference code
            on = basis @ (basis.T @ noise)
            off = noise - on
            for s, direction in enumerate((on, off)):
                u = torch.from_numpy(direction / np.linalg.norm(direction)).float()
                u = u.view(xi.shape).to(device)
                for e, step in enumerate(eps):
                    p = torch.softmax(model(xi + step * u), 1)
                    out[s, e, i] = float((p - p0).abs().sum())
            seconds.append(time.perf_counter() - start)
    return out, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-batched", type=int, default=32, help="points for the batched measure")
    ap.add_argument("--n-loop", type=int, default=4, help="points for the per-image loop")
    ap.add_argument("--n-draws", type=int, default=1, help="noise draws per point (ref: 1)")
    ap.add_argument("--batch-size", type=int, default=256, help="model batch size (batched)")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many (batched, floor)")
    add_machine_args(ap)
    args = ap.parse_args()
    device = setup_machine(args)

    torch.manual_seed(0)
    model = build_model("resnet18-cifar", in_channels=3, num_classes=CLASSES).eval().to(device)
    n = max(args.n_batched, args.n_loop)
    x = torch.rand(n, *SHAPE, device=device)
    q, _ = torch.linalg.qr(torch.randn(n, D, LATENT))  # any orthonormal bases cost the same
    q_device = q.to(device)  # ours keeps Q where the model is; the loop reads the CPU copy
    eps = default_eps(D)

    with torch.no_grad():  # warm-up: first calls allocate and pick kernels
        model(x[:2])
        model(x[:1])

    res = {}

    def batched():
        res.update(
            manifold_sensitivity(
                model,
                x[: args.n_batched],
                q_device[: args.n_batched],
                eps,
                args.n_draws,
                torch.Generator(device).manual_seed(0),
                batch_size=args.batch_size,
            )
        )

    t_batched = best_time(batched, args.repeats, device) / args.n_batched

    rows = args.n_batched * 2 * len(eps) * args.n_draws
    perturbed = torch.rand(rows, *SHAPE, device=device)

    def floor():
        with torch.no_grad():
            for part in perturbed.split(args.batch_size):
                model(part)

    t_floor = best_time(floor, args.repeats, device) / args.n_batched

    ref, per_point = loop_reference(
        model, x[: args.n_loop], q[: args.n_loop], eps, torch.Generator(), device
    )
    t_loop = float(np.median(per_point))  # median: robust to a neighbour's burst on a shared box

    # Where the loop's time goes: one SVD and one batch-1 forward (best of 3 each).
    t_svd = best_time(lambda: scipy.linalg.orth(q[0].numpy()), 3)
    with torch.no_grad():
        t_fwd1 = best_time(lambda: model(x[:1]), 3, device)

    print(f"ResNet18-CIFAR, eps {[round(e, 2) for e in eps]}, n_draws {args.n_draws}")
    print(
        f"per-image loop (batch 1, SVD per image), {args.n_loop} points: median {t_loop:.3f} "
        f"s/point (min {min(per_point):.3f}, max {max(per_point):.3f})"
    )
    print(f"  best single SVD {t_svd:.3f} s, batch-1 forward {t_fwd1:.3f} s (x{1 + 2 * len(eps)})")
    print(
        f"batched manifold_sensitivity, {args.n_batched} points, batch {args.batch_size}: "
        f"{t_batched:.3f} s/point"
    )
    print(f"floor (forwards on the {rows} perturbed images): {t_floor:.3f} s/point")
    print(
        f"speedup over loop: {t_loop / t_batched:.1f}x with the loop's median point, "
        f"{min(per_point) / t_batched:.1f}x with its fastest (target >= 15x)"
    )
    print(f"ratio to floor: {t_batched / t_floor:.2f}x (aim <= 1.3x)")
    print(
        f"sanity: mean on/off at eps {eps[-1]:.2f}: batched {res['on_mean'][-1]:.2e}/"
        f"{res['off_mean'][-1]:.2e}, loop {ref[0, -1].mean():.2e}/{ref[1, -1].mean():.2e}"
    )
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
