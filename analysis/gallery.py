"""Gradient gallery: input, score, and the input gradients of a weak, a Bayes-aligned and an
excessive model side by side (the paper's qualitative figure).

The sweep saves per trial `<results_dir>/maps/<config_id>.npz` with arrays
`inputs (K, C, H, W)`, `score (K, C, H, W)` and `gradient (K, C, H, W)` for the same K
evaluation points in every trial. Maps are scaled per image by their max |value| into
[-1, 1] (docs/method.md, "Perceptual alignment"): one channel is drawn with a diverging
colormap (red +, blue -), three channels as RGB with 0 at mid-grey.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.groups import log_strength
from analysis.results.layout import MAP_KEYS, MAPS_DIR, maps_file
from analysis.results.methods import STRENGTH_SYMBOL

GALLERY_REGIMES = ("weak", "bayes_aligned", "excessive")


def maps_path(results_dirs, config_id: str) -> Path | None:
    """The maps file of `config_id` in the first of `results_dirs` (a path or a list of
    paths) that has one; None if none has."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    for d in dirs:
        path = Path(maps_file(str(d), config_id))
        if path.is_file():
            return path
    return None


def load_maps(path: str | Path) -> dict[str, np.ndarray]:
    """The three arrays of one maps file; ValueError naming the file if one is missing or the
    shapes disagree."""
    with np.load(path) as data:
        missing = [k for k in MAP_KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}")
        maps = {k: np.asarray(data[k], dtype=float) for k in MAP_KEYS}
    shapes = {k: v.shape for k, v in maps.items()}
    if len(set(shapes.values())) != 1 or maps["inputs"].ndim != 4:
        raise ValueError(f"{path}: expected equal (K, C, H, W) shapes, got {shapes}")
    return maps


def show_image(ax: Axes, image: np.ndarray) -> Axes:
    """An input image (C, H, W) in its own value range (grey for C = 1, RGB for C = 3)."""
    img = image if image.shape[0] in (1, 3) else image.mean(axis=0, keepdims=True)
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:  # not in [0, 1]: stretch so that it is visible
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.transpose(img, (1, 2, 0)))
    ax.set_axis_off()
    return ax


def show_map(ax: Axes, m: np.ndarray) -> Axes:
    """A score or gradient map (C, H, W), scaled by its max |value| into [-1, 1]."""
    peak = float(np.abs(m).max())
    m = m / peak if peak > 0 else m
    if m.shape[0] == 3:
        ax.imshow(np.transpose((m + 1) / 2, (1, 2, 0)))
    else:
        ax.imshow(m.mean(axis=0), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_axis_off()
    return ax


def choose_trials(
    labels: pd.DataFrame, results_dirs, method: str, criterion: str = "paper"
) -> dict[str, pd.Series]:
    """Per regime, one completed trial of `method` with a maps file: the one nearest the
    regime's median log strength. Weak may fall back to a baseline trial. `labels` is the
    output of `label_trials` restricted to one dataset and model."""
    col = f"regime_{criterion}"
    done = labels[labels["status"] == "completed"].copy()
    done["_x"] = log_strength(done)
    done = done[[maps_path(results_dirs, c) is not None for c in done["config_id"]]]
    chosen = {}
    for regime in GALLERY_REGIMES:
        cand = done[(done[col] == regime) & (done["method"] == method)]
        if cand.empty and regime == "weak":
            cand = done[(done[col] == regime) & (done["method"] == "none")]
        if cand.empty:
            continue
        finite = cand["_x"].replace(-np.inf, np.nan)
        centre = finite.median() if finite.notna().any() else -np.inf
        dist = (cand["_x"] - centre).abs().fillna(0.0) if np.isfinite(centre) else cand["_x"] * 0
        chosen[regime] = cand.loc[dist.idxmin()]
    return chosen


def _why_none_chosen(labels: pd.DataFrame, dirs, method: str, criterion: str) -> str:
    """Why `choose_trials` found no trial: no maps, or maps but no regime label."""
    mine = labels[(labels["method"] == method) & (labels["status"] == "completed")]
    with_maps = mine[[maps_path(dirs, c) is not None for c in mine["config_id"]]]
    if with_maps.empty:
        return f"none of its {len(mine)} completed trials has a maps file"
    return (
        f"its {len(with_maps)} completed trials with maps have no regime label by the "
        f"{criterion} criterion (regime boundaries not found; see the regime table)"
    )


def gallery_figure(
    results_dirs,
    labels: pd.DataFrame,
    method: str,
    criterion: str = "paper",
    n_examples: int = 3,
) -> tuple[Figure | None, str]:
    """(figure or None, note) for one method. `results_dirs`: a path or a list of paths;
    `labels`: `label_trials` output for one dataset and model. Rows: up to `n_examples`
    evaluation points; columns: input, score, then the gradient of the chosen weak /
    Bayes-aligned / excessive trial. The note says what was skipped and why."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    if not any((Path(d) / MAPS_DIR).is_dir() for d in dirs):
        return None, "gallery skipped: no maps/ directory in " + ", ".join(map(str, dirs))
    chosen = choose_trials(labels, dirs, method, criterion)
    if not chosen:
        return None, f"gallery skipped for {method}: " + _why_none_chosen(labels, dirs, method,
                                                                           criterion)  # fmt: skip
    maps, notes = {}, []
    for regime, trial in chosen.items():
        try:
            maps[regime] = load_maps(maps_path(dirs, trial["config_id"]))
        except (OSError, ValueError) as err:
            notes.append(f"{regime}: unreadable maps ({err})")
    if not maps:
        return None, "gallery skipped: " + "; ".join(notes)
    first = next(iter(maps.values()))
    k = min(n_examples, first["inputs"].shape[0])
    missing = [r for r in GALLERY_REGIMES if r not in maps]
    if missing:
        notes.append("no trial with maps in regime(s) " + ", ".join(missing))
    sym = STRENGTH_SYMBOL.get(method, "strength")
    fig, axes = plt.subplots(k, 2 + len(GALLERY_REGIMES), figsize=(9, 1.9 * k + 0.4),
                             squeeze=False)  # fmt: skip
    for i in range(k):
        show_image(axes[i, 0], first["inputs"][i])
        show_map(axes[i, 1], first["score"][i])
        for j, regime in enumerate(GALLERY_REGIMES, start=2):
            if regime in maps and i < maps[regime]["gradient"].shape[0]:
                show_map(axes[i, j], maps[regime]["gradient"][i])
            else:
                axes[i, j].set_axis_off()
    titles = ["input", "score"] + [
        f"{r.replace('_', '-')}\n{sym}={chosen[r]['strength']:.3g}" if r in chosen else r
        for r in GALLERY_REGIMES
    ]
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=8)
    fig.tight_layout()
    return fig, "; ".join(notes)
