"""The picture the robustness field draws: alignment against robust accuracy (every method),
and for randomized smoothing against certified accuracy at a fixed radius (docs/method.md,
"Robust accuracy", "Certified radii").

One figure per (dataset, model): left, each completed trial's headline `alignment` against its
`robust_accuracy` (colour = method, marker size grows with strength, the baseline a black
star); right, randsmooth trials' `alignment` against `certified_accuracy` at `robust_radius`,
coloured by sigma. A table per group lists the means over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.groups import is_baseline, usable

METHOD_COLORS = {"gradnorm": "tab:blue", "smoothness": "tab:orange", "randsmooth": "tab:green",
                 "pgd_l2": "tab:red"}  # fmt: skip
TABLE_COLUMNS = ("method", "strength", "n_trials", "eval_accuracy", "robust_accuracy",
                 "certified_accuracy", "smoothed_accuracy", "alignment")  # fmt: skip


def has_robustness(trials: pd.DataFrame) -> bool:
    return "robust_accuracy" in trials and bool(
        np.isfinite(trials["robust_accuracy"].to_numpy(dtype=float)).any()
    )


def _size(strength: pd.Series) -> np.ndarray:
    """Marker area growing with log strength, comparable within a method."""
    s = np.log10(strength.to_numpy(dtype=float).clip(1e-12))
    span = s.max() - s.min() if len(s) else 0.0
    return 20 + 80 * ((s - s.min()) / span if span > 0 else np.zeros_like(s))


def robustness_figure(rows: pd.DataFrame) -> Figure:
    """Alignment vs robust accuracy (left) and vs certified accuracy (right, randsmooth)."""
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(10, 4))
    done = usable(rows, ("robust_accuracy", "alignment"))
    for method, g in done[~is_baseline(done)].groupby("method", sort=True):
        ax_r.scatter(g["robust_accuracy"], g["alignment"], s=_size(g["strength"]),
                     color=METHOD_COLORS.get(method, "tab:gray"), alpha=0.7,
                     label=method)  # fmt: skip
    base = done[is_baseline(done)]
    if len(base):
        ax_r.scatter(base["robust_accuracy"], base["alignment"], marker="*", s=150,
                     color="black", label="baseline")  # fmt: skip
    attack = ", ".join(sorted(set(done["robust_attack"].dropna()) - {""}))
    radius = ", ".join(f"{r:.3g}" for r in sorted(set(done["robust_radius"].dropna())))
    ax_r.set_xlabel(f"robust accuracy ({attack}, L2 radius {radius})")
    ax_r.set_ylabel("alignment (headline)")
    ax_r.legend(fontsize=7)
    smooth = done[(done["method"] == "randsmooth") & ~is_baseline(done)]
    if "certified_accuracy" in smooth:
        smooth = usable(smooth, ("certified_accuracy",))
    if len(smooth):
        sc = ax_c.scatter(smooth["certified_accuracy"], smooth["alignment"],
                          c=np.log10(smooth["strength"].to_numpy(dtype=float)), cmap="viridis",
                          s=40)  # fmt: skip
        fig.colorbar(sc, ax=ax_c, label="log10 sigma")
        ax_c.set_xlabel(f"certified accuracy at L2 radius {radius}")
        ax_c.set_ylabel("alignment (headline)")
    else:
        ax_c.text(0.5, 0.5, "no certified randsmooth trials", ha="center", va="center",
                  transform=ax_c.transAxes)  # fmt: skip
        ax_c.set_axis_off()
    fig.tight_layout()
    return fig


def robustness_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (method, strength) of the accuracies and alignment."""
    cols = [c for c in TABLE_COLUMNS[3:] if c in rows]
    done = rows[rows["status"] == "completed"]
    out = done.groupby(["method", "strength"], sort=True)[cols].mean().reset_index()
    out.insert(2, "n_trials", done.groupby(["method", "strength"], sort=True).size().to_numpy())
    return out


def robustness_section(doc, trials: pd.DataFrame, figdir: Path, save) -> dict[str, Path]:
    """The report's section (nothing when no trial measured robust accuracy); `save(fig,
    path)` writes a figure. Returns {figure name: path}."""
    figures: dict[str, Path] = {}
    if not has_robustness(trials):
        return figures
    for (dataset, model), rows in trials.groupby(["dataset", "model"], sort=True):
        if not has_robustness(rows):
            continue
        doc.heading(f"Alignment and robustness on {dataset} ({model})")
        doc.para(
            "Robust accuracy under the L2 attack named in the figure, at RobustBench's radius "
            "scaled to the image size, on the evaluation points (an upper bound on the true "
            "robust accuracy); certified accuracy of the smoothed classifier (Cohen et al. "
            "2019) at the same radius for randsmooth trials. Means over seeds."
        )
        doc.table(robustness_table(rows))
        name = "robustness_" + "_".join(
            "".join(ch if ch.isalnum() else "-" for ch in str(k)) for k in (dataset, model)
        )
        figures[name] = save(robustness_figure(rows), figdir / f"{name}.png")
        doc.image(figures[name], f"figures/{name}.png",
                  "Left: headline alignment against robust accuracy per trial (marker size "
                  "grows with strength; star: no regularization). Right: randsmooth trials' "
                  "alignment against certified accuracy at the same radius.")  # fmt: skip
    return figures
