"""Tangent bases for a CIFAR-shaped decoder (3x32x32, latent 128): batched vmap(jacfwd) + QR
(trainables.measure.tangent.tangent_bases) against the reference code's method (one backward
pass per output pixel, 3072 per image, then an SVD), same decoder, same run.

    python benchmarks/bench_tangent.py                       # ~1 min on 2 cores
    python benchmarks/bench_tangent.py --threads 1
    python benchmarks/bench_tangent.py --reference-pixels 3072 --n-reference 2   # full reference
    python benchmarks/bench_tangent.py --memory-n 1000       # + peak RSS for 1,000 images
    python benchmarks/bench_tangent.py --device cuda         # on a GPU machine

Prints per-image times, the speedup over the reference, and the ratio to the floor: 128
decoder forward passes per image, run batched (k forward-mode tangents do the work of about
k forwards; under vmap they share one primal pass and can come out a little below it).
By default the reference's per-pixel loop is timed on its first 512 pixels and scaled to
3072 (every backward pass costs the same: same graph, one-hot seed), plus a timed SVD of the
full Jacobian; `--reference-pixels 3072` runs it whole.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from timing import add_machine_args, best_time, limit_threads, pick_device, setup_machine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainables.measure.autoencoder import build_nets  # noqa: E402
from trainables.measure.tangent import jacobian_reference, orth_svd, tangent_bases  # noqa: E402

SHAPE, LATENT = (3, 32, 32), 128
D = SHAPE[0] * SHAPE[1] * SHAPE[2]


def decoder_and_latents(n: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    """The project's CIFAR autoencoder decoder (conv, softplus), untrained: the cost of a
    Jacobian does not depend on the weights' values."""
    torch.manual_seed(0)
    _, decoder = build_nets(SHAPE, LATENT, "conv")
    return decoder.eval().to(device), torch.randn(n, LATENT, device=device)


def _rss_mib() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) in MiB, from /proc (Linux)."""
    status = open("/proc/self/status").read()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()[1:]
           if line.startswith(("VmRSS", "VmHWM"))}  # fmt: skip
    return kib["VmRSS"] // 1024, kib["VmHWM"] // 1024


def memory_child(n: int, chunk: int, device: torch.device) -> None:
    """Run in a fresh process: memory growth and peak of tangent bases for n images. On the
    CPU from the process's RSS; on a GPU from torch's allocator (Q stays on the GPU)."""
    decoder, z = decoder_and_latents(n, device)
    tangent_bases(decoder, z[:2], chunk_size=chunk)  # warm up (torch loads JVP rules once)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) // 2**20
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark to the current RSS (Linux >= 4.0)
        before, _ = _rss_mib()
    start = time.perf_counter()
    q = tangent_bases(decoder, z, chunk_size=chunk)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) // 2**20
    else:
        _, peak = _rss_mib()
    seconds = time.perf_counter() - start
    q_mib = q.numel() * q.element_size() / 2**20
    result = {"n": n, "q_mib": q_mib, "before_mib": before, "peak_mib": peak}
    print(json.dumps({**result, "seconds": seconds}))


def time_reference(decoder, z: torch.Tensor, pixels: int) -> tuple[float, float, float]:
    """Seconds per image of the reference's backward passes (scaled from `pixels` of them) and
    of its SVD, and the largest gap between its Jacobian rows and jacfwd's."""
    rows = None

    def backward_passes():
        nonlocal rows
        rows = jacobian_reference(decoder, z, pixels)

    t_rows = best_time(backward_passes, 1, z.device) * D / pixels
    jac = torch.func.jacfwd(lambda zi: decoder(zi[None]).reshape(-1))(z)  # same values, fast
    with torch.no_grad():
        t_svd = best_time(lambda: orth_svd(jac), 1, z.device)
    return t_rows, t_svd, float((rows - jac[: len(rows)]).detach().abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-batched", type=int, default=64, help="images for the batched method")
    ap.add_argument("--n-reference", type=int, default=1, help="images for the reference method")
    ap.add_argument("--reference-pixels", type=int, default=512, help="backward passes timed")
    ap.add_argument("--chunk-size", type=int, default=8, help="tangent_bases chunk size")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings (batched)")
    ap.add_argument("--memory-n", type=int, default=0, help="also measure peak RSS for N images")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    add_machine_args(ap)
    args = ap.parse_args()
    if args.memory_child:  # stdout carries only the child's JSON line
        limit_threads(args.threads)
        return memory_child(args.memory_child, args.chunk_size, pick_device(args.device))

    device = setup_machine(args)
    decoder, z = decoder_and_latents(args.n_batched, device)
    tangent_bases(decoder, z[:2], chunk_size=args.chunk_size)  # warm-up

    q = None

    def batched():
        nonlocal q
        q = tangent_bases(decoder, z, chunk_size=args.chunk_size)

    t_batched = best_time(batched, args.repeats, device) / args.n_batched

    # Floor: the same number of decoder forward passes (k per image), batched like the JVPs.
    rows = z.repeat_interleave(LATENT, dim=0)  # (n * k, latent)

    def floor():
        with torch.no_grad():
            for part in rows.split(args.chunk_size * LATENT):
                decoder(part)

    t_floor = best_time(floor, args.repeats, device) / args.n_batched

    pixels = min(args.reference_pixels, D)
    timed = [time_reference(decoder, z[i], pixels) for i in range(args.n_reference)]
    t_rows = sum(t for t, _, _ in timed) / len(timed)
    t_svd = sum(t for _, t, _ in timed) / len(timed)
    t_ref, gap = t_rows + t_svd, max(g for _, _, g in timed)

    print(f"decoder {SHAPE} latent {LATENT}: d = {D}, Q {tuple(q.shape)}")
    print(
        f"reference ({D} backward passes + SVD; {pixels} passes timed), "
        f"{args.n_reference} image(s): {t_ref:.3f} s/image"
    )
    print(
        f"  of which backward passes {t_rows:.3f} s ({t_rows / D * 1e3:.2f} ms each), "
        f"SVD {t_svd:.3f} s"
    )
    print(
        f"batched vmap(jacfwd) + QR, {args.n_batched} images, chunk {args.chunk_size}: "
        f"{t_batched * 1e3:.2f} ms/image"
    )
    print(f"floor ({LATENT} batched decoder forwards per image): {t_floor * 1e3:.2f} ms/image")
    print(f"speedup over reference: {t_ref / t_batched:.1f}x (target >= 300x)")
    print(f"ratio to floor: {t_batched / t_floor:.2f}x (aim <= 2x)")
    print(f"max |J_ref - J_jacfwd| on the reference rows: {gap:.1e}")

    if args.memory_n:
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            str(args.memory_n),
            "--chunk-size",
            str(args.chunk_size),
            "--threads",
            str(torch.get_num_threads()),
            "--device",
            args.device,
        ]
        res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        what = "GPU memory allocated" if device.type == "cuda" else "RSS"
        print(
            f"memory, {res['n']} images in a fresh process: Q {res['q_mib']:.0f} MiB; peak "
            f"{what} {res['peak_mib']:.0f} MiB (before the call {res['before_mib']:.0f} MiB: "
            f"+{res['peak_mib'] - res['before_mib']:.0f} MiB); {res['seconds']:.1f} s"
        )
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
