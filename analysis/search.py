"""The peak search in the tables: its optimization history, its feasible best with an interval
from the best strength's seeds, and the search beside a grid of the same method.

A search (`pags sweep --search optuna`, sweep/tune/search.py) leaves one row per (suggested
strength, seed) in trials.parquet, marked by `search` (the study) and `search_trial` (the
Optuna trial number, shared by the strength's seeds). Its objective and accuracy tolerance are
in the experiment's sweep_config.json; feasible = mean test accuracy over the strength's seeds
>= the mean of the unregularized baseline's seeds minus the tolerance (the constraint the
search was given). Everything here is recomputed from those files, as Optuna saw it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.groups import BASELINE_METHOD
from analysis.report_tables import BEST_COLUMNS, HISTORY_COLUMNS
from analysis.results.columns import TRIALS_COLUMNS
from analysis.results.layout import SWEEP_FILE
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.uncertainty import t_interval


def _sign(objective: str) -> float:
    """+1 where higher is better (the schema's direction of the objective's column)."""
    col = next(c for c in TRIALS_COLUMNS if c.name == objective)
    return -1.0 if col.higher_is_better is False else 1.0


def search_settings(sources) -> dict[str, tuple[str, float]]:
    """{source directory: (objective, max_accuracy_drop)} of the searches among `sources`."""
    out = {}
    for src in sources:
        path = Path(src) / SWEEP_FILE
        if not path.is_file():
            continue
        cfg = json.loads(path.read_text())
        if cfg.get("search", "grid") != "grid":
            out[str(src)] = (cfg.get("objective", "alignment"), cfg.get("max_accuracy_drop", 0.05))
    return out


def search_history(trials: pd.DataFrame, objective: str, max_drop: float) -> pd.DataFrame:
    """One row per suggested strength of every search in `trials`, in Optuna's order: the mean
    objective and test accuracy over its completed seeds (a seed that did not complete counts
    as accuracy 0, as in the search), feasibility and the best feasible value so far."""
    rows = []
    if "search" not in trials or objective not in trials:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    sign = _sign(objective)
    searched = trials[trials["search"] != ""]
    for (dataset, model, method, name), group in searched.groupby(
        ["dataset", "model", "method", "search"], sort=True
    ):
        base = trials[
            (trials["method"] == BASELINE_METHOD)
            & (trials["dataset"] == dataset)
            & (trials["model"] == model)
            & (trials["status"] == "completed")
        ]
        if "experiment" in base:  # the search's own baseline seeds, not a grid's beside it
            base = base[base["experiment"].isin(set(group["experiment"]))]
        threshold = float(base["test_accuracy"].mean()) - max_drop if len(base) else np.nan
        best = np.nan
        for number, seeds in group.groupby("search_trial", sort=True):
            done = seeds[seeds["status"] == "completed"]
            values = done[objective].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            accuracy = np.where(
                seeds["status"] == "completed", seeds["test_accuracy"].fillna(0.0), 0.0
            ).mean()
            value = float(values.mean()) if len(values) else np.nan
            feasible = bool(np.isfinite(value) and accuracy >= threshold)
            if feasible and not (sign * value <= sign * best):
                best = value
            rows.append({
                "dataset": dataset, "model": model, "method": method, "search": name,
                "objective": objective, "search_trial": int(number),
                "strength": float(seeds["strength"].iloc[0]), "n_seeds": len(values),
                "value": value, "test_accuracy": float(accuracy),
                "min_test_accuracy": threshold, "feasible": feasible, "best_so_far": best,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def search_best(trials: pd.DataFrame, history: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Per search: the feasible best strength, a Student-t interval of its objective from its
    seeds, and the range of feasible strengths whose mean lies inside that interval (the
    strengths the seeds cannot tell apart from the best)."""
    out = []
    for (dataset, model, method, name), h in history.groupby(
        ["dataset", "model", "method", "search"], sort=True
    ):
        objective = h["objective"].iloc[0]
        sign = _sign(objective)
        feasible = h[h["feasible"]]
        row = {
            "dataset": dataset, "model": model, "method": method, "search": name,
            "objective": objective, "n_trials": len(h), "n_feasible": len(feasible),
            "best_strength": np.nan, "best_value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
            "n_seeds": 0, "best_test_accuracy": np.nan,
            "min_test_accuracy": float(h["min_test_accuracy"].iloc[0]),
            "strength_low": np.nan, "strength_high": np.nan, "finding": "",
        }  # fmt: skip
        sym = STRENGTH_SYMBOL.get(method, "strength")
        if feasible.empty:
            row["finding"] = (
                f"{name}: none of {len(h)} suggested strengths kept test accuracy >= "
                f"{row['min_test_accuracy']:.3f}"
            )
            out.append(row)
            continue
        best = feasible.loc[(sign * feasible["value"]).idxmax()]
        seeds = trials[
            (trials["search"] == name)
            & (trials["search_trial"] == best["search_trial"])
            & (trials["status"] == "completed")
        ][objective].to_numpy(dtype=float)
        seeds = seeds[np.isfinite(seeds)]
        est = t_interval(seeds, ci)
        lo, hi = (est.low, est.high) if len(seeds) > 1 else (est.estimate, est.estimate)
        inside = feasible[(feasible["value"] >= lo) & (feasible["value"] <= hi)]
        row.update(
            best_strength=best["strength"], best_value=best["value"], ci_low=lo, ci_high=hi,
            n_seeds=len(seeds), best_test_accuracy=best["test_accuracy"],
            strength_low=float(inside["strength"].min()) if len(inside) else best["strength"],
            strength_high=float(inside["strength"].max()) if len(inside) else best["strength"],
        )  # fmt: skip
        row["finding"] = (
            f"{name}: best feasible {sym}={best['strength']:g}, {objective} "
            f"{best['value']:.4f} [{lo:.4f}, {hi:.4f}] ({ci:.0%} t-interval over "
            f"{len(seeds)} seeds), test accuracy {best['test_accuracy']:.3f} >= "
            f"{row['min_test_accuracy']:.3f}; feasible strengths within that interval: "
            f"{sym} in [{row['strength_low']:g}, {row['strength_high']:g}] "
            f"({len(feasible)} of {len(h)} suggestions feasible)"
        )
        out.append(row)
    return pd.DataFrame(out, columns=list(BEST_COLUMNS))


def search_figure(history: pd.DataFrame, grid: pd.DataFrame) -> Figure:
    """Left: optimization history (each suggestion's mean over seeds; filled = feasible) and
    the best feasible so far. Right: the same against strength (log x), beside the grid's
    per-strength means +- std over seeds (`grid`: completed grid rows of the method), if any.
    `history` holds one search."""
    objective, method = history["objective"].iloc[0], history["method"].iloc[0]
    fig = Figure(figsize=(9, 3.4))
    ax, bx = fig.subplots(1, 2)
    ok, bad = history[history["feasible"]], history[~history["feasible"]]
    for axis, x in ((ax, "search_trial"), (bx, "strength")):
        axis.plot(ok[x], ok["value"], "o", color="tab:blue", label="feasible")
        axis.plot(bad[x], bad["value"], "o", mfc="none", color="tab:red", label="infeasible")
        axis.set_ylabel(f"{objective} (mean over seeds)")
    ax.step(history["search_trial"], history["best_so_far"], where="post", color="tab:blue",
            lw=1, label="best feasible so far")  # fmt: skip
    ax.set_xlabel("Optuna trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(grid):
        g = grid.groupby("strength")[objective].agg(["mean", "std"]).reset_index()
        bx.errorbar(g["strength"], g["mean"], yerr=g["std"].fillna(0.0), color="0.4",
                    marker="s", ms=3, capsize=2, label="grid (mean +- std)")  # fmt: skip
    bx.set_xscale("log")
    bx.set_xlabel(STRENGTH_SYMBOL.get(method, "strength"))
    ax.legend(fontsize=7)
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig


def search_section(doc, trials: pd.DataFrame, sources, out_dir: Path) -> dict[str, Path]:
    """The report's "Peak search" section (nothing when no source holds a search): per search
    its best, history table and figure; writes search_history.parquet and search_best.parquet
    into `out_dir`. Returns {figure name: path}."""
    settings = search_settings(sources)
    if not settings or "search" not in trials:
        return {}
    (objective, max_drop), *others = settings.values()
    if any(o != (objective, max_drop) for o in others):
        doc.heading("Peak search")
        doc.para("Searches with different objectives or tolerances: not compared here.")
        return {}
    history = search_history(trials, objective, max_drop)
    best = search_best(trials, history)
    history.to_parquet(out_dir / "search_history.parquet", index=False)
    best.to_parquet(out_dir / "search_best.parquet", index=False)
    doc.heading("Peak search")
    doc.para(
        f"Optuna TPE over log strength; each suggestion trained with several seeds, its value "
        f"the mean {objective} over them; feasible when its mean test accuracy is at least "
        f"the unregularized baseline's minus {max_drop:g}."
    )
    figures = {}
    for _, row in best.iterrows():
        h = history[history["search"] == row["search"]]
        doc.para(row["finding"] + ".")
        doc.table(h[["search_trial", "strength", "n_seeds", "value", "test_accuracy",
                     "feasible", "best_so_far"]])  # fmt: skip
        grid = trials[
            (trials["search"] == "") & (trials["method"] == row["method"])
            & (trials["dataset"] == row["dataset"]) & (trials["model"] == row["model"])
            & (trials["status"] == "completed") & (trials["strength"] > 0)
        ]  # fmt: skip
        name = f"search_{row['search']}_{row['dataset']}".replace("/", "-")
        fig = search_figure(h, grid)
        path = out_dir / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110)
        figures[name] = path
        doc.image(path, f"figures/{name}.png",
                  "Left: optimization history (filled: feasible; line: best feasible so far). "
                  "Right: the same vs strength" + (", beside the grid's means +- std over seeds"
                  if len(grid) else "") + ".")  # fmt: skip
    return figures
