"""Geometry of the measurements: the pythae autoencoder's training and saving, the batched
tangent bases against the per-pixel reference,
the on/off split, and batched sensitivities against per-image loops."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from trainables.data.synthetic import load_synthetic
from trainables.measure.autoencoder import (
    LATENT_DIMS,
    build_nets,
    load_autoencoder,
    train_autoencoder,
)
from trainables.measure.sensitivity import default_eps, manifold_sensitivity, mask_sensitivity
from trainables.measure.tangent import (
    split_on_off,
    tangent_bases,
    tangent_basis_reference,
)

AE_MAX_EPOCHS = 40  # enough for a round trip; the tangent bounds live in test_ground_truth.py


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny nets: a second OpenMP thread only adds contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic():
    return load_synthetic(seed=0)


@pytest.fixture(scope="module")
def trained_ae(synthetic, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ae")
    x = synthetic.train.tensors[0]
    k = LATENT_DIMS["synthetic-manifold"]
    path = train_autoencoder(x, k, AE_MAX_EPOCHS, seed=0, out_dir=out)
    return path


def test_autoencoder_save_load_round_trip(synthetic, trained_ae):
    a, b = (
        load_autoencoder(trained_ae),
        load_autoencoder(os.path.join(trained_ae, "autoencoder.pt")),
    )
    x = synthetic.test.tensors[0][:32]
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x))
        assert torch.equal(a.decode(a.encode(x)), b.decode(b.encode(x)))
    assert not a.training and a.config["latent_dim"] == 8 and a.config["arch"] == "mlp"


def test_training_is_quiet_and_ignores_distributed_env(tmp_path, capfd, monkeypatch):
    """pythae prints nothing to fd 1/2, and a Ray-like DDP environment neither reaches it nor
    is changed by it (pythae would otherwise try to join a process group of 4)."""
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_PORT": "29500"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    x = torch.rand(40, 1, 8, 8)
    state = torch.random.get_rng_state()
    path = train_autoencoder(x, 2, max_epochs=2, seed=1, out_dir=tmp_path, batch_size=16)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert {k: os.environ.get(k) for k in env} == env and "MASTER_ADDR" not in os.environ
    assert torch.equal(torch.random.get_rng_state(), state)  # pythae reseeded only a fork
    assert load_autoencoder(path).decode(torch.zeros(3, 2)).shape == (3, 1, 8, 8)


@pytest.mark.parametrize("shape", [(1, 28, 14), (1, 56, 28), (3, 32, 32), (1, 16, 8), (3, 9, 7)])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_nets_fit_any_image_shape(shape, arch):
    if arch == "conv" and min(shape[1:]) < 8:
        with pytest.raises(ValueError, match="too small"):
            build_nets(shape, 5, arch)
        return
    encoder, decoder = build_nets(shape, 5, arch)
    x = torch.rand(2, *shape)
    assert encoder(x).shape == (2, 5)
    assert decoder(encoder(x)).shape == (2, *shape)
    smooth = (nn.Softplus, nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Flatten, nn.Unflatten)
    assert all(isinstance(m, smooth) for m in decoder)  # no ReLU: we differentiate the decoder


def test_batched_tangent_bases_match_per_pixel_reference():
    """Same subspace as the reference method (one backward pass per pixel + SVD): projectors
    QQ^T agree (bases differ by sign/rotation). A random conv decoder, non-square output."""
    torch.manual_seed(0)
    _, decoder = build_nets((2, 10, 8), 4, "conv")
    decoder = decoder.double().eval()
    z = torch.randn(5, 4, dtype=torch.float64)
    q = tangent_bases(decoder, z, chunk_size=2)  # chunks of 2, 2, 1
    assert q.shape == (5, 160, 4)
    for i in range(len(z)):
        ref = tangent_basis_reference(decoder, z[i])
        assert ref.shape == (160, 4)
        torch.testing.assert_close(q[i] @ q[i].T, ref @ ref.T, atol=1e-10, rtol=0)


def test_split_on_off_is_orthogonal_decomposition():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 50, 7, generator=g, dtype=torch.float64))
    for u in (torch.randn(6, 50, generator=g, dtype=torch.float64),
              torch.randn(6, 3, 50, generator=g, dtype=torch.float64)):  # fmt: skip
        on, off = split_on_off(q, u)
        assert on.shape == off.shape == u.shape
        torch.testing.assert_close(on + off, u)
        v = u.reshape(6, -1, 50)
        inner = (on.reshape(v.shape) * off.reshape(v.shape)).sum(-1)
        torch.testing.assert_close(inner, torch.zeros_like(inner), atol=1e-12, rtol=0)
        # off has no component in span(Q); on lies in span(Q)
        off_coeff = off.reshape(v.shape) @ q
        torch.testing.assert_close(off_coeff, torch.zeros_like(off_coeff), atol=1e-12, rtol=0)
        on_rebuilt = (on.reshape(v.shape) @ q) @ q.transpose(1, 2)
        torch.testing.assert_close(on_rebuilt, on.reshape(v.shape))


def _softmax_l1(model, a, b):
    return (torch.softmax(model(a), 1) - torch.softmax(model(b), 1)).abs().sum(1)


def test_batched_manifold_sensitivity_equals_per_image_loop():
    torch.manual_seed(0)
    shape, b, n, k = (3, 8, 6), 7, 3, 5
    d = 3 * 8 * 6
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Softplus(), nn.Flatten(), nn.LazyLinear(4), nn.BatchNorm1d(4)
    )
    model(torch.rand(4, *shape))  # materialize the lazy layer; BatchNorm has stats to use
    model.train()  # the measure must switch to eval itself, and switch back
    x = torch.rand(b, *shape)
    q, _ = torch.linalg.qr(torch.randn(b, d, k))
    noise = torch.randn(b, n, d)
    eps = [0.5, 2.0]
    # batch_size 5 forces chunks of 1 point and several model batches per chunk
    res = manifold_sensitivity(model, x, q, eps, n, None, batch_size=5, noise=noise)
    assert model.training

    model.eval()
    on_ref, off_ref = torch.zeros(len(eps), b), torch.zeros(len(eps), b)
    with torch.no_grad():
        for i in range(b):
            for j in range(n):
                u = noise[i, j]
                u_on = q[i] @ (q[i].T @ u)
                u_off = u - u_on
                u_on, u_off = u_on / u_on.norm(), u_off / u_off.norm()
                for e, s in enumerate(eps):
                    xi = x[i : i + 1]
                    on_ref[e, i] += _softmax_l1(model, xi + s * u_on.view(1, *shape), xi)[0] / n
                    off_ref[e, i] += _softmax_l1(model, xi + s * u_off.view(1, *shape), xi)[0] / n
    torch.testing.assert_close(torch.from_numpy(res["on_per_point"]).float(), on_ref)
    torch.testing.assert_close(torch.from_numpy(res["off_per_point"]).float(), off_ref)
    torch.testing.assert_close(torch.tensor(res["on_mean"]).float(), on_ref.mean(1))
    torch.testing.assert_close(torch.tensor(res["off_std"]).float(), off_ref.std(1))
    assert res["eps"] == eps and len(res["relative"]) == 2

    # Drawing from a generator: reproducible, and the defaults give one big batch.
    r1 = manifold_sensitivity(model, x, q, eps, n, torch.Generator().manual_seed(3))
    r2 = manifold_sensitivity(model, x, q, eps, n, torch.Generator().manual_seed(3))
    assert (r1["on_per_point"] == r2["on_per_point"]).all()


def test_mask_sensitivity_of_a_model_reading_only_the_signal_half():
    """A linear model that reads only the top (signal) half: distractor noise changes nothing."""
    torch.manual_seed(0)
    c, h, w = 1, 16, 8
    weight = torch.randn(3, c, h, w)
    weight[:, :, h // 2 :] = 0  # blind to the bottom (distractor) half

    class TopHalfLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(weight.flatten(1))

        def forward(self, x):
            return x.flatten(1) @ self.weight.T

    model = TopHalfLinear()
    x = torch.rand(10, c, h, w)
    mask = torch.zeros(10, 1, h, w, dtype=torch.bool)
    mask[:, :, : h // 2] = True
    levels = [0.0, 0.1, 1.0]
    res = mask_sensitivity(model, x, mask, levels, 4, torch.Generator().manual_seed(0))
    assert res["levels"] == levels
    assert res["signal_mean"][0] == 0.0 and res["distractor_mean"][0] == 0.0
    assert max(res["distractor_mean"]) < 1e-6
    assert res["signal_mean"][1] > 1e-3 and res["signal_mean"][2] > res["signal_mean"][1]
    assert res["signal_per_point"].shape == res["distractor_per_point"].shape == (3, 10)

    # Same noise through a per-image loop gives the same numbers.
    noise = torch.randn(10, 2, c, h, w)
    res = mask_sensitivity(model, x, mask, [0.3], 2, None, noise=noise, batch_size=3)
    ref = torch.zeros(10)
    with torch.no_grad():
        for i in range(10):
            xi = x[i : i + 1]
            for j in range(2):
                ref[i] += _softmax_l1(model, xi + 0.3 * noise[i, j] * mask[i], xi)[0] / 2
    torch.testing.assert_close(torch.from_numpy(res["signal_per_point"][0]).float(), ref)


def test_default_eps_scales_with_sqrt_dimension():
    cifar = default_eps(3072)
    assert [round(e, 2) for e in cifar] == [1.44, 2.64, 4.83, 8.86]
    small = default_eps(3072 // 4)
    torch.testing.assert_close(torch.tensor(small), torch.tensor(cifar) / 2)
