"""Checkpoints on object storage are pruned only when Tune's stored state can no longer name
them (sweep/tune/prune.py): a trial's checkpoint goes once a newer one registered and the stored
experiment state changed twice since (one upload may have been in flight when it registered).
Run on a local directory: the callback goes through pyarrow as on S3."""

import os
import types

import pyarrow.fs as pafs

from sweep.tune.prune import CheckpointPruner, prune_finished


def make(exp, n):
    trial = exp / "trial-a"
    for i in range(n):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        (trial / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"x")
    return trial


def upload_state(exp, text):
    """Tune storing its experiment state (a new size each time: a change the callback sees)."""
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(text)


def register(pruner, trial_dir, i):
    ckpt = types.SimpleNamespace(filesystem=pafs.LocalFileSystem(),
                                 path=str(trial_dir / f"checkpoint_{i:06d}"))  # fmt: skip
    pruner.on_checkpoint(0, [], types.SimpleNamespace(trial_id="a"), ckpt)


def left(trial_dir):
    return sorted(os.listdir(trial_dir))


def test_a_checkpoint_goes_only_after_two_state_uploads_since_a_newer_one(tmp_path):
    trial = make(tmp_path, 4)
    pruner = CheckpointPruner(str(tmp_path), keep=2, every_s=0)
    register(pruner, trial, 0)
    register(pruner, trial, 1)
    register(pruner, trial, 2)
    upload_state(tmp_path, "1")
    pruner.on_step_end(0, [])  # one change since checkpoint 1 registered: may predate it
    assert left(trial) == [f"checkpoint_{i:06d}" for i in range(4)]
    upload_state(tmp_path, "22")
    pruner.on_step_end(0, [])  # the second: a save after checkpoint 1, which names >= 1
    assert left(trial) == [f"checkpoint_{i:06d}" for i in (1, 2, 3)]
    register(pruner, trial, 3)
    pruner.on_step_end(0, [])  # checkpoint 2 registered two uploads ago: the state names it
    assert left(trial) == [f"checkpoint_{i:06d}" for i in (2, 3)]
    register(pruner, trial, 4)  # (its directory not written yet: nothing to check there)
    upload_state(tmp_path, "333")
    pruner.on_step_end(0, [])  # one upload since checkpoint 3 registered: 2 stays
    assert left(trial) == [f"checkpoint_{i:06d}" for i in (2, 3)]


def test_the_newest_checkpoints_always_stay(tmp_path):
    trial = make(tmp_path, 2)
    pruner = CheckpointPruner(str(tmp_path), keep=2, every_s=0)
    register(pruner, trial, 0)
    register(pruner, trial, 1)
    for i in range(5):
        upload_state(tmp_path, "x" * (i + 1))
        pruner.on_step_end(0, [])
    assert left(trial) == ["checkpoint_000000", "checkpoint_000001"]


def test_after_fit_only_the_newest_are_kept(tmp_path):
    trial = make(tmp_path, 5)
    (tmp_path / "trial-b").mkdir()
    prune_finished(str(tmp_path), keep=2)
    assert left(trial) == ["checkpoint_000003", "checkpoint_000004"]
