"""The trial configuration: frozen, typed, strictly parsed, identified by a hash of its fields.

Identity from configuration (open_lth): a trial's directory, checkpoint and result rows are keyed
by `config_id`, a hash of every identity field, never by a parsed name. Fields marked
`identity=False` (where the data lives, where artifacts are cached) say where things are, not
what the trial is, so moving the data does not change the id. Fields added after results were
first published (`_added`) count only when set away from their default, so every trial that
existed before keeps its id (and its finished result on resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from analysis.results.errors import InputError
from analysis.results.methods import METHODS

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "multistep", "constant")
ALIGNMENT_METRICS = ("auto", "lpips", "stlpips")
ROBUST_ATTACKS = ("apgd-ce", "autoattack", "none")  # trainables/measure/robustness.py ATTACKS
SCORE_PREFIX = "edm:"


def check_score_spec(spec: str) -> None:
    """`score`: "" (the project's denoiser) or "edm:PATH" (trainables/measure/edm.py)."""
    if spec and not (spec.startswith(SCORE_PREFIX) and len(spec) > len(SCORE_PREFIX)):
        raise InputError(
            f"score={spec!r} is unknown; allowed: '' (the project's denoiser) or edm:PATH "
            "(an EDM-style denoiser file)"
        )


def _where(**meta: Any) -> Any:
    return field(default="", metadata={"identity": False, **meta})


def _added(default: Any) -> Any:
    """A field added after the first results: in the id only when not at `default`."""
    return field(default=default, metadata={"elide_default": True})


@dataclass(frozen=True)
class TrialConfig:
    """One trial: one dataset, model, objective, strength and seed.

    `strength` is the one knob of every objective (docs/method.md): lambda for `gradnorm` (clean
    per-example form, see trainables/objectives.py for the conversion to the reference code's
    scale) and `smoothness`, the noise sigma for `randsmooth`, the L2 radius epsilon for `pgd_l2`.
    Pixel values are in [0, 1], so sigma and epsilon are in those units.
    """

    dataset: str = "digits-distractor"
    model: str = "small-cnn"
    activation: str = "softplus"
    method: str = "none"
    strength: float = 0.0
    seed: int = 0
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    milestones: tuple[int, ...] = ()
    smooth_sigma: float = 0.1  # noise of the smoothness penalty (its strength is lambda)
    pgd_steps: int = 4
    train_subset: int = 0  # 0 = the whole training set
    augment: str = _added("none")  # training-batch augmentation (the recipe's; docs/method.md)
    mixed_precision: str = _added("auto")  # auto: bf16 autocast + channels_last on CUDA only
    # measurements (trainables/measure); 0 / () / "" mean "the dataset's documented default"
    measure: bool = True
    measure_every: int = 0  # 0 = only after the last epoch
    eval_points: int = 200
    noise_draws: int = 8
    eps: tuple[float, ...] = ()
    latent_dim: int = 0
    score_sigma: float = 0.0
    alignment_metric: str = "auto"
    ae_max_epochs: int = _added(0)  # caps of the shared artifacts' training (0: the dataset's)
    denoiser_max_epochs: int = _added(0)
    # robustness (trainables/measure/robustness.py, certify.py); docs/method.md
    robustness: bool = _added(True)  # False: neither robust accuracy nor a certificate
    attack: str = _added("apgd-ce")  # of robust accuracy; "none" = no robust accuracy
    attack_radius: float = _added(0.0)  # 0 = 0.5 * sqrt(d / 3072)
    smoothing_sigma: float = _added(0.0)  # 0: a randsmooth trial's sigma, else no certificate
    certify_n0: int = _added(32)
    certify_n: int = _added(200)
    certify_alpha: float = _added(0.001)
    score: str = _added("")  # "" = the project's denoiser; "edm:PATH" = a user's EDM-style file
    data_root: str = _where()
    artifacts_dir: str = _where()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Strict parse: unknown keys, wrong types and bad values raise ValueError naming the
        field and what is allowed."""
        cfg = cls(**cls.typed(d))
        cfg.validate()
        return cfg

    @classmethod
    def typed(cls, d: dict[str, Any]) -> dict[str, Any]:
        """`d` with every value converted to its field's type (unknown keys and values of
        the wrong type raise InputError), not yet checked against the allowed values."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown config field {unknown[0]!r}; allowed: {', '.join(names)}")
        hints = get_type_hints(cls)
        return {k: _coerce(k, v, hints[k]) for k, v in d.items()}

    def replace(self, **changes: Any) -> TrialConfig:
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        from trainables.augment import AUGMENT
        from trainables.data import DATASETS
        from trainables.models import ACTIVATIONS, MODELS
        from trainables.precision import MODES as PRECISION_MODES

        _choice("dataset", self.dataset, DATASETS.names())
        _choice("model", self.model, MODELS.names())
        _choice("method", self.method, METHODS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("alignment_metric", self.alignment_metric, ALIGNMENT_METRICS)
        _choice("augment", self.augment, tuple(AUGMENT))
        _choice("mixed_precision", self.mixed_precision, PRECISION_MODES)
        _choice("attack", self.attack, ROBUST_ATTACKS)
        _at_least("attack_radius", self.attack_radius, 0.0)
        _at_least("smoothing_sigma", self.smoothing_sigma, 0.0)
        _at_least("certify_n0", self.certify_n0, 1)
        _at_least("certify_n", self.certify_n, 1)
        if not 0 < self.certify_alpha < 0.5:
            raise InputError(
                f"certify_alpha={self.certify_alpha!r} is invalid; allowed: a number in (0, 0.5)"
            )
        check_score_spec(self.score)
        _at_least("strength", self.strength, 0.0)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("pgd_steps", self.pgd_steps, 1)
        _at_least("train_subset", self.train_subset, 0)
        _at_least("measure_every", self.measure_every, 0)
        _at_least("eval_points", self.eval_points, 1)
        _at_least("noise_draws", self.noise_draws, 1)
        _at_least("latent_dim", self.latent_dim, 0)
        _at_least("ae_max_epochs", self.ae_max_epochs, 0)
        _at_least("denoiser_max_epochs", self.denoiser_max_epochs, 0)
        _at_least("score_sigma", self.score_sigma, 0.0)
        _at_least("smooth_sigma", self.smooth_sigma, 0.0)
        _at_least("weight_decay", self.weight_decay, 0.0)
        _at_least("momentum", self.momentum, 0.0)
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise InputError(f"lr={self.lr!r} is invalid; allowed: a finite number > 0")
        for m in self.milestones:
            _at_least("milestones", m, 1)
        for e in self.eps:
            if not e > 0 or not math.isfinite(e):
                raise InputError(f"eps={e!r} is invalid; allowed: finite numbers > 0")
        if self.method == "none" and self.strength != 0:
            raise InputError(f"strength={self.strength!r} is invalid for method 'none'; allowed: 0")

    # ---- identity -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("identity", True)
            and not self.at_added_default(f.name, getattr(self, f.name))
        }

    @staticmethod
    def at_added_default(name: str, value: Any) -> bool:
        """Whether `value` is the default of a field added later (one an id leaves out)."""
        f = {f.name: f for f in dataclasses.fields(TrialConfig)}[name]
        return bool(f.metadata.get("elide_default")) and value == f.default

    @property
    def config_id(self) -> str:
        blob = json.dumps(self.identity_dict(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _choice(name: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise InputError(f"{name}={value!r} is unknown; allowed: {', '.join(allowed)}")


def _at_least(name: str, value: float, low: float) -> None:
    if not (value >= low) or (isinstance(value, float) and not math.isfinite(value)):
        raise InputError(f"{name}={value!r} is invalid; allowed: a finite number >= {low}")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert JSON/CLI values to the field's type; refuse anything lossy."""
    text = str(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if text.startswith("tuple[int"):
            return tuple(_coerce(name, v, int) for v in _as_list(value))
        if text.startswith("tuple[float"):
            return tuple(_coerce(name, v, float) for v in _as_list(value))
    except (TypeError, ValueError):
        pass
    else:
        raise TypeError(f"unhandled type {hint} for {name}")
    kind = text.replace("<class '", "").replace("'>", "")
    raise InputError(f"{name}={value!r} is invalid; allowed: a value of type {kind}")


def _as_list(value: Any) -> list:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    return list(value)
