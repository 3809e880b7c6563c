"""The autoencoder whose decoder spans the data manifold's tangent spaces (docs/method.md,
"Tangent spaces"; paper appendix B.6). Trained with pythae, as in the paper's reference code.

Saved artifacts are plain: `autoencoder.pt` (encoder and decoder state dicts) beside
`autoencoder.json` (everything needed to rebuild the nets). Loading needs neither pythae nor
pickled classes, so Ray workers can load a shared autoencoder cheaply and safely.

The decoder is differentiated (tangent.py), so every hidden activation is softplus: a ReLU
decoder has a piecewise-constant Jacobian that jumps between neighbouring latents.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import tempfile

import numpy as np
import torch
from torch import nn

from analysis.results.atomic import atomic_write
from trainables.facts import FACTS, facts_for

FORMAT = "pags-autoencoder/2"  # 2: AffineResidual nets, validation split
WEIGHTS_FILE, CONFIG_FILE = "autoencoder.pt", "autoencoder.json"

# Latent dimension k per dataset: each dataset's facts record (trainables/facts.py).
LATENT_DIMS: dict[str, int] = {name: f.latent_dim for name, f in FACTS.items()}

MLP_MAX_DIM = 256  # images with at most this many values get an MLP (conv nets need room)
MLP_HIDDEN = 256
CONV_BASE_WIDTH, CONV_MAX_WIDTH, CONV_MAX_LEVELS = 32, 128, 4

# Environment variables pythae's BaseTrainerConfig reads (or writes) to set up DDP. A Ray
# worker (or torchrun parent) may carry them; pythae would then try to join a process group.
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def default_latent_dim(dataset: str) -> int:
    """The dataset's latent size; one without a facts record fails loudly (one line)."""
    return facts_for(dataset).latent_dim


# ---------------------------------------------------------------------------------- the nets
def _conv_plan(shape: tuple[int, int, int]) -> list[tuple[int, int]]:
    """Spatial sizes `(h, w)` after each stride-2 conv, halving while both sides are >= 8."""
    _, h, w = shape
    sizes = [(h, w)]
    while min(h, w) >= 8 and len(sizes) <= CONV_MAX_LEVELS:
        h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1  # Conv2d(k=4, s=2, p=1)
        sizes.append((h, w))
    return sizes


def _widths(levels: int) -> list[int]:
    return [min(CONV_BASE_WIDTH * 2**i, CONV_MAX_WIDTH) for i in range(levels)]


def build_nets(shape: tuple[int, int, int], latent_dim: int, arch: str) -> tuple[nn.Module, ...]:
    """Fresh (encoder, decoder): encoder `(B, C, H, W) -> (B, k)`, decoder `(B, k) -> (B, C, H, W)`.

    `arch` "mlp": two softplus hidden layers of 256. "conv": stride-2 4x4 convs (width 32,
    doubling, capped at 128) while both sides are >= 8 px, then a linear map to k; the decoder
    mirrors it with transposed convs whose output padding restores odd sizes exactly, so any
    (C, H, W) works, non-square included. The decoder's last layer is linear: data need not
    lie in [0, 1] (the synthetic set does not), and a sigmoid would flatten its Jacobian there.
    """
    c, h, w = shape
    d = c * h * w
    act = nn.Softplus
    if arch == "mlp":
        encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, MLP_HIDDEN), act(),
            nn.Linear(MLP_HIDDEN, MLP_HIDDEN), act(),
            nn.Linear(MLP_HIDDEN, latent_dim),
        )  # fmt: skip
        decoder = nn.Sequential(
            nn.Linear(latent_dim, MLP_HIDDEN), act(),
            nn.Linear(MLP_HIDDEN, MLP_HIDDEN), act(),
            nn.Linear(MLP_HIDDEN, d),
            nn.Unflatten(1, shape),
        )  # fmt: skip
        return encoder, decoder
    if arch != "conv":
        raise ValueError(f"arch={arch!r} is unknown; allowed: mlp, conv")
    sizes = _conv_plan(shape)
    widths = _widths(len(sizes) - 1)
    if not widths:
        raise ValueError(f"shape {shape} is too small for arch='conv' (needs both sides >= 8)")
    enc, cin = [], c
    for width in widths:
        enc += [nn.Conv2d(cin, width, 4, stride=2, padding=1), act()]
        cin = width
    flat = widths[-1] * sizes[-1][0] * sizes[-1][1]
    encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent_dim))
    dec = [nn.Linear(latent_dim, flat), act(), nn.Unflatten(1, (widths[-1], *sizes[-1]))]
    for i in reversed(range(len(widths))):
        cout = widths[i - 1] if i > 0 else widths[0]
        (th, tw), (sh, sw) = sizes[i], sizes[i + 1]
        # ConvTranspose2d(k=4, s=2, p=1) maps n -> 2n + output_padding: pad 1 for odd targets.
        pad = (th - 2 * sh, tw - 2 * sw)
        dec += [nn.ConvTranspose2d(widths[i], cout, 4, stride=2, padding=1, output_padding=pad)]
        dec += [act()]
    dec += [nn.Conv2d(widths[0], c, 3, padding=1)]
    return encoder, nn.Sequential(*dec)


class AffineResidual(nn.Module):
    """`y = affine(x) + net(x)`: an affine map (set from PCA before training) plus a nonlinear
    correction, so every direction PCA captures is represented from the first step and the net
    learns the curvature. (Starting the net's output at zero as well left the curved synthetic
    set's autoencoder stuck at the PCA solution: its loss did not move in 30 epochs.)

    Why: a plain MLP autoencoder trained by MSE drops low-variance directions of the manifold.
    On the linear synthetic set (signal spread 0.15 beside distractor spread 0.6) it kept only
    0.08 of one signal direction's energy after 40 and after 200 epochs (largest principal angle
    87 degrees); started from PCA it is exact. `in_shape`/`out_shape` are the shapes without the
    batch dimension: images `(C, H, W)` or latents `(k,)`.
    """

    def __init__(self, net: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        super().__init__()
        self.net, self.out_shape = net, tuple(out_shape)
        self.affine = nn.Linear(math.prod(in_shape), math.prod(out_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(x.flatten(1)).view(-1, *self.out_shape) + self.net(x)


def build_autoencoder_nets(
    shape: tuple[int, int, int], latent_dim: int, arch: str
) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) as `build_nets`, each with an `AffineResidual` path around it."""
    encoder, decoder = build_nets(shape, latent_dim, arch)
    return (
        AffineResidual(encoder, shape, (latent_dim,)),
        AffineResidual(decoder, (latent_dim,), shape),
    )


@torch.no_grad()
def init_from_pca(encoder: AffineResidual, decoder: AffineResidual, x: torch.Tensor) -> None:
    """Set the affine paths to PCA on x `(N, C, H, W)`: z = P^T (x - mean), x = mean + P z."""
    flat = x.flatten(1).double()
    mean = flat.mean(0)
    k = encoder.affine.out_features
    _, _, v = torch.pca_lowrank(flat - mean, q=min(k, *flat.shape), center=False, niter=6)
    basis = torch.zeros(flat.shape[1], k, dtype=torch.float64)
    basis[:, : v.shape[1]] = v
    encoder.affine.weight.copy_(basis.T)
    encoder.affine.bias.copy_(-(basis.T @ mean))
    decoder.affine.weight.copy_(basis)
    decoder.affine.bias.copy_(mean)


def auto_arch(shape: tuple[int, int, int]) -> str:
    c, h, w = shape
    return "mlp" if c * h * w <= MLP_MAX_DIM or min(h, w) < 8 else "conv"


class Autoencoder(nn.Module):
    """A trained autoencoder: `encode (B, C, H, W) -> (B, k)`, `decode (B, k) -> (B, C, H, W)`."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: dict):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.config = config

    @property
    def latent_dim(self) -> int:
        return int(self.config["latent_dim"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.config["shape"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# ------------------------------------------------------------------------- pythae training
@contextlib.contextmanager
def _quiet_pythae():
    """Silence pythae (its loggers own StreamHandlers bound to the real stderr at import, so a
    redirect alone would miss them), hide the DDP env vars from it, and restore everything."""
    saved_env = {k: os.environ.pop(k) for k in _DIST_ENV if k in os.environ}
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name == "pythae" or name.startswith("pythae.")
    ]
    disabled = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was
        for k in _DIST_ENV:  # pythae writes MASTER_ADDR/PORT into os.environ: undo that too
            os.environ.pop(k, None)
        os.environ.update(saved_env)


@contextlib.contextmanager
def _restore_global_rngs():
    """pythae's trainer reseeds python, numpy and torch globally; keep the caller's streams."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _same(batch):
    return batch


def _pythae_classes():
    """pythae classes, defined lazily so loading a saved autoencoder never imports pythae."""
    from pythae.models import AE, AEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer
    from pythae.trainers.training_callbacks import CallbackHandler, TrainingCallback
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor):
            return ModelOutput(embedding=self.net(x))

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, z: torch.Tensor):
            return ModelOutput(reconstruction=self.net(z))

    class LossHistory(TrainingCallback):
        """Records the losses per epoch and stops training (by raising `_StopTraining`, as
        pythae's loop has no early-stopping hook) once the validation loss has not improved
        by a relative `min_delta` for `patience` epochs."""

        def __init__(self, patience: int, floor: float, min_delta: float = 1e-3, progress=None):
            self.progress = progress  # progress(epoch, what, value), or None
            self.train_loss: list[float] = []
            self.val_loss: list[float] = []
            self.patience, self.floor, self.min_delta = patience, floor, min_delta
            self.best, self.best_epoch = math.inf, 0

        def on_log(self, training_config, logs, **kwargs):
            self.train_loss.append(float(logs["train_epoch_loss"]))
            self.val_loss.append(float(logs["eval_epoch_loss"]))
            if self.progress is not None:
                self.progress(len(self.val_loss), "validation loss", self.val_loss[-1])
            gain = self.best - self.val_loss[-1]  # inf on the first epoch
            if gain > max(self.min_delta * self.val_loss[-1], self.floor):
                self.best, self.best_epoch = self.val_loss[-1], len(self.val_loss)
            elif len(self.val_loss) - self.best_epoch >= self.patience:
                raise _StopTraining

    class QuietTrainer(BaseTrainer):
        """BaseTrainer without its tqdm bars and console printer, and without pythae's own
        final save (cloudpickle of our module); we save plain state dicts instead."""

        def _setup_callbacks(self):
            self.callback_handler = CallbackHandler(callbacks=self.callbacks, model=self.model)

        def save_model(self, model, dir_path):
            pass

        def get_train_dataloader(self, train_dataset):
            # Whole-batch indexing instead of pythae's per-example __getitem__ + collate: the
            # per-example Python overhead dominated the training time of small images.
            # Same shuffling semantics (a fresh permutation per epoch from the global RNG).
            sampler = BatchSampler(
                RandomSampler(train_dataset),
                self.training_config.per_device_train_batch_size,
                drop_last=False,
            )
            return DataLoader(train_dataset, sampler=sampler, batch_size=None, collate_fn=_same)

        def get_eval_dataloader(self, eval_dataset):
            sampler = BatchSampler(
                SequentialSampler(eval_dataset),
                self.training_config.per_device_eval_batch_size,
                drop_last=False,
            )
            return DataLoader(eval_dataset, sampler=sampler, batch_size=None, collate_fn=_same)

    return AE, AEConfig, Encoder, Decoder, LossHistory, QuietTrainer


class _StopTraining(Exception):
    """Raised from a pythae callback to end training early (validation loss stopped improving)."""


def train_autoencoder(
    x_train: torch.Tensor,
    latent_dim: int,
    max_epochs: int,
    seed: int,
    out_dir: str,
    batch_size: int = 64,
    lr: float = 1e-3,
    *,
    arch: str = "auto",
    patience: int = 30,
    val_fraction: float = 0.1,
    device: str | None = None,
    progress=None,
) -> str:
    """Train a pythae `AE` (MSE reconstruction, Adam) on `x_train (N, C, H, W)`; save it.

    Trained to convergence rather than for a fixed budget: a random `val_fraction` of the images
    (drawn with `seed`) is held out, the learning rate halves when the validation loss stalls for
    patience / 3 epochs, training stops when it has not improved for `patience` epochs (or at
    `max_epochs`), and the model kept is the one with the lowest validation loss (pythae's
    keep-best-on-eval). Encoder and decoder are `AffineResidual` nets started from PCA.
    `arch`: "mlp", "conv" or "auto" (MLP for images of <= 256 values or a side < 8 px).
    `device`: "cpu" forces CPU; otherwise pythae takes CUDA when it is visible. The caller's
    global RNG states and environment are restored afterwards. Returns the absolute `out_dir`,
    holding autoencoder.pt and autoencoder.json (with the loss curves and the best validation
    reconstruction error, per-image sum of squares).
    """
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainerConfig

    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1; got {max_epochs}")
    AE, AEConfig, Encoder, Decoder, LossHistory, QuietTrainer = _pythae_classes()
    shape = tuple(int(s) for s in x_train.shape[1:])
    if len(shape) != 3:
        raise ValueError(f"x_train must be (N, C, H, W); got {tuple(x_train.shape)}")
    arch = auto_arch(shape) if arch == "auto" else arch
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    data = x_train.detach().float().cpu()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(data))))
    fit, val = data[order[n_val:]], data[order[:n_val]]
    # Gains below 1e-4 of the data's variance (per-image sum of squares) do not count: on the
    # flat synthetic set the loss kept creeping from 1e-4 to 1e-5 of it for 400 more epochs
    # with the tangent spaces already within a degree.
    total_variance = float((fit - fit.mean(0)).pow(2).flatten(1).sum(1).mean())
    history = LossHistory(patience, floor=1e-4 * total_variance, progress=progress)
    with _restore_global_rngs(), _quiet_pythae(), tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(seed)
        encoder, decoder = build_autoencoder_nets(shape, latent_dim, arch)
        init_from_pca(encoder, decoder, fit)
        model = AE(
            AEConfig(input_dim=shape, latent_dim=latent_dim),
            encoder=Encoder(encoder),
            decoder=Decoder(decoder),
        )
        config = BaseTrainerConfig(
            output_dir=scratch,  # pythae makes a timestamped dir here; we keep nothing of it
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=512,
            num_epochs=max_epochs,
            learning_rate=lr,
            scheduler_cls="ReduceLROnPlateau",
            scheduler_params={"factor": 0.5, "patience": max(1, patience // 3)},
            seed=seed,
            no_cuda=device == "cpu",
            world_size=1,
            rank=-1,
            local_rank=-1,
        )
        trainer = QuietTrainer(
            model=model,
            train_dataset=BaseDataset(fit, torch.zeros(len(fit))),
            eval_dataset=BaseDataset(val, torch.zeros(len(val))),
            training_config=config,
            callbacks=[history],
        )
        try:
            trainer.train()
        except _StopTraining:
            pass
        best = trainer._best_model  # pythae's deepcopy of the best epoch's model (on eval)
    meta = {
        "format": FORMAT,
        "shape": list(shape),
        "latent_dim": latent_dim,
        "arch": arch,
        "max_epochs": max_epochs,
        "epochs_run": len(history.val_loss),
        "best_epoch": history.best_epoch,
        "patience": patience,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "n_train": len(fit),
        "n_val": len(val),
        # per epoch: mean over images of the per-image sum of squared errors
        "train_loss": history.train_loss,
        "val_loss": history.val_loss,
        "val_reconstruction_error": min(history.val_loss),  # the kept (best) epoch's
        "trainer": "pythae.trainers.BaseTrainer + pythae.models.AE",
        "torch_version": torch.__version__,
    }
    state = {
        "encoder": {k: v.cpu() for k, v in best.encoder.net.state_dict().items()},
        "decoder": {k: v.cpu() for k, v in best.decoder.net.state_dict().items()},
    }
    atomic_write(os.path.join(out_dir, WEIGHTS_FILE), lambda f: torch.save(state, f))
    atomic_write(
        os.path.join(out_dir, CONFIG_FILE),
        lambda f: f.write(json.dumps(meta, indent=2).encode()),
    )
    return out_dir


def load_autoencoder(path: str, device: str | torch.device = "cpu") -> Autoencoder:
    """Load what `train_autoencoder` saved (`path`: its directory or autoencoder.pt), eval mode."""
    folder = os.path.dirname(path) if path.endswith(".pt") else path
    with open(os.path.join(folder, CONFIG_FILE)) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
    encoder, decoder = build_autoencoder_nets(
        tuple(meta["shape"]), meta["latent_dim"], meta["arch"]
    )
    state = torch.load(os.path.join(folder, WEIGHTS_FILE), map_location="cpu", weights_only=True)
    encoder.load_state_dict(state["encoder"])
    decoder.load_state_dict(state["decoder"])
    return Autoencoder(encoder, decoder, meta).to(device).eval()
