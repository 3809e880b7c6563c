"""RobustBench-zoo architectures (trainables/zoo.py) read from files in each layout their
checkpoints come in: randomly initialised instances at small widths, saved and loaded back."""

from __future__ import annotations

import pytest
import torch

from trainables import checkpoints, zoo

SHAPE = (3, 32, 32)


def _random(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = zoo.build(arch, 3, 10)
    # non-trivial BatchNorm statistics, so a mixed-up buffer changes the output
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


# layout: how RobustBench (and the papers' repositories) store the weights
LAYOUTS = {
    "plain": lambda sd: sd,
    "state_dict key": lambda sd: {"state_dict": sd},
    "DataParallel": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


CASES = [(arch, layout) for arch in ("wrn-10-2", "dm-wrn-10-2") for layout in LAYOUTS]
CASES.append(("preact-resnet-18", "DataParallel"))  # full size (11M parameters): one layout


@pytest.mark.parametrize("arch, layout", CASES)
def test_zoo_checkpoint_loads_and_computes_the_same_logits(tmp_path, arch, layout):
    model = _random(arch)
    path = tmp_path / "model.pt"
    torch.save(LAYOUTS[layout](model.state_dict()), path)
    loaded = checkpoints.load(str(path), "robustbench", arch, SHAPE, 10)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert loaded.arch == arch
    assert checkpoints.weights_sha256(loaded.model) == checkpoints.weights_sha256(model)
    if arch.startswith("dm-"):
        assert loaded.normalization.startswith("mean=(0.4914,0.4822,0.4465) std=(0.2471,")
    else:
        assert loaded.normalization == "none"


def test_published_key_names():
    """The state_dict keys of the published layouts (RobustBench's WideResNet, DMWideResNet,
    PreActResNet): a renamed module would refuse every real checkpoint."""
    wrn = set(zoo.build("wrn-10-2", 3, 10).state_dict())
    assert {"conv1.weight", "block1.layer.0.bn1.running_var", "block1.layer.0.convShortcut.weight",
            "block2.layer.0.conv2.weight", "block3.layer.0.bn2.weight", "bn1.weight",
            "fc.weight", "fc.bias"} <= wrn  # fmt: skip
    dm = set(zoo.build("dm-wrn-10-2", 3, 10).state_dict())
    assert {
        "init_conv.weight",
        "layer.0.block.0.batchnorm_0.weight",
        "layer.0.block.0.conv_0.weight",
        "layer.1.block.0.shortcut.weight",
        "layer.2.block.0.conv_1.weight",
        "batchnorm.running_mean",
        "logits.weight",
    } <= dm
    assert "mean" not in dm and "std" not in dm  # not saved by RobustBench either
    pre = set(zoo.build("preact-resnet-18", 3, 10).state_dict())
    assert {"conv1.weight", "layer1.0.bn1.weight", "layer2.0.shortcut.0.weight",
            "layer4.1.conv2.weight", "linear.weight"} <= pre  # fmt: skip
    # WRN-28-10 as published: 36.5M parameters
    n = sum(p.numel() for p in zoo.build("wrn-28-10", 3, 10).parameters())
    assert 36_400_000 < n < 36_600_000


def test_trades_sub_block1_keys_are_dropped(tmp_path):
    model = _random("wrn-10-2")
    sd = dict(model.state_dict())
    sd.update({f"sub_block1.{k[len('block1.'):]}": v.clone() for k, v in sd.items()
               if k.startswith("block1.")})  # fmt: skip
    path = tmp_path / "m.pt"
    torch.save({"state_dict": sd}, path)
    loaded = checkpoints.load(str(path), "robustbench", "wrn-10-2", SHAPE, 10)
    assert checkpoints.weights_sha256(loaded.model) == checkpoints.weights_sha256(model)


def test_wrong_zoo_architecture_is_one_line(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(_random("wrn-10-2").state_dict(), path)
    with pytest.raises(checkpoints.CheckpointError, match="keys do not fit dm-wrn-10-2"):
        checkpoints.load(str(path), "robustbench", "dm-wrn-10-2", SHAPE, 10)
    with pytest.raises(checkpoints.CheckpointError, match="not a RobustBench-zoo"):
        checkpoints.load(str(path), "robustbench", "resnet18", SHAPE, 10)
    with pytest.raises(ValueError, match="depth - 4"):
        zoo.build("wrn-12-2", 3, 10)
