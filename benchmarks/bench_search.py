"""Peak search against the dense grid: how many trials the Optuna search needs to find what the
`digits` grid finds (issue 14; goal: at most half the grid's trials).

1. The baseline (named): the `digits` preset's dense grid for one method, 9 strengths x 3 seeds
   plus 3 unregularized seeds. Its answer: the feasible strength (mean test accuracy >= the
   baseline's mean - 0.05) with the highest mean alignment, and a 95% t-interval of that mean
   from its 3 seeds.
2. The search: `--search optuna` on the same settings (2 seeds per suggested strength, 2
   baseline seeds). After each suggested strength, the best feasible mean alignment so far
   (analysis/search.py, as Optuna was told it); the search has "found it" at the first
   suggestion whose best so far is within 0.005 of the grid's best, or inside the grid's
   interval (two criteria, both reported). Trials counted = Tune trials until then, baseline
   included; ratio = that / the grid's trials.

    python benchmarks/bench_search.py [--epochs 4] [--eval-points 32] [--trials 8] [--method
        gradnorm] [--cache-dir DIR] [--work DIR] [--no-append]

The preset's full settings (20 epochs, 200 evaluation points) take hours on 2 CPU cores; the
flags shrink epochs and evaluation points for both runs alike. Appends the results, the
machine and the exact command to BENCHMARKS.md under "## Peak search".
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sweep import machine  # noqa: E402

from analysis import load_results  # noqa: E402
from analysis.results.layout import SWEEP_FILE  # noqa: E402
from analysis.search import search_history  # noqa: E402
from analysis.uncertainty import t_interval  # noqa: E402

PAGS = [sys.executable, "-m", "sweep.cli", "sweep", "--preset", "digits"]
DROP, CLOSE = 0.05, 0.005  # the search's default tolerance; "within 0.005 alignment"


def run(args: list[str], cwd: str) -> float:
    t = time.monotonic()
    out = subprocess.run([*PAGS, *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pags sweep failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    print("\n".join(ln for ln in out.stdout.splitlines() if ln.startswith("[pags] best")))
    return time.monotonic() - t


def grid_answer(exp: Path, method: str) -> dict:
    t = load_results(exp).trials
    done = t[t["status"] == "completed"]
    base = done[done["method"] == "none"]
    threshold = base["test_accuracy"].mean() - DROP
    rows = done[done["method"] == method]
    per = rows.groupby("strength").agg(
        alignment=("alignment", "mean"), accuracy=("test_accuracy", "mean"), n=("seed", "size")
    )
    feasible = per[per["accuracy"] >= threshold]
    if feasible.empty:
        raise SystemExit(f"no grid strength keeps accuracy >= {threshold:.3f}: nothing to find")
    best = feasible["alignment"].idxmax()
    est = t_interval(rows[rows["strength"] == best]["alignment"].to_numpy(float), 0.95)
    lo, hi = est.low, est.high
    return {
        "trials": len(t),
        "strengths": len(per),
        "feasible": len(feasible),
        "threshold": float(threshold),
        "best_strength": float(best),
        "best_alignment": float(feasible.loc[best, "alignment"]),
        "ci": (lo, hi),
        "table": per.reset_index().to_dict("records"),
    }


def search_answer(exp: Path, grid: dict, seeds: int) -> dict:
    t = load_results(exp).trials
    h = search_history(t, "alignment", DROP)
    baseline = int((t["method"] == "none").sum())
    out = {"trials": len(t), "suggestions": len(h), "history": h.to_dict("records")}
    targets = {"close": grid["best_alignment"] - CLOSE, "interval": grid["ci"][0]}
    for name, target in targets.items():
        hit = h[h["best_so_far"] >= target]
        first = int(hit["search_trial"].iloc[0]) if len(hit) else None
        out[name] = None if first is None else baseline + seeds * (first + 1)
    best = h[h["feasible"]].sort_values("value").tail(1)
    out["best"] = best.to_dict("records")[0] if len(best) else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="gradnorm")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--eval-points", type=int, default=32)
    p.add_argument("--trials", type=int, default=8, help="suggested strengths of the search")
    p.add_argument("--cache-dir", default="")
    p.add_argument("--work", default="", help="keep the experiments here (default: a temp dir)")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args()
    info = machine()
    work = a.work or tempfile.mkdtemp(prefix="pags-bench-search-")
    common = ["--epochs", str(a.epochs), "--set",
              f"eval_points={a.eval_points}", "--set", "noise_draws=4"]  # fmt: skip
    if a.cache_dir:
        common += ["--cache-dir", a.cache_dir]
    # The grid names the baseline itself (a search adds it): it sets the feasibility threshold.
    grid_s = run([*common, "--methods", f"none,{a.method}", "--output", f"{work}/grid"], work)
    grid = grid_answer(Path(work) / "grid", a.method)
    search_s = run(
        [
            *common,
            "--methods",
            a.method,
            "--search",
            "optuna",
            "--trials",
            str(a.trials),
            "--output",
            f"{work}/search",
        ],  # fmt: skip
        work,
    )
    seeds = json.loads((Path(work) / "search" / SWEEP_FILE).read_text())["seeds"]
    found = search_answer(Path(work) / "search", grid, seeds)
    command = "python benchmarks/bench_search.py " + " ".join(sys.argv[1:])
    text = markdown(command, info, a, grid, found, grid_s, search_s)
    print(text)
    if not a.no_append:
        path = ROOT / "BENCHMARKS.md"
        body = path.read_text()
        if "\n## Peak search\n" not in body:
            body += "\n## Peak search\n\n`benchmarks/bench_search.py`: " + __doc__.splitlines()[0]
            body += "\n"
        path.write_text(body + "\n" + text)


def ratio(n: int | None, total: int) -> str:
    return "not reached" if n is None else f"{n} trials = {n / total:.2f} of the grid's {total}"


def markdown(command, info, a, grid, found, grid_s, search_s) -> str:
    lo, hi = grid["ci"]
    best = found["best"]
    lines = [
        f"### Run of {datetime.date.today().isoformat()}",
        "",
        f"Machine: {info}.",
        "",
        "```",
        command,
        "```",
        "",
        f"Settings for both runs: `digits` preset, method {a.method}, {a.epochs} epochs, "
        f"{a.eval_points} evaluation points, 4 noise draws (the preset: 20 epochs, 200 points).",
        "",
        f"- **Grid** (baseline): {grid['trials']} trials ({grid['strengths']} strengths x 3 "
        f"seeds + 3 unregularized), {grid_s:.0f} s. Feasible (accuracy >= "
        f"{grid['threshold']:.3f}): {grid['feasible']} of {grid['strengths']} strengths; best "
        f"feasible {a.method} strength {grid['best_strength']:g}, mean alignment "
        f"{grid['best_alignment']:.4f}, 95% t-interval [{lo:.4f}, {hi:.4f}] over 3 seeds.",
        f"- **Search**: {found['trials']} trials ({found['suggestions']} suggested strengths x 2 "
        f"seeds + 2 unregularized), {search_s:.0f} s; its best feasible: "
        + (
            f"strength {best['strength']:g}, mean alignment {best['value']:.4f}."
            if best
            else "none."
        ),
        f"- **Within {CLOSE} of the grid's best**: {ratio(found['close'], grid['trials'])}.",
        f"- **Inside the grid's interval**: {ratio(found['interval'], grid['trials'])}.",
        "",
        "Search history (Optuna trial, strength, mean alignment, mean accuracy, feasible, best "
        "feasible so far):",
        "",
    ]
    for h in found["history"]:
        lines.append(
            f"- {h['search_trial']}: {h['strength']:g}, {h['value']:.4f}, "
            f"{h['test_accuracy']:.3f}, {'yes' if h['feasible'] else 'no'}, "
            f"{h['best_so_far']:.4f}"
        )
    lines += ["", "Grid per strength (strength, mean alignment, mean accuracy, seeds):", ""]
    for r in grid["table"]:
        lines.append(f"- {r['strength']:g}: {r['alignment']:.4f}, {r['accuracy']:.3f}, {r['n']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
