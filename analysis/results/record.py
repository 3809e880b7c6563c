"""The trial record: one typed result of one trial, the same for `pags sweep` (record.json in
every checkpoint), `pags train --json` (printed) and `pags measure` (records/<config_id>.json).

`TrialRecord.from_history` is the one builder (trainables/loop.py and tune_trainable.py for a
trained trial, trainables/measure_checkpoint.py for a measured file); `to_dict` / `from_dict`
are its JSON form. `from_dict` also reads records written before RECORD_VERSION 2 (keys
`epochs_completed`, and a measured file's flat `epoch`/`seed`/`test_accuracy`), so a sweep or a
`pags measure` directory written by an older pags resumes as it is.

The three numbers of epochs have three names: `config["epochs"]` is configured,
`epochs_trained` is how many the model was trained, `measured_epoch` is the epoch after which
`summary`'s measurements were taken (-1 if none).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_VERSION = 2
# One history entry per epoch, these keys (NaN where not known).
HISTORY_KEYS = ("epoch", "train_loss", "test_accuracy", "epoch_time_s")
# completed: trained (or measured) to the end; diverged: non-finite loss, ended early; running:
# unfinished, more epochs to come. The tables add stopped and error (columns.STATUSES).
RECORD_STATUSES = ("completed", "diverged", "running")


@dataclass
class TrialRecord:
    config: dict[str, Any]  # the full TrialConfig dict (a measured file: its measure settings)
    config_id: str
    status: str  # RECORD_STATUSES
    epochs_trained: int
    wall_time_s: float  # training and measuring, summed over epochs
    # the latest measured scalars (TRIALS_COLUMNS names) plus the last epoch's train_loss and
    # test_accuracy
    summary: dict[str, Any]
    history: list[dict[str, Any]]  # HISTORY_KEYS per epoch
    measure_rows: list[dict[str, Any]]  # MEASURES_COLUMNS rows without config_id (rows.py)
    measured_epoch: int = -1
    n_train: int = 0  # training examples used (train_subset applied)
    n_test: int = 0
    num_classes: int = 0  # of the dataset (0: not recorded, before this field existed)
    versions: dict[str, str] = field(default_factory=dict)  # {pags, torch, ray}
    pid: int = -1  # process id of the trial (the reliability tests kill it)
    node: str = ""  # host name
    node_id: str = ""  # Ray node id
    # pags measure only: spec (the checkpoint's name, path, format, label, strength, ...),
    # arch, input_normalization, input_size, weights_sha256, checkpoint_sha256
    checkpoint: dict[str, Any] | None = None
    record_version: int = RECORD_VERSION

    @classmethod
    def from_history(
        cls, config: dict, config_id: str, history: list[dict], status: str, **info: Any
    ) -> TrialRecord:
        """The record of a trial after the epochs in `history`: one dict per epoch with
        HISTORY_KEYS, plus `measures` (the measurer's summary) and `measure_rows` on the epochs
        it measured. `info`: any of the optional fields (n_train, versions, pid, ...)."""
        last = history[-1] if history else {}
        measured = [h for h in history if "measures" in h]
        summary = {
            k: v
            for k, v in (measured[-1]["measures"] if measured else {}).items()
            if isinstance(v, (int, float, str))
        }
        summary.update(
            train_loss=last.get("train_loss", math.nan),
            test_accuracy=last.get("test_accuracy", math.nan),
        )
        return cls(
            config=config,
            config_id=config_id,
            status=status,
            epochs_trained=len(history),
            wall_time_s=sum(h.get("epoch_time_s", 0.0) for h in history),
            summary=summary,
            history=[{k: h.get(k, math.nan) for k in HISTORY_KEYS} for h in history],
            measure_rows=[row for h in history for row in h.get("measure_rows", [])],
            measured_epoch=int(measured[-1]["epoch"]) if measured else -1,
            **info,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        """Parse a record of any version (older ones migrated, see the module docstring)."""
        d = dict(d)
        if d.get("record_version", 1) == 1:
            d = _from_v1(d)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    if "spec" in d:  # pags measure's record: flat epoch, seed, test_accuracy
        epoch = d["epoch"]
        summary = {**d.get("summary", {}), "test_accuracy": d["test_accuracy"]}
        return {
            "config": {**d["measure_config"], "seed": d["seed"]},
            "config_id": d.get("config_id", ""),
            "status": d["status"],
            "epochs_trained": epoch,
            "measured_epoch": epoch,
            "wall_time_s": d["wall_time_s"],
            "summary": summary,
            "history": [{"epoch": epoch, "test_accuracy": d["test_accuracy"]}],
            "measure_rows": d["measure_rows"],
            "n_test": d["n_test"],
            "versions": d.get("versions", {}),
            "checkpoint": {
                "spec": d["spec"],
                **{k: d[k] for k in CHECKPOINT_KEYS if k in d},
            },
        }
    d["epochs_trained"] = d.pop("epochs_completed")
    measured = sorted({r["epoch"] for r in d.get("measure_rows", [])})
    d["measured_epoch"] = measured[-1] if measured else -1
    return d


# What a measured file's `checkpoint` section holds besides `spec`.
CHECKPOINT_KEYS = (
    "arch", "input_normalization", "input_size", "weights_sha256", "checkpoint_sha256",
)  # fmt: skip


def latest_maps(history: list[dict]) -> dict | None:
    """The maps of the last measured epoch of a loop history (`measures["maps"]`), or None."""
    for h in reversed(history):
        maps = h.get("measures", {}).get("maps")
        if maps:
            return maps
    return None


def package_versions() -> dict[str, str]:
    """{pags, torch, ray}: the versions in use ("" where one is not installed), for a record
    and the tables. An imported package's own `__version__` (torch's carries its build, e.g.
    +cu130), else the installed metadata: this layer imports neither torch nor ray."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("pags", "torch", "ray"):
        loaded = getattr(sys.modules.get(name), "__version__", None)
        try:
            out[name] = loaded or version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out
