"""Real image data sets read from a local root: MNIST with distractor, CIFAR-10, ImageNet-64.

MNIST and CIFAR-10 go through torchvision's own dataset classes (download is attempted only
when the files are missing; offline it fails and we raise `DataUnavailableError`). ImageNet-64
(Chrabaszcz et al. 2017) needs registration, so it is never downloaded.

Memory: MNIST-with-distractor (60k x 1x56x28, ~376 MB) and CIFAR-10 (50k x 3x32x32, ~614 MB)
are converted to float32 once and kept as `TensorDataset`s so the trial loop can slice batches.
ImageNet-64 (1.28M x 3x64x64) stays uint8 (~15.7 GB) in a `UInt8Images` wrapper that converts
per item; it is never materialized as float32.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from analysis.results.atomic import file_digest
from trainables.data.base import DATASETS, DataBundle, DataUnavailableError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Input shapes (C, H, W), known before any file is read (a dry run shows what they resolve to).
SHAPES = {"mnist-distractor": (1, 56, 28), "cifar10": (3, 32, 32), "imagenet64": (3, 64, 64)}
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
IMAGENET64_TRAIN = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET64_VAL = "val_data.npz"
# Where the ImageNet-64 train batches may live (the official zips come in two parts).
IMAGENET64_TRAIN_DIRS = (
    "Imagenet64_train_npz",
    "Imagenet64_train_part1_npz",
    "Imagenet64_train_part2_npz",
    "Imagenet64_train_part1",
    "Imagenet64_train_part2",
    ".",
)
IMAGENET64_VAL_DIRS = ("Imagenet64_val_npz", "Imagenet64_val", ".")


class UInt8Images(Dataset):
    """uint8 images `(N, C, H, W)` and int labels; yields `(float32 x in [0, 1], int y)`.

    Keeps only the uint8 tensor in memory (a quarter of the float32 size) and converts one
    item at a time.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float().div_(255.0), int(self.labels[i])


def letter_a_glyph(size: int) -> torch.Tensor:
    """A capital letter "A" as a `(size, size)` float image in [0, 1] (1 = ink).

    Two legs from the apex to the bottom corners and a crossbar, each a stroke of half-width
    0.05 * size with a one-pixel linear edge; deterministic, nearly binary at size 28.
    """
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # pixel centres in (0, 1)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    p = torch.stack([xx, yy], dim=-1)
    strokes = [((0.5, 0.12), (0.16, 0.88)), ((0.5, 0.12), (0.84, 0.88)), ((0.3, 0.6), (0.7, 0.6))]
    dist = torch.full((size, size), float("inf"), dtype=torch.float64)
    for a, b in strokes:
        a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        t = ((p - a) @ (b - a) / (b - a).dot(b - a)).clamp(0, 1)
        dist = torch.minimum(dist, (p - a - t[..., None] * (b - a)).norm(dim=-1))
    return (1.0 - (dist - 0.05) * size).clamp(0, 1).float()


# A copy of the data that differs from the official release (re-packed, converted) but that
# the user verified: its md5s, as `md5sum` writes them, in this file inside the data folder
# replace the official ones. It travels with the data to every worker (docs/cluster.md).
CHECKSUM_FILE = "checksums.md5"


def no_root_hint(data_root: str) -> str:
    """What to add to a not-found message when the user gave no data root at all."""
    return "" if data_root else " (no --data-root given: pass --data-root DIR)"


def read_checksum_file(path: str) -> dict[str, str]:
    """`md5sum` output (`<md5>  <name>` per line) as {file name: md5}."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                md5, name = line.split(maxsplit=1)
                out[os.path.basename(name.strip().lstrip("*"))] = md5.lower()
    return out


def verify_checksums(folder: str, official: dict[str, str], what: str) -> None:
    """Raise a one-line `DataUnavailableError` naming the first file of `folder` whose md5
    differs from the official release's (or from `folder/checksums.md5` when the user keeps
    a verified copy of their own)."""
    expected, source = official, "the official release"
    own = os.path.join(folder, CHECKSUM_FILE)
    if os.path.isfile(own):
        expected, source = read_checksum_file(own), own
        unlisted = sorted(set(official) - set(expected))
        if unlisted:
            raise DataUnavailableError(
                f"{own} does not list {unlisted[0]}; allowed: an md5sum line for each of "
                f"{', '.join(sorted(official))}"
            )
    for name in sorted(official):
        actual = file_digest(os.path.join(folder, name), "md5")
        if actual != expected[name]:
            raise DataUnavailableError(
                f"{what} in {folder}: {name} has md5 {actual}, expected {expected[name]} "
                f"({source}): corrupt or not the official files; download them again, or, "
                f"for a copy you verified yourself, list its md5s in {own} (md5sum output)"
            )


def _torchvision_split(make: Callable[[bool], Dataset], missing: str) -> Dataset:
    """Build a torchvision data set; download only if the files are missing.

    `make(download)` constructs it. A failed download (offline) becomes a one-line
    `DataUnavailableError` whose text starts with `missing` (the path and what to put there).
    """
    try:
        return make(False)
    except RuntimeError:  # torchvision: "Dataset not found (or corrupted)"
        pass
    try:
        return make(True)
    except Exception as err:  # any network / IO failure: report the path, not a traceback
        reason = (str(err).strip().splitlines() or [""])[-1][:160]  # MNIST: last mirror's error
        raise DataUnavailableError(
            f"{missing}; download failed ({type(err).__name__}: {reason})"
        ) from None


def _gunzip_missing(raw_dir: str) -> None:
    """Unpack `<name>.gz` to `<name>` for MNIST files present only compressed.

    torchvision reads the unpacked files; it would unpack the .gz only after checking their
    md5 against the official archives, and otherwise tries to download.
    """
    for name in MNIST_FILES:
        path = os.path.join(raw_dir, name)
        if not os.path.isfile(path) and os.path.isfile(path + ".gz"):
            with gzip.open(path + ".gz", "rb") as src, open(path + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(path + ".part", path)


def load_mnist(root: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits `(N, 28, 28)` uint8 and labels `(N,)` int64 via torchvision (idx-ubyte)."""
    from torchvision.datasets import MNIST

    raw_dir = os.path.join(root, "MNIST", "raw")
    _gunzip_missing(raw_dir)
    missing = (
        f"MNIST not found in {raw_dir}{no_root_hint(root)}: put {', '.join(MNIST_FILES)} "
        f"(idx-ubyte, or .gz) there"
    )
    ds = _torchvision_split(lambda download: MNIST(root, train=train, download=download), missing)
    return ds.data, ds.targets.long()


def stack_with_distractor(
    digits: torch.Tensor, digit_on_top: torch.Tensor, glyph: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack each uint8 digit `(N, S, S)` with `glyph` `(S, S)` into float32 `(N, 1, 2S, S)`.

    The digit takes the top half where `digit_on_top` is True, else the bottom half; the glyph
    fills the other half. Returns the images in [0, 1] and the bool signal mask (digit half).
    """
    if digits.dtype != torch.uint8:
        raise TypeError(f"digits must be uint8 0..255, got {digits.dtype}")
    digit = digits.float().div_(255.0)[:, None]  # (N, 1, S, S)
    glyph = glyph.expand_as(digit)
    top = digit_on_top.bool()[:, None, None, None].expand_as(digit)
    x = torch.cat([torch.where(top, digit, glyph), torch.where(top, glyph, digit)], dim=2)
    mask = torch.cat([top, ~top], dim=2)
    return x, mask


@DATASETS.register("mnist-distractor")
def mnist_distractor(seed: int, data_root: str) -> DataBundle:
    """MNIST with a letter-"A" distractor: 56x28 images, digit on top or bottom (from seed).

    The digit's half is drawn per image with a `torch.Generator` seeded by `seed` (train first,
    then test), so the same seed gives the same images and masks.
    """
    root = os.path.expanduser(data_root)
    glyph = letter_a_glyph(28)
    gen = torch.Generator().manual_seed(seed)
    splits = {}
    for train in (True, False):
        digits, labels = load_mnist(root, train)
        top = torch.rand(len(digits), generator=gen) < 0.5
        x, mask = stack_with_distractor(digits, top, glyph)
        splits[train] = (TensorDataset(x, labels), mask)
    return DataBundle(
        name="mnist-distractor",
        train=splits[True][0],
        test=splits[False][0],
        num_classes=10,
        shape=SHAPES["mnist-distractor"],
        signal_mask_train=splits[True][1],
        signal_mask_test=splits[False][1],
        info={
            "source": os.path.join(root, "MNIST", "raw"),
            "distractor": "letter A (letter_a_glyph(28)), opposite half of the digit",
            "layout": "digit top or bottom per image, drawn from the seed",
        },
    )


def _verified(dataset_class: type) -> type:
    """torchvision's CIFAR-10 class without its own md5 checks (`verify_checksums` did them;
    torchvision's check_integrity accepts any existing file whose expected md5 is None)."""

    class Verified(dataset_class):
        train_list = [[name, None] for name, _ in dataset_class.train_list]
        test_list = [[name, None] for name, _ in dataset_class.test_list]
        meta = {**dataset_class.meta, "md5": None}

    return Verified


@DATASETS.register("cifar10")
def cifar10(seed: int, data_root: str) -> DataBundle:
    """CIFAR-10 via torchvision (python pickle batches); float32 3x32x32 `TensorDataset`s.

    `seed` is unused (no randomness).
    """
    from torchvision.datasets import CIFAR10

    root = os.path.expanduser(data_root)
    folder = os.path.join(root, CIFAR10.base_folder)
    missing = (
        f"CIFAR-10 not found in {folder}{no_root_hint(root)}: put {', '.join(CIFAR10_FILES)} "
        f"there"
    )
    make = CIFAR10
    if all(os.path.isfile(os.path.join(folder, n)) for n in CIFAR10_FILES):
        # Files in place: a checksum mismatch is named as such (torchvision would call the set
        # "not found" and try to download it); once verified, torchvision need not check again.
        official = {n: md5 for n, md5 in [*CIFAR10.train_list, *CIFAR10.test_list]}
        official[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
        verify_checksums(folder, official, "CIFAR-10")
        make = _verified(CIFAR10)
    sets = []
    for train in (True, False):
        ds = _torchvision_split(
            lambda download, train=train: make(root, train=train, download=download), missing
        )
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)  # HWC -> CHW
        sets.append(TensorDataset(x.contiguous(), torch.tensor(ds.targets, dtype=torch.long)))
    return DataBundle(
        name="cifar10",
        train=sets[0],
        test=sets[1],
        num_classes=10,
        shape=SHAPES["cifar10"],
        info={"source": folder, "classes": list(ds.classes)},
    )


def _find(root: str, dirs: tuple[str, ...], name: str) -> str | None:
    """First `<root>/<dir>/<name>` that exists, or None."""
    for d in dirs:
        path = os.path.normpath(os.path.join(root, d, name))
        if os.path.isfile(path):
            return path
    return None


def read_imagenet64(paths: list[str]) -> UInt8Images:
    """Read ImageNet-64 npz batches (`data` (N, 12288) uint8 channel-major, `labels` 1..1000).

    Labels become 0..999. Images are copied batch by batch into one preallocated uint8
    tensor, so peak memory is the data set plus one batch.
    """
    sizes = []
    for path in paths:
        with np.load(path) as z:
            sizes.append(len(z["labels"]))
    images = torch.empty(sum(sizes), 3, 64, 64, dtype=torch.uint8)
    labels = torch.empty(sum(sizes), dtype=torch.long)
    start = 0
    for path, n in zip(paths, sizes, strict=True):
        with np.load(path) as z:
            data, lab = z["data"], np.asarray(z["labels"]).astype(np.int64)
        if data.dtype != np.uint8 or data.shape != (n, 3 * 64 * 64):
            raise ValueError(
                f"{path}: data must be uint8 ({n}, 12288), got {data.dtype} {data.shape}"
            )
        if n and (lab.min() < 1 or lab.max() > 1000):
            raise ValueError(f"{path}: labels must be 1..1000, got {lab.min()}..{lab.max()}")
        images[start : start + n] = torch.from_numpy(data).view(n, 3, 64, 64)
        labels[start : start + n] = torch.from_numpy(lab - 1)
        start += n
    return UInt8Images(images, labels)


@DATASETS.register("imagenet64")
def imagenet64(seed: int, data_root: str) -> DataBundle:
    """Downsampled ImageNet 64x64 (Chrabaszcz et al. 2017) from its npz batches.

    Looks for `train_data_batch_1.npz` .. `_10.npz` in `<root>/Imagenet64_train_npz/` (or the
    official `Imagenet64_train_part{1,2}[_npz]/` folders, or `<root>` itself) and
    `val_data.npz` in `<root>/Imagenet64_val_npz/` (or `<root>`). Never downloaded: the files
    need an image-net.org account. `seed` is unused.
    """
    root = os.path.expanduser(data_root)
    train = [_find(root, IMAGENET64_TRAIN_DIRS, name) for name in IMAGENET64_TRAIN]
    val = _find(root, IMAGENET64_VAL_DIRS, IMAGENET64_VAL)
    missing = [n for n, p in zip(IMAGENET64_TRAIN, train, strict=True) if p is None]
    if len(missing) == len(IMAGENET64_TRAIN):
        missing = ["all train_data_batch_*.npz"]
    missing += [IMAGENET64_VAL] if val is None else []
    if missing:
        raise DataUnavailableError(
            f"ImageNet-64 not found in {root}{no_root_hint(root)} (missing "
            f"{', '.join(missing)}): put "
            f"train_data_batch_1.npz .. train_data_batch_10.npz in "
            f"{os.path.join(root, 'Imagenet64_train_npz')} and val_data.npz in "
            f"{os.path.join(root, 'Imagenet64_val_npz')} (Imagenet64 npz from image-net.org, "
            f"registration required; no automatic download)"
        )
    return DataBundle(
        name="imagenet64",
        train=read_imagenet64(train),
        test=read_imagenet64([val]),
        num_classes=1000,
        shape=SHAPES["imagenet64"],
        info={"source_train": train, "source_test": val},
    )
