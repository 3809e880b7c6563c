"""`pags analyze`'s robustness section: alignment against robust and certified accuracy."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.report import write_report  # noqa: E402
from analysis.results import tables  # noqa: E402
from analysis.robustness import robustness_figure, robustness_table  # noqa: E402

try:
    from test_analysis_fakes import make_tables, write_results
except ImportError:
    from tests.test_analysis_fakes import make_tables, write_results


def _with_robustness(trials: pd.DataFrame) -> pd.DataFrame:
    t = trials.copy()
    x = np.log10(t["strength"].where(t["strength"] > 0, 1e-3))
    t["eval_accuracy"] = t["test_accuracy"]
    t["robust_accuracy"] = (0.3 + 0.1 * x).clip(0, 1) * t["test_accuracy"]
    t["robust_attack"] = "apgd-ce-l2@20"
    t["robust_radius"] = 0.179
    smooth = t["method"] == "randsmooth"
    t["certified_accuracy"] = np.where(smooth, 0.5 * t["robust_accuracy"], np.nan)
    t["smoothed_accuracy"] = np.where(smooth, t["test_accuracy"], np.nan)
    return t


def test_table_means_over_seeds_and_figure_panels():
    trials, _ = make_tables(methods=("gradnorm", "randsmooth"), seeds=(0, 1))
    t = tables.coerce(_with_robustness(trials), "trials")
    table = robustness_table(t)
    one = table[(table.method == "randsmooth") & (table.strength == table.strength.max())]
    rows = t[(t.method == "randsmooth") & (t.strength == t.strength.max())]
    assert one["n_trials"].item() == 2
    assert one["robust_accuracy"].item() == rows["robust_accuracy"].mean()
    assert one["certified_accuracy"].item() == rows["certified_accuracy"].mean()
    fig = robustness_figure(t)
    left, right = fig.axes[:2]
    # every completed trial is a point on the left, the randsmooth ones on the right
    assert sum(len(c.get_offsets()) for c in left.collections) == len(t)
    assert len(right.collections[0].get_offsets()) == int((t.method == "randsmooth").sum())
    assert "apgd-ce-l2@20" in left.get_xlabel() and "0.179" in right.get_xlabel()


def test_report_has_the_section_only_with_robust_accuracy(tmp_path):
    trials, measures = make_tables(methods=("randsmooth",), seeds=(0,))
    write_results(tmp_path / "plain", trials, measures)
    paths = write_report(tmp_path / "plain", n_boot=10)
    assert not any(k.startswith("figure:robustness") for k in paths)
    write_results(tmp_path / "robust", _with_robustness(trials), measures)
    paths = write_report(tmp_path / "robust", n_boot=10)
    assert "figure:robustness_digits_cnn" in paths
    assert "Alignment and robustness on digits" in paths["markdown"].read_text()
