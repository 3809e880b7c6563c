"""`pags measure` end to end: measure checkpoint files as trials measure their models.

In the order that keeps bad input cheap and finished work safe:

1. every checkpoint file is hashed in the driver: a missing or unreadable one is one line
   naming it, counted, and the others go on;
2. identity: `config_id` hashes the file's SHA-256, how it is read (format, arch, ...), its
   label and strength and the measurement settings; a record already in the output directory
   means "measured": it is not rerun (so a killed driver resumes by running the command again);
   a directory holds one dataset and one set of measurement settings (`measure_config.json`);
3. the shared artifacts are prepared once, as for a sweep (`sweep.tune.artifacts.prepare_shared`);
4. one Ray task per checkpoint (`sweep.files.tasks`) with a trial's resources (a GPU when the
   cluster has one); each task loads the file (a bad one: one line, counted) and measures it;
   its record and maps are written as soon as it returns; a progress line shows the counts;
5. the tables are rebuilt from all records (`sweep.files.tables`).

`local=True` runs step 4 in this process instead of Ray (same function, one at a time).
Exit code: 0; 2 when checkpoints were bad (after measuring the rest); 1 when a task failed
otherwise; 130 when interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

from analysis.results import layout
from analysis.results.errors import InputError
from analysis.results.record import package_versions
from sweep import storage
from sweep.files.tables import read_records, write_tables
from sweep.files.tasks import Plan, run_local, run_ray
from sweep.signals import on_sigterm, raise_keyboard_interrupt
from trainables.checkpoints import file_sha256
from trainables.config import TrialConfig
from trainables.measure_checkpoint import MEASURE_FIELDS, ModelSpec


def config_id(spec: ModelSpec, checkpoint_sha: str, base: TrialConfig) -> str:
    """What is measured, not where it lies or what it is called: name and path are left out."""
    what = {k: v for k, v in spec.to_dict().items() if k not in ("name", "path")}
    # Settings added later count only away from their default: older ids stay valid.
    settings = {k: getattr(base, k) for k in ("dataset", *MEASURE_FIELDS)
                if not TrialConfig.at_added_default(k, getattr(base, k))}  # fmt: skip
    blob = json.dumps(
        {"checkpoint_sha256": checkpoint_sha, **what, "measure": settings},
        sort_keys=True,
        default=list,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(specs: list[ModelSpec], base: TrialConfig, log) -> tuple[list[Plan], int]:
    """(one Plan per distinct measurement, number of bad files); bad files are logged."""
    plans, seen, bad = [], {}, 0
    for spec in specs:
        try:
            sha = file_sha256(spec.path)
        except FileNotFoundError:
            log(f"[pags] bad checkpoint {spec.name}: {spec.path}: file not found")
            bad += 1
            continue
        except OSError as err:
            why = err.strerror or err
            log(f"[pags] bad checkpoint {spec.name}: {spec.path}: cannot read it ({why})")
            bad += 1
            continue
        cid = config_id(spec, sha, base)
        if cid in seen:
            log(f"[pags] {spec.name}: the same measurement as {seen[cid]}; measured once")
            continue
        seen[cid] = spec.name
        plans.append(Plan(spec, cid, sha))
    return plans, bad


def run_measure(
    specs: list[ModelSpec],
    base: TrialConfig,
    out_dir: str,
    *,
    local: bool = False,
    device: str = "",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus: float = 1.0,
    gpus: float | None = None,
    log: Callable[[str], None] = print,
    invalid: int = 0,
) -> int:
    """Measure `specs` into `out_dir`; returns the exit code. `invalid`: specs already
    refused by the caller (bad manifest rows), counted into exit code 2."""
    from sweep import experiment
    from trainables.measure.artifacts import default_cache_dir

    storage.check_writable(out_dir)
    base = base.replace(artifacts_dir=base.artifacts_dir or default_cache_dir())
    with experiment.locked(out_dir):
        _claim(out_dir, base)
        plans, bad = plan(specs, base, log)
        bad += invalid
        done = read_records(out_dir)
        todo = [p for p in plans if p.config_id not in done]
        if len(todo) < len(plans):
            log(f"[pags] {len(plans) - len(todo)} already measured in {out_dir}: kept, not rerun")
        run = run_local if local else run_ray
        try:
            with on_sigterm(raise_keyboard_interrupt):
                failed, bad_now, interrupted = run(todo, base, out_dir, log, device=device,
                                                   address=address, num_cpus=num_cpus,
                                                   cpus=cpus, gpus=gpus)  # fmt: skip
        except KeyboardInterrupt:  # before any measurement ran (preparing artifacts, Ray)
            failed, bad_now, interrupted = 0, 0, True
        bad += bad_now
        name = os.path.basename(out_dir.rstrip("/"))
        trials, _ = write_tables(out_dir, name, package_versions())
        log(f"[pags] {len(trials)} models in the tables")
    log(f"results: {out_dir}")
    if interrupted:
        log("[pags] interrupted; rerun the same command to measure the rest")
        return 130
    if bad:
        log(f"[pags] {bad} checkpoint(s) could not be measured (see the lines above)")
        return 2
    if failed:
        log(f"[pags] {failed} measurement(s) failed (see the lines above)")
        return 1
    log(f"next: pags analyze {out_dir}")
    return 0


def _claim(out_dir: str, base: TrialConfig) -> None:
    """One dataset and one set of measurement settings per directory, as one sweep per
    directory: the tables of a directory must be comparable. ValueError names the field."""
    path = layout.settings_file(out_dir)
    settings = {k: base.to_dict()[k] for k in ("dataset", *MEASURE_FIELDS)}
    settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
    old = storage.read_text(path)
    if old is not None and read_records(out_dir):  # a directory with nothing measured is free
        for key, value in json.loads(old).items():
            if settings.get(key) != value:
                raise InputError(
                    f"{out_dir} holds measurements with {key}={value!r}, not "
                    f"{settings.get(key)!r}; allowed: the same settings, or another --output"
                )
        return
    storage.write_text_atomic(path, json.dumps(settings, indent=1))


