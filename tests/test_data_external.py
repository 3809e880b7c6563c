"""MNIST-with-distractor, CIFAR-10 and ImageNet-64 loaders on tiny files in the real formats.

The network is blocked for every test (socket connect / DNS raise), and each test records
whether a connection was attempted, so we also check that no download is tried when the files
are present.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import socket
import struct

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from trainables.data.base import DATASETS, DataUnavailableError
from trainables.data.external import (
    IMAGENET64_TRAIN,
    UInt8Images,
    letter_a_glyph,
    stack_with_distractor,
)


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    """Block the network; the returned list collects every attempted host."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def rng_images(rng, n, *shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ---------------------------------------------------------------- MNIST (idx-ubyte) ----


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: magic 0x0000 08 <ndim> (uint8), big-endian int32 dims, then the data."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root, n_train=24, n_test=16, gz=False, seed=0):
    """Write the four MNIST files under `<root>/MNIST/raw/`; return the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 4:24, 6:22] = rng_images(rng, n, 20, 16) | 1  # ink inside, 0 at the border
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[split] = images, labels
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = raw / f"{split}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (raw / (name.name + ".gz")).write_bytes(gzip.compress(data))
            else:
                name.write_bytes(data)
    assert (raw / "train-images-idx3-ubyte").exists() != gz
    return arrays


def test_mnist_distractor_is_deterministic_in_seed(tmp_path):
    write_mnist(tmp_path)
    a = DATASETS["mnist-distractor"](seed=0, data_root=str(tmp_path))
    b = DATASETS["mnist-distractor"](seed=0, data_root=str(tmp_path))
    c = DATASETS["mnist-distractor"](seed=1, data_root=str(tmp_path))
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.signal_mask_train, b.signal_mask_train)
    assert torch.equal(a.signal_mask_test, b.signal_mask_test)
    assert not torch.equal(a.signal_mask_train, c.signal_mask_train)


def test_letter_a_glyph():
    for size in (8, 28):
        g = letter_a_glyph(size)
        assert g.shape == (size, size) and g.dtype == torch.float32
        assert 0 <= g.min() and g.max() == 1
        assert torch.equal(g, letter_a_glyph(size))
        assert torch.allclose(g, g.flip(-1))  # an "A" is left-right symmetric
    g = letter_a_glyph(28)
    assert ((g == 0) | (g == 1)).float().mean() > 0.8  # nearly binary
    assert g[0].sum() == 0 and g[-1].sum() == 0  # margin like MNIST


def test_stack_with_distractor_any_size():
    """The helper digits-distractor also uses (S = 14 there)."""
    digits = torch.randint(1, 256, (5, 14, 14), dtype=torch.uint8)
    top = torch.tensor([True, False, True, False, False])
    glyph = letter_a_glyph(14)
    x, mask = stack_with_distractor(digits, top, glyph)
    assert x.shape == mask.shape == (5, 1, 28, 14) and x.dtype == torch.float32
    assert torch.equal(mask[:, 0, 0, 0], top) and torch.equal(mask[:, 0, 14:], ~mask[:, 0, :14])
    assert torch.equal(x[1, 0, 14:], digits[1] / 255.0) and torch.equal(x[1, 0, :14], glyph)
    with pytest.raises(TypeError):
        stack_with_distractor(digits.float(), top, glyph)


# ---------------------------------------------------------------- CIFAR-10 (pickles) ----


def write_cifar10(root, per_batch=2, n_test=3):
    """Write the real cifar-10-batches-py layout: dict pickles with `data` (N, 3072) uint8
    (R, G, B planes, each row-major 32x32), `labels` list, and `batches.meta`."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng_images(rng, n, 3072)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        written[name] = data, labels
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder, written


def use_md5_of(monkeypatch, folder):
    """torchvision checks each file's md5 against the official one: point it at ours."""

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(n)] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5(n)] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})


def test_cifar10_loads_real_pickles(tmp_path, monkeypatch, network_attempts):
    folder, written = write_cifar10(tmp_path)
    use_md5_of(monkeypatch, folder)
    bundle = DATASETS["cifar10"](seed=0, data_root=str(tmp_path))

    assert bundle.shape == (3, 32, 32) and bundle.num_classes == 10
    assert bundle.info["classes"][3] == "class3"
    x, y = bundle.train.tensors
    assert x.dtype == torch.float32 and x.shape == (10, 3, 32, 32) and x.is_contiguous()
    assert y.dtype == torch.long and 0 <= x.min() and x.max() <= 1
    train_data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert y.tolist() == train_labels
    # pixel (c, h, w) of image k is data[k, c * 1024 + h * 32 + w]
    k, c, h, w = 7, 2, 5, 30
    assert x[k, c, h, w] == train_data[k, c * 1024 + h * 32 + w] / np.float32(255)
    expected = torch.from_numpy(train_data.reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(x, expected)
    xt, yt = bundle.test.tensors
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == written["test_batch"][1]
    assert network_attempts == []


def test_cifar10_checksum_mismatch_is_named(tmp_path, network_attempts):
    """Files in place but not the official release: the message says md5 and names the file
    (torchvision alone would call them "not found" and try to download)."""
    write_cifar10(tmp_path)
    with pytest.raises(DataUnavailableError) as err:
        DATASETS["cifar10"](seed=0, data_root=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "md5" in message and "batches.meta has md5" in message
    assert "official" in message and "checksums.md5" in message
    assert network_attempts == []


def test_cifar10_verified_local_copy(tmp_path, network_attempts):
    """A copy the user verified loads with its md5s in checksums.md5, and is still checked."""
    folder, written = write_cifar10(tmp_path)
    names = sorted(p.name for p in folder.iterdir())
    lines = [f"{hashlib.md5((folder / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (folder / "checksums.md5").write_text("\n".join(lines) + "\n")
    bundle = DATASETS["cifar10"](seed=0, data_root=str(tmp_path))
    assert bundle.train.tensors[1].tolist() == sum(
        (written[f"data_batch_{i}"][1] for i in range(1, 6)), []
    )
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes() + b"x")
    with pytest.raises(DataUnavailableError, match="data_batch_3 has md5 .*checksums.md5\\)"):
        DATASETS["cifar10"](seed=0, data_root=str(tmp_path))
    (folder / "checksums.md5").write_text("\n".join(lines[1:]) + "\n")  # one file unlisted
    with pytest.raises(DataUnavailableError, match=f"does not list {names[0]}"):
        DATASETS["cifar10"](seed=0, data_root=str(tmp_path))
    assert network_attempts == []


@pytest.mark.parametrize("name", ["mnist-distractor", "cifar10", "imagenet64"])
def test_missing_data_root_is_named(tmp_path, monkeypatch, network_attempts, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataUnavailableError, match="no --data-root given: pass --data-root DIR"):
        DATASETS[name](seed=0, data_root="")


# ---------------------------------------------------------------- ImageNet-64 (npz) ----


def write_imagenet64(root, flat=False):
    """Write train_data_batch_1..10.npz and val_data.npz (`data` (N, 12288) uint8, channel-
    major; `labels` 1..1000; train batches also carry `mean`, as in the real files)."""
    rng = np.random.default_rng(2)
    train_dir = root if flat else root / "Imagenet64_train_npz"
    val_dir = root if flat else root / "Imagenet64_val_npz"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    data, labels = [], []
    for i, name in enumerate(IMAGENET64_TRAIN):
        d = rng_images(rng, 2 - i % 2, 12288)
        lab = [1000, 1][: len(d)] if i == 0 else list(rng.integers(1, 1001, len(d)))
        np.savez(train_dir / name, data=d, labels=lab, mean=d.mean(0))
        data.append(d)
        labels += lab
    val = rng_images(rng, 3, 12288)
    np.savez(val_dir / "val_data.npz", data=val, labels=[1, 2, 1000])
    return np.concatenate(data), np.array(labels), val


@pytest.mark.parametrize("flat", [False, True])
def test_imagenet64_reads_npz_batches(tmp_path, network_attempts, flat):
    data, labels, val = write_imagenet64(tmp_path, flat=flat)
    bundle = DATASETS["imagenet64"](seed=0, data_root=str(tmp_path))

    assert bundle.shape == (3, 64, 64) and bundle.num_classes == 1000
    assert isinstance(bundle.train, UInt8Images) and len(bundle.train) == len(data) == 15
    assert bundle.train.images.dtype == torch.uint8  # never materialized as float32
    assert bundle.train.labels.tolist() == (labels - 1).tolist()
    assert bundle.train[0][1] == 999 and bundle.train[1][1] == 0
    k, c, h, w = 4, 1, 63, 2
    x, y = bundle.train[k]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64) and isinstance(y, int)
    assert 0 <= x.min() and x.max() <= 1
    assert x[c, h, w] == data[k, c * 4096 + h * 64 + w] / np.float32(255)
    assert torch.equal(x, torch.from_numpy(data[k].reshape(3, 64, 64)).float() / 255)
    assert [bundle.test[i][1] for i in range(3)] == [0, 1, 999]
    assert torch.equal(bundle.test.images, torch.from_numpy(val).view(3, 3, 64, 64))
    assert bundle.info["source_test"].endswith("val_data.npz")
    assert network_attempts == []


def test_imagenet64_rejects_zero_indexed_labels(tmp_path):
    write_imagenet64(tmp_path)
    zeros = np.zeros((1, 12288), np.uint8)
    np.savez(tmp_path / "Imagenet64_val_npz" / "val_data.npz", data=zeros, labels=[0])
    with pytest.raises(ValueError, match="1..1000"):
        DATASETS["imagenet64"](seed=0, data_root=str(tmp_path))


# ---------------------------------------------------------------- missing files ----


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist-distractor", ["MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("cifar10", ["cifar-10-batches-py", "data_batch_1", "test_batch", "batches.meta"]),
        ("imagenet64", ["Imagenet64_train_npz", "train_data_batch_10.npz", "val_data.npz"]),
    ],
)
def test_missing_root_gives_one_line_error(tmp_path, network_attempts, name, expected):
    root = tmp_path / "nothing-here"
    with pytest.raises(DataUnavailableError) as err:
        DATASETS[name](seed=0, data_root=str(root))
    message = str(err.value)
    assert "\n" not in message and str(root) in message
    for part in expected:
        assert part in message
    # no chained traceback (the network error is summarized in the message)
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__
    # MNIST and CIFAR-10 try (and here fail) to download; ImageNet-64 never does
    assert bool(network_attempts) == (name != "imagenet64")


def test_imagenet64_partial_names_missing_batch(tmp_path):
    write_imagenet64(tmp_path)
    (tmp_path / "Imagenet64_train_npz" / "train_data_batch_7.npz").unlink()
    with pytest.raises(DataUnavailableError, match="missing train_data_batch_7.npz\\)"):
        DATASETS["imagenet64"](seed=0, data_root=str(tmp_path))
