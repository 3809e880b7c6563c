"""The Optuna study's storage per location (sweep/tune/study_storage.py): the mount's
filesystem type decides for a new experiment, the file already there decides on a rerun, and
the journal storage holds a study across reopenings as SQLite does. (The killed-and-resumed
search with each storage: tests/test_sweep_search_run.py; on S3: tests/test_reliability_s3.py.)"""

import optuna
import pytest

from analysis.results.errors import InputError
from analysis.results.layout import JOURNAL_FILE, STUDY_FILE
from sweep.tune import study_storage
from sweep.tune.study_storage import is_shared_mount, local_study, mount_type

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:50 / /mnt/shared rw,relatime - nfs4 server:/export rw,vers=4.2
41 27 0:51 / /mnt/shared/local rw,relatime - ext4 /dev/sdb1 rw
42 27 0:52 / /mnt/with\\040space rw,relatime - cifs //srv/share rw
"""


@pytest.mark.parametrize(
    "path, kind",
    [("/mnt/shared/pags/exp", "nfs4"), ("/mnt/shared", "nfs4"), ("/mnt/sharedx/exp", "ext4"),
     ("/mnt/shared/local/exp", "ext4"), ("/home/u/exp", "ext4"), ("/mnt/with space/e", "cifs")],
)  # fmt: skip
def test_the_mount_holding_a_path_is_the_longest_mount_point_containing_it(path, kind):
    assert mount_type(path, MOUNTINFO) == kind


def test_shared_mounts_are_recognized_by_type():
    assert is_shared_mount("/mnt/shared/pags/exp", MOUNTINFO)
    assert not is_shared_mount("/mnt/shared/local/exp", MOUNTINFO)
    assert not is_shared_mount("/home/u/exp", MOUNTINFO)


def test_local_disk_gets_sqlite_and_the_existing_file_decides(tmp_path, monkeypatch):
    monkeypatch.delenv(study_storage.ENV, raising=False)
    exp = tmp_path / "exp"
    assert local_study(str(exp)) == f"sqlite:///{exp / STUDY_FILE}"  # this machine: local
    exp.mkdir()
    (exp / JOURNAL_FILE).write_text("")
    assert local_study(str(exp)) == f"journal:///{exp / JOURNAL_FILE}"
    monkeypatch.setenv(study_storage.ENV, "sqlite")  # a rerun never splits the study
    assert local_study(str(exp)).startswith("journal:///")


def test_the_setting_chooses_for_a_new_experiment_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(study_storage.ENV, "journal")
    assert local_study(str(tmp_path / "e")) == f"journal:///{tmp_path / 'e' / JOURNAL_FILE}"
    monkeypatch.setenv(study_storage.ENV, "redis")
    with pytest.raises(InputError, match="PAGS_STUDY_STORAGE='redis' is invalid"):
        local_study(str(tmp_path / "e"))


def test_a_journal_study_survives_reopening(tmp_path):
    url = f"journal:///{tmp_path / JOURNAL_FILE}"
    study = optuna.create_study(study_name="s", storage=study_storage.open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    again = optuna.load_study(study_name="s", storage=study_storage.open_storage(url))
    got = [(t.params, t.value) for t in again.trials]
    assert got == [(t.params, t.value) for t in study.trials] and len(got) == 3
