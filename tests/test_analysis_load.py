"""load_results: documented dtypes, concatenation, and one-line errors for bad files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis import ResultsError, load_results
from analysis.results import columns

try:  # tests/ is not a package: pytest puts it on sys.path (prepend import mode)
    from test_analysis_fakes import make_tables, write_results, write_table
except ImportError:  # tests/ became a package
    from tests.test_analysis_fakes import make_tables, write_results, write_table


@pytest.fixture
def tables():
    return make_tables(strengths=(0.1, 1.0), seeds=(0, 1))


def test_loads_with_documented_dtypes(tmp_path, tables):
    write_results(tmp_path, *tables)
    res = load_results(tmp_path)
    assert len(res.trials) == len(tables[0]) and len(res.measures) == len(tables[1])
    for col in columns.TRIALS_COLUMNS:
        if col.dtype != "str":
            assert res.trials[col.name].dtype == np.dtype(col.dtype), col.name
    assert res.measures["epoch"].dtype == np.int64
    assert "lr" in res.trials.columns  # extra config columns are tolerated
    assert res.sources == (tmp_path.resolve(),)


def test_a_table_file_path_means_its_directory(tmp_path, tables):
    write_results(tmp_path, *tables)
    assert len(load_results(tmp_path / "trials.parquet").trials) == len(tables[0])


def test_several_directories_concatenate(tmp_path, tables):
    trials, measures = tables
    other_t, other_m = make_tables(dataset="synthetic", strengths=(1.0,), seeds=(0,))
    other_t = other_t.drop(columns=["lr"]).assign(batch_size=64)  # differing extras
    write_results(tmp_path / "a", trials, measures)
    write_results(tmp_path / "b", other_t, other_m)
    res = load_results([tmp_path / "a", str(tmp_path / "b")])
    assert len(res.trials) == len(trials) + len(other_t)
    assert set(res.trials["dataset"]) == {"digits", "synthetic"}
    assert res.trials["seed"].dtype == np.int64
    assert {"lr", "batch_size"} <= set(res.trials.columns)


def test_duplicate_trials_across_directories_are_kept_once(tmp_path, tables):
    write_results(tmp_path / "a", *tables)
    write_results(tmp_path / "b", *tables)
    with pytest.warns(UserWarning, match="already loaded"):
        res = load_results([tmp_path / "a", tmp_path / "b"])
    assert len(res.trials) == len(tables[0])
    assert len(res.measures) == len(tables[1])


def _message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text  # one line, printable by the CLI as is
    return text


def test_missing_directory(tmp_path):
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path / "nope")
    assert "nope" in _message(err) and "does not exist" in _message(err)


def test_missing_file(tmp_path, tables):
    write_table(tables[0], tmp_path / "trials.parquet")
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "measures.parquet" in _message(err) and "missing" in _message(err)


def test_truncated_file(tmp_path, tables):
    write_results(tmp_path, *tables)
    path = tmp_path / "trials.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "trials.parquet" in _message(err) and "Parquet" in _message(err)


def test_damaged_data_with_intact_footer(tmp_path, tables):
    write_results(tmp_path, *tables)
    path = tmp_path / "measures.parquet"
    data = bytearray(path.read_bytes())
    data[4:200] = bytes(196)  # zero the first column chunk, keep header magic and footer
    path.write_bytes(bytes(data))
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "measures.parquet" in _message(err)


def test_foreign_file_without_schema_version(tmp_path, tables):
    write_results(tmp_path, *tables)
    write_table(tables[0], tmp_path / "trials.parquet", version=None)
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "pags_schema_version" in _message(err) and "trials.parquet" in _message(err)


def test_incompatible_schema_version(tmp_path, tables):
    write_results(tmp_path, *tables)
    write_table(tables[1], tmp_path / "measures.parquet", version="99")
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "'99'" in _message(err)


def test_missing_columns(tmp_path, tables):
    write_results(tmp_path, *tables)
    write_table(tables[0].drop(columns=["alignment", "seed"]), tmp_path / "trials.parquet")
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "missing columns" in _message(err) and "seed" in _message(err)


def test_values_of_the_wrong_type(tmp_path, tables):
    trials = tables[0].astype({"seed": float})
    trials.loc[0, "seed"] = np.nan
    write_results(tmp_path, trials, tables[1])
    with pytest.raises(ResultsError) as err:
        load_results(tmp_path)
    assert "seed" in _message(err)


def test_unknown_status_is_refused(tmp_path, tables):
    trials = tables[0].copy()
    trials.loc[0, "status"] = "exploded"
    write_results(tmp_path, trials, tables[1])
    with pytest.raises(ResultsError, match="status"):
        load_results(tmp_path)


def test_not_a_directory(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(ResultsError, match="not a results directory"):
        load_results(path)


def test_results_error_is_a_value_error():
    assert issubclass(ResultsError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            load_results([])
