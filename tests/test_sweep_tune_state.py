"""Tune's experiment state cut off by a killed driver: the backup callback keeps the last
complete copy and `repair` puts it back before a restore (sweep/tune_state.py)."""

import json

import pytest

from sweep.tune_state import BACKUP_FILE, StateBackup, newest_state, repair


def write_state(d, session: str, state: dict) -> str:
    path = d / f"experiment_state-{session}.json"
    path.write_text(json.dumps(state))
    return str(path)


def test_backup_follows_complete_states_only_and_repair_restores_it(tmp_path):
    write_state(tmp_path, "2026-01-01_10-00-00", {"trials": 1})
    newest = write_state(tmp_path, "2026-01-01_11-00-00", {"trials": 2})
    assert newest_state(str(tmp_path)) == newest
    backup = StateBackup(str(tmp_path))
    backup.save()
    assert json.loads((tmp_path / BACKUP_FILE).read_text()) == {"trials": 2}

    full = json.dumps({"trials": 3, "note": "x" * 100})
    (tmp_path / "experiment_state-2026-01-01_11-00-00.json").write_text(full[:40])  # mid-copy
    backup.save()  # a cut-off state is never copied over the backup
    assert json.loads((tmp_path / BACKUP_FILE).read_text()) == {"trials": 2}

    said = []
    repair(str(tmp_path), log=said.append)
    assert json.loads(open(newest).read()) == {"trials": 2}
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
