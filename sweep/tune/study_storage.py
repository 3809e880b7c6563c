"""Where a peak search's Optuna study is stored, chosen by the experiment's location.

- Local disk: SQLite, `<exp>/optuna-study.db` (Optuna's RDB storage; one writer, the driver).
- A shared mount (NFS, EFS, CIFS, Lustre, CephFS, ... by the filesystem type in
  /proc/self/mountinfo): Optuna's journal, `<exp>/optuna-journal.log` through
  `JournalFileBackend` with `JournalFileOpenLock` (an O_EXCL lock file). SQLite relies on
  fcntl locks, which many NFS implementations break (Optuna's FAQ and SQLite's own); the
  journal appends JSON lines and locks by creating a file, which NFSv3+ does atomically.
- Object storage (s3://, gs://, any URI): neither can write in place, so the driver works on a
  local SQLite copy under the artifacts cache and uploads it after every ask and tell
  (sweep/tune/search.py `StudyFile`); a rerun on another machine fetches it first.

The file already in the experiment decides on a rerun (a study is never split across two
storages); `PAGS_STUDY_STORAGE=journal` (or `sqlite`) chooses for a new experiment on a
mount this module does not recognize as shared.

A study is named by a string (it is pickled with Tune's searcher state): the SQLAlchemy URL
`sqlite:///PATH`, or `journal:///PATH` for the journal; `open_storage` turns it into what
`optuna.load_study(storage=...)` takes.
"""

from __future__ import annotations

import os

from analysis.results.errors import InputError
from analysis.results.layout import JOURNAL_FILE, STUDY_FILE

JOURNAL_SCHEME = "journal:///"
ENV = "PAGS_STUDY_STORAGE"  # journal | sqlite: the choice for a new experiment
# Filesystem types whose fcntl locks SQLite cannot trust, or that several hosts mount.
SHARED_TYPES = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "glusterfs", "ceph",
                "fuse.glusterfs", "fuse.sshfs", "fuse.cephfs", "beegfs", "9p", "afs")  # fmt: skip


def mount_type(path: str, mountinfo: str | None = None) -> str:
    """The filesystem type of the mount holding `path` (longest mount point that contains
    it), from /proc/self/mountinfo; '' where that cannot be read."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo") as f:
                mountinfo = f.read()
        except OSError:
            return ""
    path = os.path.realpath(path)
    best, kind = "", ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def is_shared_mount(path: str, mountinfo: str | None = None) -> bool:
    return mount_type(path, mountinfo) in SHARED_TYPES


def local_study(exp_dir: str) -> str:
    """The study's name (see the module doc) for an experiment on a local path."""
    sqlite, journal = os.path.join(exp_dir, STUDY_FILE), os.path.join(exp_dir, JOURNAL_FILE)
    if os.path.exists(journal):
        return JOURNAL_SCHEME + os.path.abspath(journal)
    if os.path.exists(sqlite):
        return sqlite_url(sqlite)
    choice = os.environ.get(ENV, "")
    if choice not in ("", "journal", "sqlite"):
        raise InputError(f"{ENV}={choice!r} is invalid; allowed: journal, sqlite (or unset)")
    if choice == "journal" or (not choice and is_shared_mount(exp_dir)):
        return JOURNAL_SCHEME + os.path.abspath(journal)
    return sqlite_url(sqlite)


def sqlite_url(path: str) -> str:
    return f"sqlite:///{os.path.abspath(path)}"


def open_storage(name: str):
    """What optuna.create_study/load_study take as `storage` for a study name."""
    if not name.startswith(JOURNAL_SCHEME):
        return name
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = "/" + name[len(JOURNAL_SCHEME) :].lstrip("/")
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
