"""Plot functions take and return Axes; the gallery reads maps files and reports gaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from analysis import fit_regimes, label_trials  # noqa: E402
from analysis.gallery import gallery_figure, load_maps, show_image, show_map  # noqa: E402
from analysis.groups import split_groups  # noqa: E402
from analysis.plots import plot_quantity, regime_figure, shade_regimes  # noqa: E402
from analysis.results import tables  # noqa: E402

try:
    from test_analysis_fakes import make_tables
except ImportError:
    from tests.test_analysis_fakes import make_tables


@pytest.fixture(scope="module")
def fitted():
    trials, _ = make_tables(seeds=(0, 1))
    trials = tables.coerce(trials, "trials")
    bounds = fit_regimes(trials, rng=np.random.default_rng(0), n_boot=20)
    return trials, bounds


def test_axes_in_axes_out(fitted):
    trials, bounds = fitted
    (_, rows), = split_groups(trials)  # fmt: skip
    fig, ax = plt.subplots()
    assert plot_quantity(ax, rows, "alignment", "alignment", "k") is ax
    assert shade_regimes(ax, bounds, "paper") is ax
    assert len(ax.patches) >= 3  # weak, Bayes-aligned, excessive spans
    plt.close(fig)
    fig = regime_figure(rows, bounds, "gradnorm")
    assert len(fig.axes) == 4  # sensitivities, rho, bottom, and bottom's twin for alignment
    rho_ax = fig.axes[1]
    iso = [ln for ln in rho_ax.get_lines() if ln.get_label().startswith("isotropic")]
    assert len(iso) == 1 and iso[0].get_ydata()[0] == 0.96  # the isotropic reference line
    plt.close(fig)
    fig = regime_figure(rows.drop(columns=["rho1", "rho2"]), bounds, "gradnorm")
    assert len(fig.axes) == 3  # tables from before rho: no rho panel
    plt.close(fig)


def test_gallery_with_rgb_maps_and_a_missing_regime(tmp_path, fitted):
    trials, bounds = fitted
    labels = label_trials(trials, bounds)
    (tmp_path / "maps").mkdir()
    rng = np.random.default_rng(0)
    keep = labels[labels["regime_paper"] != "excessive"]["config_id"]
    for cid in keep:
        arrays = {k: rng.random((3, 3, 8, 8)) for k in ("inputs", "score", "gradient")}
        np.savez(tmp_path / "maps" / f"{cid}.npz", **arrays)
    fig, note = gallery_figure(tmp_path, labels, "gradnorm", n_examples=2)
    assert fig is not None and len(fig.axes) == 2 * 5
    assert "no trial with maps in regime(s) excessive" in note
    plt.close(fig)


def test_gallery_note_says_why_it_is_skipped(tmp_path, fitted):
    """Maps but no regime label is not the same as no maps: the note tells them apart."""
    trials, bounds = fitted
    labels = label_trials(trials, bounds)
    (tmp_path / "maps").mkdir()
    gradnorm = labels[labels["method"] == "gradnorm"]
    fig, note = gallery_figure(tmp_path, labels, "gradnorm")
    assert fig is None and "none of its" in note and "has a maps file" in note
    for cid in gradnorm["config_id"]:
        np.savez(tmp_path / "maps" / f"{cid}.npz", **{k: np.zeros((1, 1, 4, 4)) for k in
                                                         ("inputs", "score", "gradient")})
    unlabelled = labels.assign(regime_paper=None)
    fig, note = gallery_figure(tmp_path, unlabelled, "gradnorm")
    done = int((gradnorm["status"] == "completed").sum())
    assert fig is None and f"its {done} completed trials with maps have no regime label" in note


def test_load_maps_names_the_problem(tmp_path):
    np.savez(tmp_path / "bad.npz", inputs=np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="missing arrays"):
        load_maps(tmp_path / "bad.npz")


def test_show_functions_handle_odd_inputs():
    fig, ax = plt.subplots()
    assert show_image(ax, np.full((2, 4, 4), 5.0)) is ax  # 2 channels, constant, outside [0, 1]
    assert show_map(ax, np.zeros((1, 4, 4))) is ax  # all-zero map
    plt.close(fig)
