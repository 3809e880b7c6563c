"""Shared measurement artifacts, built once per dataset and reused by every trial.

An artifact set holds what no trial should rebuild: the evaluation subset (points, labels,
signal masks), the pythae autoencoder's tangent bases at those points, and the denoiser that
gives the score. It is identified by a hash of `ArtifactConfig`, cached on disk under
`<cache_dir>/<dataset>-<artifact_id>/`, and checked against a SHA-256 checksum on load: a
truncated or edited file is rebuilt, never silently used. The loaded `Artifacts` object is plain
tensors plus a CPU module, so the sweep driver can put it in Ray's object store and hand it to
trials on any node.

Artifacts are built from the dataset at seed 0: every trial seed is measured on the same
evaluation points, so differences between seeds are differences between models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

import torch
from torch import nn

from trainables.checkpoints import file_sha256
from trainables.config import TrialConfig
from trainables.data import DataBundle, load_dataset
from trainables.facts import FACTS, facts_for
from trainables.measure.autoencoder import default_latent_dim, load_autoencoder, train_autoencoder
from trainables.measure.denoiser_training import load_denoiser, train_denoiser
from trainables.measure.protocol import headline_for
from trainables.measure.subspace import agreement, captured_share
from trainables.measure.tangent import tangent_bases
from trainables.measure.tangent_estimators import (
    AE,
    AE_SEED1,
    DENOISER_JACOBIAN,
    EXACT,
    HEADLINE,
    LOCAL_PCA,
    jacobian_top_eigenvectors,
    local_pca_bases,
)
from trainables.progress import EpochProgress

# 2: quality figures, two autoencoders; 3: mixture baseline; 4: every tangent estimate kept
FORMAT = "pags-artifacts/4"
TENSORS_FILE, META_FILE = "artifacts.pt", "artifacts.json"
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "pags", "artifacts")


def default_cache_dir() -> str:
    """The artifacts cache when none is given: $PAGS_CACHE, else DEFAULT_CACHE. Every entry
    point (`pags train`, `pags sweep`, `pags measure`) resolves it here, so they share one
    cache instead of one of them silently rebuilding."""
    return os.environ.get("PAGS_CACHE") or DEFAULT_CACHE


# Caps on training epochs: both nets train until their validation loss stops improving
# (autoencoder.py, denoiser_training.py); these only bound the cost, and the artifact metadata
# records whether a cap was hit (epochs_run). The caps are each dataset's facts
# (trainables/facts.py, with the measurements behind them); tests may patch these tables.
AE_MAX_EPOCHS = {name: f.ae_max_epochs for name, f in FACTS.items()}
DENOISER_MAX_EPOCHS = {name: f.denoiser_max_epochs for name, f in FACTS.items()}
AE_PATIENCE, DENOISER_PATIENCE = 60, 60  # epochs without a validation gain before stopping
# The unconditional small-noise denoiser behind the "denoiser-jacobian" estimate: fitted on
# [sigma / 2, 2 sigma] around JACOBIAN_SIGMA and read at JACOBIAN_SIGMA, small against the
# curved set's curvature (its exact denoiser is 0.8 deg from the exact tangents there, 18 deg
# at the score sigma 0.25). Capped at 60 epochs: on curved its validation loss moved 3% in 120.
JACOBIAN_SIGMA = 0.02
JACOBIAN_DENOISER_MAX_EPOCHS = 60
# Its own patience: on digits its net never beat the mixture baseline (stopped by patience
# with the baseline's loss), so waiting 60 epochs for a gain only cost the demo a minute.
JACOBIAN_PATIENCE = 20


@dataclass(frozen=True)
class ArtifactConfig:
    dataset: str
    latent_dim: int
    eval_points: int
    score_sigma: float
    ae_max_epochs: int
    denoiser_max_epochs: int
    seed: int = 0

    @classmethod
    def for_trial(cls, cfg: TrialConfig) -> ArtifactConfig:
        """The artifacts a trial needs; its 0-valued fields (latent size, score sigma, the
        training caps) take the dataset's defaults."""
        facts_for(cfg.dataset)  # a dataset without a facts record fails here, in one line
        return cls(
            dataset=cfg.dataset,
            latent_dim=cfg.latent_dim or default_latent_dim(cfg.dataset),
            eval_points=cfg.eval_points,
            score_sigma=cfg.score_sigma or headline_for(cfg.dataset).score_sigma,
            ae_max_epochs=cfg.ae_max_epochs or AE_MAX_EPOCHS[cfg.dataset],
            denoiser_max_epochs=cfg.denoiser_max_epochs or DENOISER_MAX_EPOCHS[cfg.dataset],
        )

    @property
    def artifact_id(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Artifacts:
    """Evaluation points and what the measurements need there. Tensors on CPU.

    x `(N, C, H, W)`, y `(N,)`, signal_mask `(N, 1, H, W)` bool or None, tangent `(N, d, k)`
    orthonormal bases of the headline estimate (tangent_estimators.HEADLINE), `tangents` every
    estimate by name (tangent_estimators.ESTIMATORS; "exact" on the oracle sets), denoiser
    `D(x, sigma, y=None)` (class-conditional; y=None gives the unconditional one). `quality`:
    how well the nets trained and how far the estimates are apart (analysis/quality.py; the
    trial rows carry them too); `agreement`: one row per pair of estimates with every figure
    of subspace.AGREEMENT_KEYS; `build_times`: seconds per estimate (exact: none).
    """

    config: ArtifactConfig
    x: torch.Tensor
    y: torch.Tensor
    signal_mask: torch.Tensor | None
    tangent: torch.Tensor
    denoiser: nn.Module
    path: str = ""
    quality: dict = dataclasses.field(default_factory=dict)
    tangents: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    agreement: list[dict] = dataclasses.field(default_factory=list)
    build_times: dict[str, float] = dataclasses.field(default_factory=dict)


def artifacts_key(cfg: TrialConfig) -> str:
    """Which shared artifact set a trial uses (the driver prepares one per key)."""
    return ArtifactConfig.for_trial(cfg).artifact_id


def artifact_dir(cfg: ArtifactConfig, cache_dir: str) -> str:
    return os.path.join(os.path.abspath(cache_dir), f"{cfg.dataset}-{cfg.artifact_id}")


def load_artifacts(folder: str) -> Artifacts:
    """Load a built artifact set; ValueError when a file is missing or fails its checksum."""
    meta_path = os.path.join(folder, META_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        for name, digest in meta["sha256"].items():
            if file_sha256(os.path.join(folder, name)) != digest:
                raise ValueError(f"{name} fails its SHA-256 checksum (truncated or modified)")
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder}: incomplete artifact set ({err})") from None
    except ValueError as err:
        raise ValueError(f"{folder}: {err}") from None
    t = torch.load(os.path.join(folder, TENSORS_FILE), map_location="cpu", weights_only=True)
    denoiser = load_denoiser(os.path.join(folder, "denoiser.pt"), "cpu").eval()
    tangents = {name[len("tangent/"):]: v for name, v in t.items() if name.startswith("tangent/")}
    return Artifacts(
        ArtifactConfig(**meta["config"]), t["x"], t["y"], t.get("signal_mask"),
        tangents[HEADLINE], denoiser, folder, meta["quality"], tangents, meta["agreement"],
        meta["tangent_build_time_s"],
    )  # fmt: skip


def prepare_artifacts(
    cfg: TrialConfig,
    cache_dir: str | None = None,
    bundle: DataBundle | None = None,
    log=print,
) -> Artifacts:
    """The artifacts for `cfg`'s dataset: from the cache when intact, else built and cached.

    A corrupt cached set (checksum mismatch, missing file) is reported through `log` and rebuilt.
    """
    acfg = ArtifactConfig.for_trial(cfg)
    folder = artifact_dir(acfg, cache_dir or default_cache_dir())
    if os.path.exists(os.path.join(folder, META_FILE)):
        try:
            return load_artifacts(folder)
        except ValueError as err:
            log(f"rebuilding artifacts: {err}")
    bundle = load_dataset(cfg.dataset, acfg.seed, cfg.data_root) if bundle is None else bundle
    _build(acfg, bundle, folder, log)
    return load_artifacts(folder)


def _stack(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "tensors"):
        return dataset.tensors[0][:n], dataset.tensors[1][:n]
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _build(acfg: ArtifactConfig, bundle: DataBundle, folder: str, log) -> None:
    """Train the autoencoders and denoiser, compute tangent bases and the quality figures,
    write everything with checksums."""
    start = time.monotonic()
    tmp = f"{folder}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    x_train, y_train = _stack(bundle.train, 60_000)
    x, y = _stack(bundle.test, acfg.eval_points)
    oracle = bundle.oracle
    # Every estimate is kept (tangent_estimators.ESTIMATORS): two autoencoders (seed, seed + 1:
    # how reproducible the estimate is), local PCA, the small-noise denoiser's Jacobian, and on
    # the oracle sets the exact tangent spaces they are judged against.
    tangents, ae_meta, times = {}, None, {}
    for name, seed in ((AE, acfg.seed), (AE_SEED1, acfg.seed + 1)):
        t0 = time.monotonic()
        log(f"artifacts for {acfg.dataset}: training the autoencoder (k={acfg.latent_dim}, "
            f"seed {seed}) ...")  # fmt: skip
        ae_dir = train_autoencoder(
            x_train, acfg.latent_dim, acfg.ae_max_epochs, seed,
            os.path.join(tmp, f"autoencoder-seed{seed}"), patience=AE_PATIENCE,
            progress=EpochProgress(log, f"artifacts for {acfg.dataset}: autoencoder seed {seed}",
                                   acfg.ae_max_epochs),
        )  # fmt: skip
        ae = load_autoencoder(ae_dir)
        with torch.no_grad():
            z = ae.encode(x)
        tangents[name] = tangent_bases(ae.decode, z)
        ae_meta = ae_meta or ae.config
        times[name] = time.monotonic() - t0
    t0 = time.monotonic()
    tangents[LOCAL_PCA] = local_pca_bases(x_train, x, acfg.latent_dim)
    times[LOCAL_PCA] = time.monotonic() - t0
    t0 = time.monotonic()
    tangents[DENOISER_JACOBIAN], gap = _denoiser_jacobian(acfg, x_train, x, tmp, log)
    times[DENOISER_JACOBIAN] = time.monotonic() - t0
    if oracle is not None:
        tangents[EXACT] = oracle.tangent_at(x).to(tangents[AE].dtype)
    log(f"artifacts for {acfg.dataset}: training the denoiser (score) ...")
    sigma = acfg.score_sigma
    train_denoiser(
        x_train, acfg.denoiser_max_epochs, acfg.seed, out_path=os.path.join(tmp, "denoiser.pt"),
        y_train=y_train, num_classes=bundle.num_classes, patience=DENOISER_PATIENCE,
        sigma_range=(sigma / 2, sigma * 2),
        progress=EpochProgress(log, f"artifacts for {acfg.dataset}: denoiser",
                               acfg.denoiser_max_epochs),
    )  # fmt: skip
    denoiser_meta = load_denoiser(os.path.join(tmp, "denoiser.pt")).config
    names = list(tangents)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    agree = [{"a": a, "b": b, **agreement(tangents[a], tangents[b])} for a, b in pairs]
    figures = {(r["a"], r["b"]): r for r in agree}
    seed_pair = figures[(AE, AE_SEED1)]
    quality = {
        "ae_val_reconstruction_error": ae_meta["val_reconstruction_error"],
        "ae_epochs_run": ae_meta["epochs_run"],
        "ae_epoch_cap": acfg.ae_max_epochs,  # the budget that built them (demo vs study)
        "tangent_seed_overlap": seed_pair["overlap"],
        "tangent_seed_angle_deg": seed_pair["largest_angle_deg"],
        "denoiser_val_loss": denoiser_meta["val_loss"],
        "denoiser_baseline_val_loss": denoiser_meta["baseline_val_loss"],
        "denoiser_epochs_run": denoiser_meta["epochs_run"],
        "jacobian_eigenvalue_gap": gap,
        "build_time_s": time.monotonic() - start,
    }
    if oracle is not None:
        exact_pair = figures[(AE, EXACT)]
        # the share of the exact space captured (/ k_exact; = the agreement's overlap when the
        # latent size is the exact dimension; synthetic-shapes: 128 vs 4)
        captured = captured_share(tangents[AE], tangents[EXACT])
        quality["tangent_exact_overlap"] = float(captured.mean())
        quality["tangent_exact_angle_deg"] = exact_pair["largest_angle_deg"]
    mask = bundle.signal_mask_test[: len(x)] if bundle.signal_mask_test is not None else None
    tensors = {"x": x, "y": y, **{f"tangent/{name}": q for name, q in tangents.items()}}
    if mask is not None:
        tensors["signal_mask"] = mask
    torch.save(tensors, os.path.join(tmp, TENSORS_FILE))
    files = [TENSORS_FILE, "denoiser.pt"]
    meta = {
        "format": FORMAT,
        "config": dataclasses.asdict(acfg),
        "artifact_id": acfg.artifact_id,
        "quality": quality,
        "agreement": agree,
        "tangent_build_time_s": times,
        "sha256": {name: file_sha256(os.path.join(tmp, name)) for name in files},
    }
    with open(os.path.join(tmp, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)
    # Swap the finished folder in whole: a crash mid-build leaves only the .building folder.
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    vs = EXACT if oracle is not None else AE_SEED1
    spread = ", ".join(
        f"{r['a']} {r['overlap']:.3f} / {r['largest_angle_deg']:.1f} deg"
        for r in agree if r["b"] == vs and r["a"] != vs
    )  # fmt: skip
    log(
        f"artifacts for {acfg.dataset}: built in {quality['build_time_s']:.0f} s; autoencoder "
        f"validation error {quality['ae_val_reconstruction_error']:.4g}; tangent estimates vs "
        f"{vs} (overlap / largest angle): {spread}; denoiser validation loss "
        f"{quality['denoiser_val_loss']:.4g} (mixture baseline alone "
        f"{quality['denoiser_baseline_val_loss']:.4g})"
    )


def _denoiser_jacobian(
    acfg: ArtifactConfig, x_train: torch.Tensor, x: torch.Tensor, tmp: str, log
) -> tuple[torch.Tensor, float]:
    """The "denoiser-jacobian" estimate at x and the mean relative eigenvalue gap at k,
    (lambda_k - lambda_{k+1}) / lambda_k: near 0 says the denoiser does not single out k
    directions (the estimate is then arbitrary within a larger span)."""
    log(f"artifacts for {acfg.dataset}: training the small-noise denoiser (tangents) ...")
    path = os.path.join(tmp, "denoiser-jacobian.pt")
    s = JACOBIAN_SIGMA
    # The score denoiser's cap bounds this one too (small test configs stay small).
    cap = min(JACOBIAN_DENOISER_MAX_EPOCHS, acfg.denoiser_max_epochs)
    train_denoiser(
        x_train, cap, acfg.seed, out_path=path,
        sigma_range=(s / 2, s * 2), patience=JACOBIAN_PATIENCE,
        progress=EpochProgress(log, f"artifacts for {acfg.dataset}: small-noise denoiser",
                               cap),
    )  # fmt: skip
    denoiser = load_denoiser(path)
    os.remove(path)  # only its tangent estimate is kept (and checksummed)
    gen = torch.Generator().manual_seed(acfg.seed)
    q, values = jacobian_top_eigenvectors(lambda v: denoiser(v, s), x, acfg.latent_dim, gen)
    gap = (values[:, -2] - values[:, -1]) / values[:, -2].abs().clamp_min(1e-12)
    return q, float(gap.mean())
