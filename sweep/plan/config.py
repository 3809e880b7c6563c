"""The sweep configuration: a preset plus the user's overrides, frozen and identified by a hash.

`SweepConfig` says *what* a sweep computes (dataset, methods, strengths, seeds, trial
overrides, search settings); `Where` says where it runs and stores things (output, storage,
resources, address, data root, cache) and is not part of its identity. The sweep config's
JSON is stored in the experiment directory; a rerun with the same config resumes, a different
one is refused with the first difference named (`first_difference`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analysis.results.errors import InputError
from analysis.results.methods import ROBUST_METHODS
from sweep.plan.presets import get_preset
from trainables.config import METHODS, TrialConfig
from trainables.recipes import derive_trial_dict

SEARCHES = ("grid", "optuna")
# A search's defaults: seeds per suggested strength (the baseline runs as many), the Optuna
# trials (suggested strengths) per method, and the largest test-accuracy drop below the
# baseline's mean that a strength may cost and still count as feasible.
SEARCH_SEEDS, SEARCH_TRIALS, MAX_ACCURACY_DROP = 2, 8, 0.05
# Objectives for `--search optuna` and their direction (analysis/results/columns.py has them).
OBJECTIVES = {
    "alignment": "max",
    "test_accuracy": "max",
    "relative_off_manifold_robustness": "min",
    "relative_noise_robustness": "max",
}
# Set by the sweep itself (grid axes) or by non-identity options, never by `--set`.
RESERVED = {
    "dataset": "a preset for that dataset (--preset)",
    "method": "--methods",
    "strength": "--strengths",
    "seed": "--seeds",
    "data_root": "--data-root",
    "artifacts_dir": "--cache-dir",
}


@dataclass(frozen=True)
class SweepConfig:
    """One sweep. `strengths` holds a grid per selected robust method; `overrides` are
    TrialConfig fields (typed) on top of the dataset recipe, e.g. epochs or eval_points."""

    preset: str
    dataset: str
    methods: tuple[str, ...]
    strengths: tuple[tuple[str, tuple[float, ...]], ...]
    seeds: int
    overrides: tuple[tuple[str, Any], ...]
    search: str = "grid"
    objective: str = "alignment"
    search_trials: int = 0
    search_seed: int = 0
    asha: bool = False
    max_accuracy_drop: float = MAX_ACCURACY_DROP  # search only; not in a grid's identity

    # ---- identity -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists, pairs become dicts."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        d["strengths"] = {m: list(s) for m, s in self.strengths}
        d["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}
        if self.search == "grid":  # grids made before this field existed keep their identity
            d.pop("max_accuracy_drop")
        return d

    @property
    def config_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def strength_grid(self, method: str) -> tuple[float, ...]:
        return dict(self.strengths).get(method, ()) if method != "none" else (0.0,)

    # ---- expansion ----------------------------------------------------------------------
    def trial_dict(self, method: str, strength: float, seed: int, **where: str) -> dict:
        """The TrialConfig dict of one trial (`derive_trial_dict`: recipe, preset and user
        overrides, the preset's learning-rate rule) plus `where` (data_root, artifacts_dir:
        not identity)."""
        rule = get_preset(self.preset).lr_rules.get(method)
        d = derive_trial_dict(self.dataset, method, strength, seed, dict(self.overrides), rule)
        d.update({k: v for k, v in where.items() if v})
        return d

    def search_space(self, method: str, **where: str) -> dict:
        """The fixed part of a searched trial's Tune config; the searcher adds the strength
        and seed, and the trial derives its config with the same `derive_trial_dict`
        (trainables/tune_trainable.py `trial_config`)."""
        return {
            "derive": {
                "dataset": self.dataset,
                "method": method,
                "overrides": dict(self.overrides),
                "lr_rule": get_preset(self.preset).lr_rules.get(method),
            },
            "where": {k: v for k, v in where.items() if v},
        }

    def trial_configs(self, **where: str) -> list[TrialConfig]:
        """Every trial of a grid sweep, in (seed, method, strength) order. For a search, the
        baseline trials only (the searched ones are sampled by Optuna)."""
        out = []
        for seed in range(self.seeds):
            for method in self.methods:
                if self.search != "grid" and method != "none":
                    continue
                for strength in self.strength_grid(method):
                    out.append(
                        TrialConfig.from_dict(self.trial_dict(method, strength, seed, **where))
                    )
        return out

    def search_bounds(self, method: str) -> tuple[float, float]:
        """log10-strength interval searched for `method`: the preset grid's range."""
        s = self.strength_grid(method)
        return math.log10(min(s)), math.log10(max(s))

    @property
    def searched_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m != "none") if self.search != "grid" else ()


@dataclass(frozen=True)
class Where:
    """Where and how a sweep runs: not part of its identity (a rerun may change these, except
    max_failures)."""

    exp_dir: str  # absolute local path or URI
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None  # a running Ray cluster; None = a local Ray instance
    num_cpus: int | None = None  # CPUs of the local instance (None = all)
    data_root: str = ""
    cache_dir: str = ""  # shared artifacts cache ("" = the default)
    # Retries per trial, each from its last checkpoint. Fixed once the sweep has started: Tune
    # keeps it on resume, so a rerun with another value is refused (sweep/experiment.py).
    max_failures: int = 3


def from_preset(
    name: str,
    *,
    methods: Sequence[str] | None = None,
    strengths: Sequence[float] | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    sets: dict[str, Any] | None = None,
    search: str = "grid",
    objective: str | None = None,
    search_trials: int | None = None,
    asha: bool = False,
    max_accuracy_drop: float | None = None,
) -> SweepConfig:
    """Build and validate a sweep; every problem raises ValueError with one line naming the
    bad value and what is allowed. All trial configs are built here, so an invalid override
    fails before anything runs."""
    preset = get_preset(name)
    if methods is not None and not methods:
        raise InputError(
            f"--methods is empty; allowed: comma-separated names of {', '.join(METHODS)}"
        )
    methods = tuple(dict.fromkeys(methods)) if methods else preset.methods
    if search not in SEARCHES:
        raise InputError(f"search {search!r} is unknown; allowed: {', '.join(SEARCHES)}")
    _check_search_options(search, objective, search_trials, max_accuracy_drop)
    if search != "grid" and "none" not in methods:
        methods = ("none", *methods)  # the baseline sets the search's accuracy constraint
    for m in methods:
        if m not in METHODS:
            raise InputError(f"method {m!r} is unknown; allowed: {', '.join(METHODS)}")
    if strengths is not None:
        strengths = tuple(float(s) for s in strengths)
        for s in strengths:
            if not (s > 0 and math.isfinite(s)):
                raise InputError(f"strength {s!r} is invalid; allowed: finite numbers > 0")
        if not strengths:
            raise InputError("--strengths is empty; allowed: comma-separated numbers > 0")
    grids = tuple(
        (m, tuple(strengths) if strengths is not None else preset.strengths[m])
        for m in methods
        if m in ROBUST_METHODS
    )
    if seeds is None:
        seeds = preset.seeds if search == "grid" else SEARCH_SEEDS
    if seeds < 1:
        raise InputError(f"seeds={seeds} is invalid; allowed: an integer >= 1")
    overrides = _overrides(preset, epochs, sets or {})
    sweep = SweepConfig(
        preset=preset.name,
        dataset=preset.dataset,
        methods=methods,
        strengths=grids,
        seeds=seeds,
        overrides=tuple(sorted(overrides.items())),
        search=search,
        # Only a search optimizes an objective; a grid keeps the defaults so that they are
        # not part of the grid's identity.
        objective=objective or "alignment",
        search_trials=(SEARCH_TRIALS if search_trials is None else search_trials)
        if search != "grid"
        else 0,
        asha=asha,
        max_accuracy_drop=MAX_ACCURACY_DROP if max_accuracy_drop is None else max_accuracy_drop,
    )
    _check_search(sweep)
    # Validate every trial (strict TrialConfig parsing) before anything runs.
    sweep.trial_configs()
    for m in sweep.searched_methods:
        for log_s in sweep.search_bounds(m):
            TrialConfig.from_dict(sweep.trial_dict(m, 10**log_s, 0))
    return sweep


def _overrides(preset, epochs: int | None, sets: dict[str, Any]) -> dict[str, Any]:
    """Preset overrides, then --epochs, then --set; typed through a TrialConfig round trip."""
    for key in sets:
        if key in RESERVED:
            raise InputError(f"--set {key} is not allowed; use {RESERVED[key]}")
    raw = {**preset.overrides, **({"epochs": epochs} if epochs is not None else {}), **sets}
    probe = TrialConfig.from_dict(derive_trial_dict(preset.dataset, "none", 0.0, 0, raw))
    return {k: getattr(probe, k) for k in raw}


def preset_trial_dict(
    name: str,
    method: str,
    strength: float,
    seed: int,
    *,
    epochs: int | None = None,
    sets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One trial of preset `name` on its own (`pags train --preset`): the same overrides and
    derivation as the preset's sweep, so the same config_id as the sweep's trial."""
    preset = get_preset(name)
    sweep = SweepConfig(
        preset=preset.name,
        dataset=preset.dataset,
        methods=(method,),
        strengths=(),
        seeds=seed + 1,
        overrides=tuple(sorted(_overrides(preset, epochs, sets or {}).items())),
    )
    return sweep.trial_dict(method, strength, seed)


def _check_search_options(search, objective, trials, max_drop) -> None:
    """Search-only options: refused with a grid (they would be silently ignored)."""
    if objective is not None and objective not in OBJECTIVES:
        raise InputError(f"objective {objective!r} is unknown; allowed: {', '.join(OBJECTIVES)}")
    if search == "grid":
        given = {"--objective": objective, "--trials": trials, "--max-accuracy-drop": max_drop}
        for flag, value in given.items():
            if value is not None:
                raise InputError(f"{flag} is only for a search; allowed: add --search optuna")
        return
    if trials is not None and trials < 1:
        raise InputError(f"--trials {trials} is invalid; allowed: an integer >= 1")
    if max_drop is not None and not (0 <= max_drop <= 1):
        raise InputError(
            f"--max-accuracy-drop {max_drop:g} is invalid; allowed: a number in [0, 1]"
        )


def _check_search(sweep: SweepConfig) -> None:
    if sweep.search == "grid":
        return
    if not sweep.searched_methods:
        raise InputError("--search needs a robust method; allowed: " + ", ".join(ROBUST_METHODS))
    if not dict(sweep.overrides).get("measure", True) and sweep.objective != "test_accuracy":
        raise InputError(
            f"objective {sweep.objective!r} needs measure=true; allowed with measure=false: "
            "test_accuracy"
        )


def first_difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first field where two sweep-config dicts differ, as 'field (stored X, requested Y)';
    None if they are equal."""
    a, b = _flat(stored), _flat(current)
    for key in list(dict.fromkeys([*a, *b])):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            return f"{key} (stored {_show(a.get(key))}, requested {_show(b.get(key))})"
    return None


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if key in ("strengths", "overrides") and isinstance(value, dict):
            prefix = "strengths of " if key == "strengths" else ""
            for k, v in value.items():
                out[f"{prefix}{k}"] = v
        elif key != "config_id":
            out[key] = value
    return out


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
