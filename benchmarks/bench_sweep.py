"""Sweep engine: efficiency of `pags sweep --preset digits-quick`, and Ray's per-trial overhead.

1. Efficiency (target >= 85%) = total trial compute time / (Tune wall time x CPUs in use).
   Trial compute time is what each trial spends training and measuring (`wall_time_s` in
   trials.parquet: the sum of its epochs, measurement included); the Tune wall time runs from
   the "starting sweep" line to the "trials in the tables" line of the CLI (Ray is already up
   and the artifacts are prepared). The whole README job is timed too: cold artifact
   preparation + Ray start + sweep + `pags analyze` (target < 5 minutes on 2 cores).
2. Overhead: N small trials through Ray Tune on one CPU (sequential) against the plain
   `run_trial` on the same configs in one process (the baseline); overhead per trial =
   (Tune wall - plain wall) / N. Ray's start and the data check are fixed costs, listed apart.

    python benchmarks/bench_sweep.py [--skip-quick] [--overhead-trials 8] [--no-append]

Appends the results, the machine and the command to BENCHMARKS.md under "## Sweep engine".
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGS = [sys.executable, "-m", "sweep.cli"]
START, END = "[pags] starting sweep", "trials in the tables"


def timed_run(args: list[str], cwd: str) -> tuple[dict[str, float], str]:
    """Run a command, time-stamping the lines that mark the phases: {'start', 'tune_start',
    'tune_end', 'end'} in seconds since the start."""
    t0 = time.monotonic()
    stamps, lines = {"start": 0.0}, []
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in proc.stdout:
        lines.append(line)
        now = time.monotonic() - t0
        if START in line:
            stamps["tune_start"] = now
        if END in line:
            stamps["tune_end"] = now
    proc.wait()
    stamps["end"] = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{''.join(lines[-30:])}")
    return stamps, "".join(lines)


def efficiency(work: str, cpus: int) -> dict:
    """The README job, cold: digits-quick with an empty artifact cache, then the report."""
    import pandas as pd

    from analysis.results.layout import TRIALS_FILE

    exp, cache = os.path.join(work, "quick"), os.path.join(work, "cache")
    stamps, _ = timed_run(
        [
            *PAGS,
            "sweep",
            "--preset",
            "digits-quick",
            "--output",
            exp,
            "--cache-dir",
            cache,
            "--num-cpus",
            str(cpus),
        ],
        work,
    )
    t = time.monotonic()
    subprocess.run([*PAGS, "analyze", exp], check=True, capture_output=True)
    analyze = time.monotonic() - t
    trials = pd.read_parquet(os.path.join(exp, TRIALS_FILE))
    tune_wall = stamps["tune_end"] - stamps["tune_start"]
    compute = float(trials["wall_time_s"].sum())
    return {
        "trials": len(trials),
        "compute_s": compute,
        "tune_wall_s": tune_wall,
        "efficiency": compute / (tune_wall * cpus),
        "before_tune_s": stamps["tune_start"],  # Ray start + cold artifact preparation
        "sweep_s": stamps["end"],
        "analyze_s": analyze,
        "total_s": stamps["end"] + analyze,
    }


def overhead(work: str, n: int) -> dict:
    """Tune on 1 CPU vs the plain loop, same N configs (1 epoch, 256 examples, no measuring)."""
    from sweep.plan.config import from_preset
    from trainables.data import load_dataset
    from trainables.loop import run_trial

    strengths = [round(0.05 * (i + 1), 2) for i in range(n - 1)]
    sets = ["--set", "train_subset=256", "--set", "measure=false"]
    args = [
        "--methods",
        "none,randsmooth",
        "--strengths",
        ",".join(map(str, strengths)),
        "--epochs",
        "1",
    ]
    sweep = from_preset(
        "digits-quick",
        methods=["none", "randsmooth"],
        strengths=strengths,
        epochs=1,
        sets={"train_subset": 256, "measure": False},
    )
    configs = sweep.trial_configs()
    import torch

    torch.set_num_threads(1)
    bundle = load_dataset(configs[0].dataset, 0)
    run_trial(configs[0], bundle=bundle)  # warm-up: first-call costs are not per trial
    t = time.monotonic()
    for cfg in configs:
        run_trial(cfg, bundle=load_dataset(cfg.dataset, cfg.seed))
    plain = time.monotonic() - t
    stamps, _ = timed_run(
        [
            *PAGS,
            "sweep",
            "--preset",
            "digits-quick",
            *args,
            *sets,
            "--num-cpus",
            "1",
            "--output",
            os.path.join(work, "overhead"),
        ],
        work,
    )
    tune_wall = stamps["tune_end"] - stamps["tune_start"]
    return {
        "trials": len(configs),
        "plain_s": plain,
        "tune_s": tune_wall,
        "per_trial_plain_s": plain / len(configs),
        "per_trial_overhead_s": (tune_wall - plain) / len(configs),
        "fixed_s": stamps["tune_start"],  # Ray start + data check, once per sweep
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ray
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, torch "
        f"{torch.__version__}, ray {ray.__version__}; 1-minute load average before the "
        f"run {load:.1f}"
    )


def markdown(command: str, quick: dict | None, over: dict, info: str) -> str:
    day = datetime.date.today().isoformat()
    out = [f"### Run of {day}", "", f"Machine: {info}.", "", "```", command, "```", ""]
    if quick:
        ok = "met" if quick["efficiency"] >= 0.85 else "missed"
        fast = "met" if quick["total_s"] < 300 else "missed"
        out += [
            f"- **Sweep efficiency on digits-quick: {quick['efficiency']:.1%}** (target >= 85%: "
            f"{ok}): {quick['trials']} trials, {quick['compute_s']:.0f} s of trial compute in "
            f"{quick['tune_wall_s']:.0f} s of Tune wall time on 2 CPUs.",
            f"- **README job end to end: {quick['total_s']:.0f} s** (target < 300 s: {fast}): "
            f"Ray start + cold artifact preparation {quick['before_tune_s']:.0f} s, whole "
            f"`pags sweep` {quick['sweep_s']:.0f} s, `pags analyze` {quick['analyze_s']:.0f} s.",
        ]
    out += [
        f"- **Ray per-trial overhead: {over['per_trial_overhead_s']:.2f} s** per trial "
        f"({over['trials']} sequential trials on 1 CPU: Tune {over['tune_s']:.1f} s vs plain "
        f"`run_trial` {over['plain_s']:.1f} s, i.e. {over['per_trial_plain_s']:.2f} s of work "
        f"per trial); once per sweep: Ray start + data check {over['fixed_s']:.1f} s.",
        "",
    ]
    return "\n".join(out)


def append_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Add `text` at the end of the "## Sweep engine" section (created at the end if absent);
    everything else in the file stays as it is."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    head = "## Sweep engine"
    if head not in doc:
        doc = (
            doc.rstrip("\n")
            + f"\n\n{head}\n\n`benchmarks/bench_sweep.py`: {__doc__.split(chr(10))[0]}\n\n"
        )
    start = doc.index(head)
    nxt = doc.find("\n## ", start + len(head))
    end = len(doc) if nxt < 0 else nxt + 1
    section = doc[start:end].rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    doc = doc[:start] + section + ("\n" + doc[end:] if nxt >= 0 else "")
    from analysis.results.atomic import atomic_write

    atomic_write(path, lambda f: f.write(doc.encode()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-quick", action="store_true", help="only the overhead comparison")
    ap.add_argument("--overhead-trials", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--no-append", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = ap.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="pags-bench-") as work:
        quick = None if args.skip_quick else efficiency(work, args.cpus)
        over = overhead(work, args.overhead_trials)
    text = markdown("python " + " ".join(sys.argv), quick, over, info)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
