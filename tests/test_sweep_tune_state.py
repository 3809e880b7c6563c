"""Tune's experiment state cut off by a killed driver: the backup callback keeps the last
complete copy and `repair` puts it back before a restore (sweep/tune/tune_state.py)."""

import json

import pytest
from ray import cloudpickle

from sweep.tune.tune_state import BACKUP_FILE, StateBackup, newest, repair


def write_state(d, session: str, state: dict) -> str:
    path = d / f"experiment_state-{session}.json"
    path.write_text(json.dumps(state))
    return str(path)


def test_backup_follows_complete_states_only_and_repair_restores_it(tmp_path):
    write_state(tmp_path, "2026-01-01_10-00-00", {"trials": 1})
    newest_path = write_state(tmp_path, "2026-01-01_11-00-00", {"trials": 2})
    assert newest(str(tmp_path)) == newest_path
    backup = StateBackup(str(tmp_path))
    backup.save()
    assert json.loads((tmp_path / BACKUP_FILE).read_text()) == {"trials": 2}

    full = json.dumps({"trials": 3, "note": "x" * 100})
    (tmp_path / "experiment_state-2026-01-01_11-00-00.json").write_text(full[:40])  # mid-copy
    backup.save()  # a cut-off state is never copied over the backup
    assert json.loads((tmp_path / BACKUP_FILE).read_text()) == {"trials": 2}

    said = []
    repair(str(tmp_path), log=said.append)
    assert json.loads(open(newest_path).read()) == {"trials": 2}
    assert len(said) == 1 and "restored its last complete copy" in said[0]
    repair(str(tmp_path), log=said.append)  # a readable state is left alone
    assert len(said) == 1


def test_repair_without_a_backup_refuses_in_one_line(tmp_path):
    path = tmp_path / "experiment_state-2026-01-01_10-00-00.json"
    path.write_text("")
    with pytest.raises(ValueError, match="no complete copy to restore from") as err:
        repair(str(tmp_path))
    assert "\n" not in str(err.value)
    assert path.read_text() == ""  # nothing touched
    repair(str(tmp_path / "missing"))  # no state at all: a new experiment, nothing to do


def test_a_cut_off_search_state_is_restored_from_its_backup(tmp_path):
    """The search algorithm's state (a cloudpickle, here a grid's) torn by a killed driver:
    Tune's restore fails unpickling it (EOFError) unless repair puts the last copy back."""
    path = tmp_path / "basic-variant-state-2026-01-01_10-00-00.json"
    state = {"_total_samples": 4, "_finished": True}
    path.write_bytes(cloudpickle.dumps(state))
    StateBackup(str(tmp_path)).save()
    path.write_bytes(cloudpickle.dumps(state)[:10])  # cut off mid-copy
    said = []
    repair(str(tmp_path), log=said.append)
    assert cloudpickle.loads(path.read_bytes()) == state
    assert len(said) == 1 and "basic-variant-state" in said[0]
