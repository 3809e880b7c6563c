"""What robust accuracy and certification add to a digits-quick trial's wall time.

One digits-quick trial (its preset's config: 8 epochs, 24 evaluation points, measured once at
the end), run whole (training + every measure) with `robustness=False` (the baseline: the
measurements pags made before robust accuracy existed) and with the defaults (APGD-CE L2, 20
iterations; for randsmooth also PREDICT and CERTIFY with n0 = 100, n = 1,000), alternating,
same process, same cached artifacts. Budget (issue 22): at most +30%.

    python benchmarks/bench_robust.py                       # randsmooth sigma 0.25 (both parts)
    python benchmarks/bench_robust.py --method pgd_l2 --strength 0.5 --repeats 3

Prints each run's wall and CPU seconds, the best of each, and their ratios (on a shared
machine the CPU time, with one thread, is the steadier of the two).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from timing import add_machine_args, setup_machine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweep.plan.config import preset_trial_dict  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import load_dataset  # noqa: E402
from trainables.loop import run_trial  # noqa: E402
from trainables.measure.artifacts import prepare_artifacts  # noqa: E402
from trainables.measure.evaluate import build_measurer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="randsmooth")
    ap.add_argument("--strength", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    ap.add_argument("--cache-dir", default=None, help="artifacts cache (default: pags's)")
    add_machine_args(ap)
    args = ap.parse_args()
    device = setup_machine(args)
    base = TrialConfig.from_dict(
        preset_trial_dict("digits-quick", args.method, args.strength, seed=0)
    )
    bundle = load_dataset(base.dataset, base.seed, base.data_root)
    art = prepare_artifacts(base, args.cache_dir, bundle, log=print)
    # wall time, and this process's CPU time (one thread: less disturbed by other load)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for robust in (False, True):
            cfg = base.replace(robustness=robust)
            measurer = build_measurer(cfg, bundle, device, art)
            torch.manual_seed(0)
            start, start_cpu = time.perf_counter(), time.process_time()
            result = run_trial(cfg, device=device, bundle=bundle, measurer=measurer)
            seconds = time.perf_counter() - start
            times[robust].append(seconds)
            cpu[robust].append(time.process_time() - start_cpu)
            got = result.summary
            extra = (f", robust acc {got['robust_accuracy']:.3f}, certified acc "
                     f"{got['certified_accuracy']:.3f}") if robust else ""  # fmt: skip
            print(f"{args.method} {args.strength:g} robustness={robust}: {seconds:.1f} s "
                  f"(CPU {cpu[robust][-1]:.1f} s) "
                  f"(test acc {got['test_accuracy']:.3f}{extra})", flush=True)  # fmt: skip
    off, on = min(times[False]), min(times[True])
    print(f"wall, best without: {off:.1f} s, with: {on:.1f} s, ratio with/without: {on / off:.3f}")
    off, on = min(cpu[False]), min(cpu[True])
    print(f"CPU, best without: {off:.1f} s, with: {on:.1f} s, ratio with/without: {on / off:.3f}")


if __name__ == "__main__":
    main()
