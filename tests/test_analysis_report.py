"""write_report: files written, self-contained HTML, and degenerate results that still give a
report saying what could not be computed."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import ResultsError
from analysis.report import TABLE_FILES, write_report
from analysis.report_tables import REPORT_TABLES

try:
    from test_analysis_fakes import make_tables, write_results
except ImportError:
    from tests.test_analysis_fakes import make_tables, write_results

N_BOOT = 100


def _write_maps(directory, trials, shape=(2, 1, 12, 8)):
    (directory / "maps").mkdir()
    rng = np.random.default_rng(0)
    for cid in trials["config_id"]:
        arrays = {k: rng.standard_normal(shape) for k in ("inputs", "score", "gradient")}
        np.savez(directory / "maps" / f"{cid}.npz", **arrays)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("results")
    trials, measures = make_tables(methods=("gradnorm", "randsmooth"))
    write_results(directory, trials, measures)
    _write_maps(directory, trials[trials["method"] == "gradnorm"])
    return directory, write_report(directory, n_boot=N_BOOT)


def test_writes_markdown_html_tables_and_figures(report):
    directory, paths = report
    out = directory / "report"
    assert paths["markdown"] == out / "report.md" and paths["html"] == out / "report.html"
    for name in TABLE_FILES:
        assert paths[name].is_file()
    figures = [k for k in paths if k.startswith("figure:")]
    assert {"figure:regimes_digits_cnn_gradnorm", "figure:gallery_digits_cnn_gradnorm"} <= set(
        figures
    )
    assert all(paths[k].suffix == ".png" and paths[k].stat().st_size > 0 for k in figures)
    assert not list(out.glob("*.tmp"))


def test_written_tables_have_exactly_the_contract_columns(report):
    """Every report table as analysis.report_tables.REPORT_TABLES declares it, in order."""
    _, paths = report
    for name in TABLE_FILES:
        assert list(pd.read_parquet(paths[name]).columns) == list(REPORT_TABLES[name]), name


def test_regimes_table_has_one_row_per_boundary(report):
    _, paths = report
    regimes = pd.read_parquet(paths["regimes"])
    assert len(regimes) == 2 * 2 * 2  # methods x criteria x boundaries
    assert {"estimate", "ci_low", "ci_high", "reason", "criterion", "boundary"} <= set(
        regimes.columns
    )
    ok = regimes[regimes["status"] == "ok"]
    assert len(ok) == 8 and (ok["ci_low"] < ok["ci_high"]).all()
    # The written table carries the flag, and it agrees with the written values.
    outside = (ok["estimate"] < ok["ci_low"]) | (ok["estimate"] > ok["ci_high"])
    assert (ok["estimate_outside_ci"] == outside).all()


def test_markdown_states_findings_in_plain_words(report):
    _, paths = report
    text = paths["markdown"].read_text()
    assert re.search(r"peak alignment for gradnorm at lambda=\S+ \[\S+, \S+\]", text)
    assert "inside the Bayes-aligned regime (paper criterion)" in text
    assert "weak -> Bayes-aligned at lambda=" in text
    assert "scale-free criterion" in text
    assert "Nothing: every value above was computed." in text
    assert "figures/regimes_digits_cnn_gradnorm.png" in text
    # rho2 vs alignment, and the boundaries at the other step sizes (fakes: eps 1, 2*, 4)
    assert re.search(
        r"Spearman correlation of rho2 \(the gradient's off-manifold share\) with "
        r"alignment on digits/cnn \(all methods, \d+ trials; within each seed, t, \d seeds\): "
        r"rho = \S+ \[",
        text,
    )
    assert "Do the boundaries move with the step size?" in text
    assert "eps=2*" in text and "moves" in text
    # randsmooth has no maps: its gallery is skipped with a note.
    assert "gallery skipped for randsmooth" in text.lower()


def test_html_is_self_contained(report):
    _, paths = report
    html = paths["html"].read_text()
    n_figures = sum(k.startswith("figure:") for k in paths)
    assert html.count('src="data:image/png;base64,') == n_figures
    assert not re.search(r'src="(?!data:)', html)  # no external references
    assert "<table>" in html


def test_report_is_reproducible(tmp_path):
    write_results(tmp_path, *make_tables(strengths=(0.1, 1.0, 10.0, 100.0), seeds=(0, 1)))
    first = write_report(tmp_path, out_dir=tmp_path / "a", n_boot=20)
    again = write_report(tmp_path, out_dir=tmp_path / "b", n_boot=20)
    regimes = [pd.read_parquet(p["regimes"]) for p in (first, again)]
    pd.testing.assert_frame_equal(regimes[0], regimes[1])
    assert first["markdown"].read_text() == again["markdown"].read_text()


def test_missing_maps_directory_is_noted(tmp_path):
    write_results(tmp_path, *make_tables(strengths=(0.1, 1.0, 10.0), seeds=(0, 1)))
    text = write_report(tmp_path, n_boot=20)["markdown"].read_text()
    assert "Gallery skipped: no maps/ directory" in text


def test_unreadable_results_raise(tmp_path):
    with pytest.raises(ResultsError):
        write_report(tmp_path / "missing")


def _degenerate(name: str):
    trials, measures = make_tables(seeds=(0, 1))
    if name == "one_trial":
        one = trials[trials["method"] != "none"].iloc[[3]]
        return one, measures[measures["config_id"].isin(one["config_id"])]
    if name == "all_diverged":
        cols = ["test_accuracy", "on_manifold_sensitivity", "off_manifold_sensitivity",
                "alignment", "relative_off_manifold_robustness"]  # fmt: skip
        return trials.assign(status="diverged", **{c: np.nan for c in cols}), measures
    if name == "single_strength":
        return trials[trials["strength"].isin([0.0, 1.0])], measures
    if name == "nans":
        rng = np.random.default_rng(1)
        trials = trials.copy()
        for col in ("on_manifold_sensitivity", "alignment", "test_accuracy"):
            trials.loc[rng.random(len(trials)) < 0.3, col] = np.nan
        return trials, measures
    if name == "no_baseline":
        return trials[trials["method"] != "none"], measures
    if name == "only_baseline":
        return trials[trials["method"] == "none"], measures
    if name == "empty":
        return trials.iloc[0:0], measures.iloc[0:0]
    raise ValueError(name)


CASES = {
    "one_trial": "the segmented fit needs 2 strengths > 0",
    "all_diverged": "no completed trials with finite accuracy",
    "single_strength": "crossed between strength 0 and the smallest strength",
    "nans": None,
    "no_baseline": "no unregularized baseline (method none)",
    "only_baseline": "only unregularized (method none) trials",
    "empty": "trials.parquet has no rows",
}


@pytest.mark.parametrize("name", list(CASES))
def test_degenerate_results_still_give_a_report(tmp_path, name):
    trials, measures = _degenerate(name)
    write_results(tmp_path, trials, measures)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent numpy/pandas/matplotlib complaints
        paths = write_report(tmp_path, n_boot=20)
    text = paths["markdown"].read_text()
    assert "internal error" not in text
    section = text[text.index("## What could not be computed") :]
    if CASES[name]:
        assert CASES[name] in section
    assert paths["html"].is_file() and paths["regimes"].is_file()
    pd.read_parquet(paths["regimes"])  # readable even when empty


def test_chance_accuracy_warning():
    """Models at chance are named; a table without num_classes (older pags) gets no warning."""
    import pandas as pd

    from analysis.report import chance_warning

    t = pd.DataFrame({"status": ["completed", "completed", "completed", "error"],
                      "num_classes": [10, 10, 10, 10], "method": ["none", "gradnorm", "pgd_l2",
                      "none"], "strength": [0.0, 100.0, 5.0, 0.0],
                      "test_accuracy": [0.93, 0.12, 0.149, 0.0]})  # fmt: skip
    text = chance_warning(t)
    assert text.startswith("2 of 3 completed trials are within 0.05 of chance")
    assert "gradnorm 100" in text and "pgd_l2 5" in text and "none" not in text
    assert chance_warning(t.assign(test_accuracy=[0.1, 0.1, 0.1, 0.1])).startswith("every")
    assert chance_warning(t.assign(test_accuracy=0.9)) == ""
    assert chance_warning(t.drop(columns="num_classes")) == ""
