"""Peak search: Optuna over log10-strength, n seeds per suggested strength, an accuracy constraint.

One Optuna trial = one suggested strength = `seeds` Tune trials (one per seed). Its value is
the objective's mean over those seeds; it is feasible when their mean test accuracy is at least
the unregularized baseline's mean minus `max_accuracy_drop` (the baseline's seeds run first).
The constraint goes to Optuna as `trial.set_constraint("accuracy", threshold - accuracy)`
(feasible <= 0), which TPE uses to prefer feasible regions and `study.best_trial` honours.

The study lives in `<experiment>/STUDY_FILE` (SQLite through Optuna's RDB storage), one study
per searched method named `search-<method>`:

    optuna.load_study(study_name="search-gradnorm", storage="sqlite:///EXP/optuna-study.db")
    optuna-dashboard sqlite:///EXP/optuna-study.db

`StrengthSearcher` is the Tune `Searcher` that asks and tells that study; Tune saves its small
state with the experiment, and the study itself is on disk, so a rerun resumes both: finished
Optuna trials stay finished, a strength whose seeds were running continues (Tune resumes those
trials), and a strength asked just before the driver died, with no Tune trial yet, has its
seeds handed out again.
"""

from __future__ import annotations

import math
import os
import pickle
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from analysis.results import layout
from analysis.results.layout import STUDY_FILE
from sweep import storage
from sweep.plan.config import OBJECTIVES
from trainables.tune_trainable import searched_strength

PARAM = "log10_strength"  # the searched parameter (Tune config key and Optuna param name)
CONSTRAINT = "accuracy"  # threshold - mean test accuracy; feasible <= 0
FINAL = ("completed", "diverged")  # a seed's last status that ends it (trainables/loop.py)


def study_name(method: str) -> str:
    """Also the Tune experiment's directory name and the `search` column of its trials."""
    return f"search-{method}"


def study_url(path: str) -> str:
    return f"sqlite:///{os.path.abspath(path)}"


def startup_trials(trials: int) -> int:
    """Random suggestions before TPE models the objective: Optuna's default 10 would leave a
    short search all random; a third of the budget (at least 2) explores the range first."""
    return max(2, min(10, trials // 3))


def open_study(url: str, method: str, objective: str, sampler_seed: int, trials: int):
    """Create or load the method's study. The sampler's seed moves on by the trials already
    asked: a resumed driver with the seed it started with would draw its first random
    strengths again (seen: a resumed search re-suggested an earlier strength exactly)."""
    direction = "maximize" if OBJECTIVES[objective] == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress line says enough
    study = optuna.create_study(
        study_name=study_name(method), storage=url, direction=direction, load_if_exists=True
    )
    study.sampler = optuna.samplers.TPESampler(
        seed=sampler_seed + len(study.trials), n_startup_trials=startup_trials(trials)
    )
    return study


class StrengthSearcher(Searcher):
    """Hands Tune one config per (Optuna trial, seed): {PARAM: x, "seed": s, "search":
    {"name", "trial"}}, and tells Optuna once all seeds of a strength have ended.

    A seed ends with its final report (completed or diverged), an error (failed for good) or
    a scheduler's stop; a trial cut off by an interruption is not an end (Tune resumes it).
    Seeds with a non-finite objective are left out of the mean (all non-finite: FAIL);
    a non-finite accuracy counts as 0 (a diverged model does not keep its accuracy)."""

    def __init__(
        self,
        *,
        url: str,
        method: str,
        bounds: tuple[float, float],
        seeds: int,
        trials: int,
        objective: str,
        min_accuracy: float,
        sampler_seed: int = 0,
    ):
        super().__init__(metric=objective, mode=OBJECTIVES[objective])
        self.url, self.method, self.bounds = url, method, bounds
        self.seeds, self.trials, self.objective = seeds, trials, objective
        self.min_accuracy, self.sampler_seed = min_accuracy, sampler_seed
        self._queue: list[tuple[int, int]] = []  # (optuna number, seed) to hand out
        self._live: dict[str, tuple[int, int]] = {}  # Tune trial id -> (number, seed)
        self._ended: dict[int, dict[int, tuple[float, float]]] = {}  # number -> seed -> (v, acc)
        self._study = None

    # ---- the study, opened lazily (the searcher is pickled with Tune's state) -------------
    @property
    def study(self):
        if self._study is None:
            self._study = open_study(
                self.url, self.method, self.objective, self.sampler_seed, self.trials
            )
            self._study.set_user_attr("min_test_accuracy", self.min_accuracy)
            self._requeue_orphans()
        return self._study

    def _requeue_orphans(self) -> None:
        """Seeds of RUNNING Optuna trials that no Tune trial runs (the driver died between the
        ask and Tune recording the trial): hand them out again."""
        known = set(self._queue) | set(self._live.values())
        for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            for seed in range(self.seeds):
                ended = seed in self._ended.get(t.number, {})
                if (t.number, seed) not in known and not ended:
                    self._queue.append((t.number, seed))

    # ---- Tune's Searcher interface --------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        study = self.study  # opening it first requeues orphans
        if not self._queue:
            if len(study.trials) >= self.trials:
                done = not self._live and not self._queue
                return Searcher.FINISHED if done else None
            trial = study.ask({PARAM: FloatDistribution(*self.bounds)})
            self._queue = [(trial.number, s) for s in range(self.seeds)]
        number, seed = self._queue.pop(0)
        self._live[trial_id] = (number, seed)
        x = study.trials[number].params[PARAM]
        found = {"name": study_name(self.method), "trial": number}
        return {PARAM: x, "seed": seed, "search": found}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self._live:
            return
        result = result or {}
        stopped = bool(result.get("done")) and result.get("status") not in FINAL
        if not (error or stopped or result.get("status") in FINAL):
            return  # interrupted: Tune resumes this trial on the rerun
        number, seed = self._live.pop(trial_id)
        value = _finite(result.get(self.objective)) if not error else math.nan
        accuracy = _finite(result.get("test_accuracy")) if not error else math.nan
        self._ended.setdefault(number, {})[seed] = (value, accuracy)
        if len(self._ended[number]) == self.seeds:
            self._tell(number)

    def _tell(self, number: int) -> None:
        ended = self._ended[number]
        values = [v for v, _ in ended.values() if math.isfinite(v)]
        accuracies = [a if math.isfinite(a) else 0.0 for _, a in ended.values()]
        mean_accuracy = sum(accuracies) / len(accuracies)
        frozen = self.study.trials[number]
        if frozen.state.is_finished():
            return
        trial = optuna.trial.Trial(self.study, self._trial_id(number))
        trial.set_user_attr("seeds", sorted(ended))
        trial.set_user_attr("values", [ended[s][0] for s in sorted(ended)])
        trial.set_user_attr("test_accuracies", [ended[s][1] for s in sorted(ended)])
        trial.set_user_attr("mean_test_accuracy", mean_accuracy)
        trial.set_constraint(CONSTRAINT, self.min_accuracy - mean_accuracy)
        if values:
            self.study.tell(number, sum(values) / len(values), skip_if_finished=True)
        else:
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

    def _trial_id(self, number: int) -> int:
        """The storage's id of Optuna trial `number`, through the storage's public API (a
        trial asked by an earlier driver has no Trial object in this one)."""
        storage = optuna.storages.RDBStorage(self.url)
        study_id = storage.get_study_id_from_name(study_name(self.method))
        return storage.get_trial_id_from_study_id_trial_number(study_id, number)

    # ---- state saved with Tune's experiment (the study is on disk) ------------------------
    def get_state(self) -> dict[str, Any]:
        return {"queue": self._queue, "live": self._live, "ended": self._ended}

    def set_state(self, state: dict[str, Any]) -> None:
        self._queue, self._live, self._ended = state["queue"], state["live"], state["ended"]
        self._study = None  # reopened (and orphans requeued) on first use

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_study"] = None  # a database connection does not pickle
        return state


def _finite(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


# ---- reading a finished study -------------------------------------------------------------
def summarize(url: str, method: str) -> dict[str, Any]:
    """The study's outcome for search_best.json and the final line: the feasible best (or
    the best infeasible trial when none is feasible), its strength, value, mean accuracy."""
    study = optuna.load_study(study_name=study_name(method), storage=url)
    threshold = study.user_attrs.get("min_test_accuracy", math.nan)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    out: dict[str, Any] = {
        "study": study_name(method),
        "storage": url,
        "min_test_accuracy": threshold,
        "n_trials": len(study.trials),
        "n_complete": len(done),
        "feasible": False,
        "optuna_trial": None,
        "strength": None,
        "value": None,
        "mean_test_accuracy": None,
        "seeds": 0,
    }
    if not done:
        return out
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    feasible = [t for t in done if all(c <= 0 for c in t.constraints.values())]
    if feasible:
        best = max(feasible, key=lambda t: sign * t.value)
    else:  # the least infeasible: closest to the accuracy threshold
        best = min(done, key=lambda t: (max(t.constraints.values(), default=0.0), -sign * t.value))
    out.update(
        feasible=bool(feasible),
        optuna_trial=best.number,
        strength=searched_strength(best.params[PARAM]),
        value=best.value,
        mean_test_accuracy=best.user_attrs.get("mean_test_accuracy"),
        seeds=len(best.user_attrs.get("seeds", [])),
    )
    return out


class StudyFile:
    """Where the study lives: `<experiment>/STUDY_FILE`. SQLite needs a local file, so for an
    experiment on a URI (s3://, file:// through pyarrow) the driver works on a copy under the
    artifacts cache, fetched from the experiment when it is missing there and copied back after
    each method's search (and so after an interruption too)."""

    def __init__(self, exp_dir: str, cache_dir: str, sweep_id: str):
        self.remote = layout.study_file(exp_dir) if storage.is_uri(exp_dir) else None
        if self.remote is None:
            self.local = layout.study_file(exp_dir)
            return
        self.local = os.path.join(cache_dir, "studies", sweep_id, STUDY_FILE)
        os.makedirs(os.path.dirname(self.local), exist_ok=True)
        if not os.path.exists(self.local) and storage.exists(self.remote):
            fs, inner = storage.filesystem(self.remote)
            storage.copy_file(fs, inner, self.local)

    @property
    def url(self) -> str:
        return study_url(self.local)

    def upload(self) -> None:
        if self.remote is not None and os.path.exists(self.local):
            storage.copy_file(pafs.LocalFileSystem(), self.local, self.remote)
