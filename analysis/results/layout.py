"""The layout of an experiment directory (`pags sweep --output`, `pags measure --output`) and of
a trial checkpoint: every name, and every path as a function of a root.

A root is a local path or a pyarrow URI (s3://, gs://): `join` uses "/" for a URI and the
platform's separator locally, so the same functions serve both. Writers and readers (sweep,
trainables, analysis) take their names from here and nowhere else.

    EXP/trials.parquet           one row per trial (columns.TRIALS_COLUMNS)
    EXP/measures.parquet         long format (columns.MEASURES_COLUMNS)
    EXP/maps/<config_id>.npz     gradient/score maps (MAP_KEYS)
    EXP/sweep_config.json        the sweep's config (pags sweep)
    EXP/search_best.json         per searched method: the feasible best strength
    EXP/optuna-study.db          the searches' Optuna studies (--search optuna)
    EXP/measure_config.json      the settings of a `pags measure` directory
    EXP/records/<config_id>.json one record.TrialRecord per measured checkpoint (pags measure)
    <checkpoint>/record.json     a sweep trial's TrialRecord, beside state.pt and maps.npz
"""

from __future__ import annotations

import os
import posixpath

TRIALS_FILE = "trials.parquet"
MEASURES_FILE = "measures.parquet"
MAPS_DIR = "maps"
SWEEP_FILE = "sweep_config.json"
SEARCH_BEST_FILE = "search_best.json"
STUDY_FILE = "optuna-study.db"
SETTINGS_FILE = "measure_config.json"
RECORDS_DIR = "records"
LOCK_FILE = ".pags.lock"
# Inside one trial checkpoint directory (trainables/tune_trainable.py writes them).
RECORD_FILE = "record.json"
STATE_FILE = "state.pt"
MAPS_FILE = "maps.npz"
# Arrays of a maps file, each (N, C, H, W): the evaluation inputs, the score estimate at them,
# and the headline input gradient.
MAP_KEYS = ("inputs", "score", "gradient")


def is_uri(path: str) -> bool:
    return "://" in str(path)


def join(root: str, *parts: str) -> str:
    root = os.fspath(root)
    return posixpath.join(root, *parts) if is_uri(root) else os.path.join(root, *parts)


def trials_file(root: str) -> str:
    return join(root, TRIALS_FILE)


def measures_file(root: str) -> str:
    return join(root, MEASURES_FILE)


def maps_dir(root: str) -> str:
    return join(root, MAPS_DIR)


def maps_file(root: str, config_id: str) -> str:
    """Where the maps of trial `config_id` live in experiment directory `root`."""
    return join(root, MAPS_DIR, f"{config_id}.npz")


def sweep_file(root: str) -> str:
    return join(root, SWEEP_FILE)


def search_best_file(root: str) -> str:
    return join(root, SEARCH_BEST_FILE)


def study_file(root: str) -> str:
    return join(root, STUDY_FILE)


def settings_file(root: str) -> str:
    return join(root, SETTINGS_FILE)


def records_dir(root: str) -> str:
    return join(root, RECORDS_DIR)


def record_file(root: str, config_id: str) -> str:
    """A `pags measure` directory's record of one measured checkpoint."""
    return join(root, RECORDS_DIR, f"{config_id}.json")


def lock_file(root: str) -> str:
    return join(root, LOCK_FILE)
