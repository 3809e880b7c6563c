"""Figures: the paper's Figure 3 layout per method, and signal vs distractor robustness.

Plot functions take an Axes and return it. Strength is on a log x axis, so the unregularized
baseline (strength 0) cannot sit on it: it is drawn as a dashed horizontal line per quantity.
Points are means over seeds with +-1 std error bars; faint dots are single seeds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.groups import is_baseline, usable
from analysis.regimes import B1, B2
from analysis.results.methods import STRENGTH_SYMBOL

REGIME_COLORS = {"weak": "#cfd8e6", "bayes_aligned": "#cdebc4", "excessive": "#f3c9c4"}
LINESTYLES = {"paper": "-", "scale_free": "--"}


def _by_strength(rows: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per positive strength: mean and std over seeds of `col` (usable trials only)."""
    rows = usable(rows[~is_baseline(rows)], (col,))
    return rows.groupby("strength")[col].agg(["mean", "std", "count"]).reset_index()


def _baseline_mean(rows: pd.DataFrame, col: str) -> float:
    base = usable(rows[is_baseline(rows)], (col,))
    return float(base[col].mean()) if len(base) else np.nan


def plot_quantity(ax: Axes, rows: pd.DataFrame, col: str, label: str, color: str) -> Axes:
    """Mean +- std over seeds of `col` vs strength (log x), seeds as dots, baseline dashed."""
    stats = _by_strength(rows, col)
    seeds = usable(rows[~is_baseline(rows)], (col,))
    ax.plot(seeds["strength"], seeds[col], ".", color=color, alpha=0.25, ms=4)
    ax.errorbar(
        stats["strength"], stats["mean"], yerr=stats["std"].fillna(0.0), color=color,
        marker="o", ms=4, capsize=2, label=label,
    )  # fmt: skip
    base = _baseline_mean(rows, col)
    if np.isfinite(base):
        ax.axhline(base, color=color, ls=":", lw=1.2, label=f"{label}, strength 0")
    ax.set_xscale("log")
    return ax


def mark_incomplete(ax: Axes, rows: pd.DataFrame) -> Axes:
    """Red crosses at the top edge at strengths with diverged or errored trials."""
    bad = rows[(rows["status"] != "completed") & ~is_baseline(rows)]
    if len(bad):
        strengths = np.unique(bad["strength"].to_numpy(dtype=float))
        ax.plot(strengths, np.full(len(strengths), 0.97), "x", color="tab:red", ms=7,
                transform=ax.get_xaxis_transform(), label="diverged / error")  # fmt: skip
    return ax


def shade_regimes(ax: Axes, bounds: pd.DataFrame, criterion: str = "paper") -> Axes:
    """Shade the regimes of one method group under `criterion` (rows of `fit_regimes` output
    for that group), mark located boundaries with their bootstrap CI (band at the top) and
    the other criterion's boundaries as thin lines."""
    b = bounds.set_index(["criterion", "boundary"])
    if (criterion, B1) not in b.index or (criterion, B2) not in b.index:
        return ax
    lo1, hi1 = b.loc[(criterion, B1), ["bracket_low", "bracket_high"]]
    lo2, hi2 = b.loc[(criterion, B2), ["bracket_low", "bracket_high"]]
    left, right = np.log10(ax.get_xlim())
    spans = {
        "weak": (left, min(lo1, hi2)),
        "bayes_aligned": (hi1, lo2),
        "excessive": (hi2, right),
    }
    for regime, (a, z) in spans.items():
        a, z = max(a, left), min(z, right)
        if np.isfinite(a) and np.isfinite(z) and z > a:
            ax.axvspan(10**a, 10**z, color=REGIME_COLORS[regime], alpha=0.6, lw=0, zorder=0)
    for (crit, _), row in b.iterrows():
        if row["status"] != "ok":
            continue
        ls = LINESTYLES.get(crit, "-")
        lw = 1.4 if crit == criterion else 0.8
        ax.axvline(row["estimate"], color="k", ls=ls, lw=lw, zorder=1)
        if crit == criterion and np.isfinite(row["ci_low"]):
            lo_ci = max(row["ci_low"], 10**left)
            hi_ci = min(row["ci_high"], 10**right)
            ax.axvspan(lo_ci, hi_ci, ymin=0.96, ymax=1.0, color="k", alpha=0.5, lw=0)
    ax.set_xlim(10**left, 10**right)
    return ax


def regime_figure(
    rows: pd.DataFrame, bounds: pd.DataFrame, method: str, criterion: str = "paper"
) -> Figure:
    """Figure 3 layout for one method group: top on/off-manifold sensitivity; middle (when the
    trials have it) rho2 and rho1 with the isotropic rho2 (d - k) / d as a reference line;
    bottom accuracy (left axis) and alignment (right axis); regimes of `criterion` shaded (other
    criterion's boundaries dashed). `rows`: the group's trials incl. baseline; `bounds`: its
    boundaries."""
    has_rho = "rho2" in rows and np.isfinite(rows["rho2"].to_numpy(dtype=float)).any()
    n = 3 if has_rho else 2
    fig, axes = plt.subplots(n, 1, figsize=(6.4, 3.2 * n), sharex=True)
    top, bottom = axes[0], axes[-1]
    # Fix the x range first: autoscaling a single strength warns and collapses the axis.
    top.set_xscale("log")
    _pad_xlim(top, rows)
    plot_quantity(top, rows, "on_manifold_sensitivity", "on-manifold", "tab:blue")
    plot_quantity(top, rows, "off_manifold_sensitivity", "off-manifold", "tab:orange")
    mark_incomplete(top, rows)
    eps = rows["reference_eps"].dropna().unique()
    top.set_ylabel(f"sensitivity (L1 of softmax), eps={_fmt_list(eps)}")
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=7, loc="best")
    if has_rho:
        plot_rho(axes[1], rows)
    plot_quantity(bottom, rows, "test_accuracy", "accuracy", "tab:green")
    bottom.set_ylabel("test accuracy")
    twin = bottom.twinx()
    metric = _fmt_list(rows["alignment_metric"].replace("", np.nan).dropna().unique())
    plot_quantity(twin, rows, "alignment", "alignment", "tab:purple")
    # exact names: a cosine is a cosine, ST-LPIPS is not LPIPS (the metric string says which)
    label = metric if metric == "cosine" else f"1 - {metric or 'LPIPS'}"
    twin.set_ylabel(f"alignment ({label})")
    handles = bottom.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    if handles[0] + extra[0]:
        bottom.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="best")
    for ax in axes:
        shade_regimes(ax, bounds, criterion)
    bottom.set_xlabel(f"{STRENGTH_SYMBOL.get(method, 'strength')} (log scale)")
    top.set_title(f"{method}: regimes shaded by the {criterion.replace('_', '-')} criterion")
    fig.tight_layout()
    return fig


def plot_rho(ax: Axes, rows: pd.DataFrame) -> Axes:
    """rho2 (the gradient's off-manifold share) and rho1 (Definition 1, at the smallest noise
    level) vs strength, with the isotropic rho2 = (d - k) / d dotted: below it, the gradient
    prefers the tangent space."""
    plot_quantity(ax, rows, "rho2", "rho2", "tab:red")
    if "rho1" in rows and np.isfinite(rows["rho1"].to_numpy(dtype=float)).any():
        sigma = _fmt_list(rows["rho1_sigma"].dropna().unique()) if "rho1_sigma" in rows else ""
        plot_quantity(ax, rows, "rho1", f"rho1 (sigma={sigma})", "tab:brown")
    iso = rows["rho2_isotropic"].dropna().unique() if "rho2_isotropic" in rows else []
    for value in iso:
        ax.axhline(value, color="k", ls="--", lw=1.0, label=f"isotropic (d-k)/d = {value:.3g}")
    ax.set_ylabel("off-manifold share")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    return ax


def plot_noise_ratio(ax: Axes, noise: pd.DataFrame) -> Axes:
    """Relative noise robustness (signal/distractor) over the baseline's vs strength, one
    line per method, with bootstrap CI; 1 = unchanged from the unregularized model."""
    for method, rows in noise[noise["strength"] > 0].groupby("method"):
        rows = rows[np.isfinite(rows["ratio_to_baseline"])]
        if rows.empty:
            continue
        err = np.vstack([rows["ratio_to_baseline"] - rows["ci_low"],
                         rows["ci_high"] - rows["ratio_to_baseline"]])  # fmt: skip
        ax.errorbar(rows["strength"], rows["ratio_to_baseline"], yerr=np.clip(err, 0, None),
                    marker="o", ms=4, capsize=2, label=method)  # fmt: skip
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("strength (log scale; lambda, sigma or epsilon by method)")
    ax.set_ylabel("relative noise robustness / baseline's")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return ax


def plot_signal_distractor(ax: Axes, noise: pd.DataFrame) -> Axes:
    """Signal (solid) and distractor (dashed) sensitivity vs strength per method; the
    baseline's as dotted horizontal lines."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    pos = noise[noise["strength"] > 0]
    for i, (method, rows) in enumerate(pos.groupby("method")):
        c = colors[i % len(colors)]
        ax.plot(rows["strength"], rows["signal_sensitivity"], "-o", ms=3, color=c,
                label=f"{method} signal")  # fmt: skip
        ax.plot(rows["strength"], rows["distractor_sensitivity"], "--s", ms=3, color=c,
                label=f"{method} distractor")  # fmt: skip
    base = noise[noise["strength"] == 0]
    if len(base):
        ax.axhline(base["signal_sensitivity"].iloc[0], color="k", ls=":", lw=1)
        ax.axhline(base["distractor_sensitivity"].iloc[0], color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("strength (log scale)")
    ax.set_ylabel("sensitivity (L1 of softmax)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    return ax


def noise_figure(noise: pd.DataFrame) -> Figure:
    """Signal vs distractor robustness for one dataset/model (rows of `noise_robustness`)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    plot_signal_distractor(left, noise)
    plot_noise_ratio(right, noise)
    fig.tight_layout()
    return fig


def _pad_xlim(ax: Axes, rows: pd.DataFrame) -> None:
    s = rows.loc[~is_baseline(rows), "strength"].to_numpy(dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    if len(s):
        ax.set_xlim(s.min() / 1.6, s.max() * 1.6)


def _fmt_list(values) -> str:
    return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)
