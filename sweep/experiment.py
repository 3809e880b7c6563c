"""The experiment directory's identity: `sweep_config.json` says which sweep it holds.

A rerun of the same sweep resumes; a different sweep pointed at the same directory is refused
with the first difference named, and nothing there is touched.
"""

from __future__ import annotations

import json

from sweep import storage
from sweep.config import SweepConfig, first_difference

SWEEP_FILE = "sweep_config.json"
# What a sweep writes; present without sweep_config.json = results of something unknown.
OWNED = ("tune", "baseline", "trials.parquet", "measures.parquet")


def check_compatible(exp_dir: str, sweep: SweepConfig) -> bool:
    """True if `exp_dir` already holds this sweep (resume), False if it holds none yet.
    Raises ValueError naming the first difference for another sweep. Reads only."""
    text = storage.read_text(storage.join(exp_dir, SWEEP_FILE))
    if text is None:
        foreign = [n for n in OWNED if storage.exists(storage.join(exp_dir, n))]
        if foreign:
            raise ValueError(
                f"{exp_dir} holds results ({foreign[0]}) without {SWEEP_FILE}; "
                "allowed: a new or pags-made --output"
            )
        return False
    try:
        stored = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{storage.join(exp_dir, SWEEP_FILE)} is not valid JSON") from None
    diff = first_difference(stored, sweep.to_dict())
    if diff is not None:
        raise ValueError(
            f"{exp_dir} holds a different sweep: {diff}; allowed: the same "
            "options to resume, or another --output"
        )
    return True


def claim(exp_dir: str, sweep: SweepConfig) -> None:
    """Record the sweep in its directory (after `check_compatible` said it is new)."""
    body = {**sweep.to_dict(), "config_id": sweep.config_id}
    storage.write_text_atomic(storage.join(exp_dir, SWEEP_FILE), json.dumps(body, indent=1))
