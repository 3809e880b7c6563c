"""The paper's training recipe: crop-and-flip augmentation and bf16 mixed precision."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from trainables.augment import crop_flip
from trainables.config import TrialConfig
from trainables.models import build_model
from trainables.objectives import OBJECTIVES
from trainables.precision import autocast, to_channels_last
from trainables.recipes import derive_trial_dict


def test_crop_flip_matches_torchvision_per_image():
    """The batched crop/flip equals torchvision's pad -> crop -> hflip, image by image, with the
    same draws (offsets, then offsets, then coins, from one generator)."""
    x = torch.rand(16, 3, 32, 32)
    gen = torch.Generator().manual_seed(3)
    out = crop_flip(x, gen)
    ref_gen = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 9, (16,), generator=ref_gen)
    dx = torch.randint(0, 9, (16,), generator=ref_gen)
    flip = torch.rand(16, generator=ref_gen) < 0.5
    for i in range(16):
        img = TF.crop(TF.pad(x[i], [4]), int(dy[i]), int(dx[i]), 32, 32)
        img = TF.hflip(img) if flip[i] else img
        assert torch.equal(out[i], img), i
    assert flip.any() and not flip.all()  # both branches were exercised


def test_crop_flip_padding_scales_with_size_and_is_seeded():
    x = torch.rand(256, 1, 64, 64)
    a = crop_flip(x, torch.Generator().manual_seed(0))
    b = crop_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    # 8 pixels of padding at 64 (the reference's ImageNet-64 crop): some image is shifted by 8
    # rows, so its first 8 rows are the zero padding, and none by more.
    zero_rows = (a.abs().sum(dim=(1, 3)) == 0).cumprod(dim=1).sum(dim=1)
    assert zero_rows.max() == 8


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet64"])
def test_paper_recipes_augment(dataset):
    cfg = TrialConfig.from_dict(derive_trial_dict(dataset, "none", 0.0, 0))
    assert cfg.augment == "crop-flip"
    assert TrialConfig.from_dict(derive_trial_dict("digits-distractor", "none", 0.0, 0)).augment \
        == "none"


def test_added_fields_keep_old_config_ids():
    """Fields added later count in the id only away from their default: every trial written
    before them keeps its config_id (this id is the one computed before they existed)."""
    assert TrialConfig().config_id == "16823ba7999032d6"
    assert TrialConfig(augment="crop-flip").config_id != TrialConfig().config_id
    assert TrialConfig(mixed_precision="on").config_id != TrialConfig().config_id


@pytest.mark.parametrize("method", ["gradnorm", "smoothness"])
def test_double_backward_objectives_under_bf16_autocast(method):
    """Under CPU bf16 autocast the loss and its parameter gradient stay within bf16 precision
    of fp32 (stated tolerance: 3% on the loss, gradient cosine >= 0.99). The strength is set
    so that the penalty is three quarters of the loss: a penalty computed wrongly would show."""
    torch.manual_seed(0)
    model = build_model("small-cnn", 3, 10, "softplus")
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    cfg = TrialConfig(method=method, dataset="cifar10", model="small-cnn")

    def loss_and_grad(mixed: bool, strength: float):
        model.zero_grad()
        gen = torch.Generator().manual_seed(1)
        with autocast(mixed, torch.device("cpu")):
            loss = OBJECTIVES[method](model, to_channels_last(x, mixed), y, strength, cfg, gen)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        return loss.detach().float().item(), grad

    ce = OBJECTIVES["none"](model, x, y, 0.0, cfg, None).item()
    penalty = loss_and_grad(False, 1.0)[0] - ce  # the penalty at strength 1, in fp32
    assert penalty > 0
    strength = 3 * ce / penalty
    loss32, grad32 = loss_and_grad(False, strength)
    loss16, grad16 = loss_and_grad(True, strength)
    assert loss32 == pytest.approx(4 * ce, rel=0.01)
    assert abs(loss16 - loss32) <= 0.03 * loss32
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) >= 0.99


def test_training_epoch_applies_the_augmentation():
    """Same seed and data: "crop-flip" changes the epoch's loss, and twice gives the same."""
    from torch.utils.data import TensorDataset

    from trainables.data import DataBundle
    from trainables.loop import build_state, train_epoch

    data = TensorDataset(torch.rand(64, 3, 16, 16), torch.randint(0, 4, (64,)))
    bundle = DataBundle("toy", data, data, 4, (3, 16, 16))

    def epoch_loss(augment: str) -> float:
        cfg = TrialConfig(augment=augment, epochs=1, batch_size=16, schedule="constant")
        state = build_state(cfg, bundle, torch.device("cpu"))
        return train_epoch(state, cfg, data, torch.device("cpu"))

    assert epoch_loss("crop-flip") == epoch_loss("crop-flip") != epoch_loss("none")
