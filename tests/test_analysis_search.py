"""The peak search in the report (analysis/search.py): history, feasible best, seed interval."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.search import search_best, search_history, search_section


def rows():
    """Baseline accuracy 0.9 (2 seeds); three suggested strengths of 2 seeds each: the best
    alignment (trial 1) loses accuracy, trial 2 is the feasible best."""
    r = [("none", 0.0, -1, s, 0.5, 0.9, "") for s in (0, 1)]
    r += [("gradnorm", 0.1, 0, s, a, 0.89, "search-gradnorm") for s, a in ((0, 0.60), (1, 0.62))]
    r += [("gradnorm", 10.0, 1, s, a, 0.70, "search-gradnorm") for s, a in ((0, 0.90), (1, 0.92))]
    r += [("gradnorm", 1.0, 2, s, a, 0.88, "search-gradnorm") for s, a in ((0, 0.70), (1, 0.74))]
    r += [("gradnorm", 3.0, -1, s, 0.65, 0.87, "") for s in (0, 1)]  # a grid of the same method
    r += [("none", 0.0, -1, 2, 0.5, 0.3, "")]  # a grid's baseline seed: not the search's
    cols = ["method", "strength", "search_trial", "seed", "alignment", "test_accuracy", "search"]
    df = pd.DataFrame(r, columns=cols)
    df["experiment"] = ["search"] * 8 + ["grid"] * 3
    return df.assign(dataset="digits-distractor", model="cnn", status="completed")


def test_history_marks_feasibility_against_the_baseline_and_tracks_the_best():
    h = search_history(rows(), "alignment", 0.05)
    assert h["search_trial"].tolist() == [0, 1, 2]
    assert h["min_test_accuracy"].iloc[0] == pytest.approx(0.85)
    assert h["feasible"].tolist() == [True, False, True]
    assert h["value"].tolist() == pytest.approx([0.61, 0.91, 0.72])
    assert h["best_so_far"].tolist() == pytest.approx([0.61, 0.61, 0.72])


def test_best_is_the_feasible_best_with_a_t_interval_from_its_seeds():
    t = rows()
    (best,) = search_best(t, search_history(t, "alignment", 0.05)).itertuples()
    assert best.best_strength == 1.0 and best.n_seeds == 2 and best.n_feasible == 2
    half = stats.t.ppf(0.975, 1) * np.std([0.70, 0.74], ddof=1) / np.sqrt(2)
    assert (best.ci_low, best.ci_high) == pytest.approx((0.72 - half, 0.72 + half))
    # trial 0 (0.61) lies inside that wide 2-seed interval: the strengths are not told apart
    assert (best.strength_low, best.strength_high) == (0.1, 1.0)


def test_report_section_shows_the_search_beside_the_grid(tmp_path):
    from analysis.document import Document

    (tmp_path / "figures").mkdir()
    cfg = {"search": "optuna", "objective": "alignment", "max_accuracy_drop": 0.05}
    (tmp_path / "sweep_config.json").write_text(json.dumps(cfg))
    doc = Document("t")
    figures = search_section(doc, rows(), [tmp_path], tmp_path)
    text = doc.markdown()
    assert "## Peak search" in text and "best feasible lambda=1" in text
    assert "beside the grid's means" in text and all(p.is_file() for p in figures.values())
    assert pd.read_parquet(tmp_path / "search_best.parquet")["best_strength"].tolist() == [1.0]
    empty = Document("t")
    (tmp_path / "sweep_config.json").write_text(json.dumps({"search": "grid"}))
    assert search_section(empty, rows(), [tmp_path], tmp_path) == {}
    assert "Peak search" not in empty.markdown()


def test_pags_analyze_of_a_search_and_a_grid_shows_them_side_by_side(tmp_path, capsys):
    from analysis.results import tables
    from sweep.cli import main

    t = rows().assign(epochs=2, config_id=[f"c{i}" for i in range(len(rows()))])
    t = tables.coerce(pd.concat([tables.empty("trials"), t], ignore_index=True), "trials")
    for name, part, cfg in (
        ("search", t[(t["search"] != "") | (t["method"] == "none")], {"search": "optuna"}),
        ("grid", t[t["search"] == ""], {"search": "grid"}),
    ):
        (tmp_path / name).mkdir()
        tables.write_table(part, tmp_path / name / "trials.parquet", "trials")
        tables.write_table(tables.empty("measures"), tmp_path / name / "measures.parquet",
                             "measures")  # fmt: skip
        cfg.update(objective="alignment", max_accuracy_drop=0.05)
        (tmp_path / name / "sweep_config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="already loaded"):  # the baseline is in both
        assert main(["analyze", str(tmp_path / "search"), str(tmp_path / "grid")]) == 0
    text = (tmp_path / "search" / "report" / "report.md").read_text()
    assert "## Peak search" in text and "beside the grid's means" in text
