"""digits-distractor: the embedded default data set, no network needed.

scikit-learn's 1,797 real 8x8 handwritten digits, upsampled (bilinear) to S x S, stacked with a
fixed letter-"A" glyph in the other half: images `(1, 2S, S)` in [0, 1]. The digit's half (top
or bottom) is drawn per image from the seed; the signal mask marks it, the distractor mask is
its complement. S = 14 by default: the prototype saw the paper's effects at 28x14 images at a
quarter of the cost of 56x28.

The 80/20 train/test split is fixed (permutation seed 0), the same for every trial seed, so test
accuracy is comparable across seeds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from trainables.data.base import DATASETS, DataBundle
from trainables.data.external import letter_a_glyph, stack_with_distractor

DIGIT_SIZE = 14
TEST_FRACTION = 0.2


def upsampled_digits(size: int = DIGIT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 `(N, size, size)` (0-255) and labels `(N,)`."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # sklearn: 0..16
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8), torch.tensor(bunch.target)


def upsampling_basis(size: int = DIGIT_SIZE) -> torch.Tensor:
    """Orthonormal basis `(size * size, 64)` of the span of `upsampled_digits`' upsampling
    (the same bilinear map, before rounding to uint8): every digit half lies in it, and so
    does every tangent of the digit manifold (trainables/measure/tangent_measures.py)."""
    unit = torch.eye(64, dtype=torch.float64).view(64, 1, 8, 8)
    up = F.interpolate(unit, size=(size, size), mode="bilinear", align_corners=False)
    return torch.linalg.qr(up.view(64, -1).T).Q


@DATASETS.register("digits-distractor")
def load_digits_distractor(seed: int = 0, data_root: str = "") -> DataBundle:
    digits, labels = upsampled_digits()
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    n_test = int(round(TEST_FRACTION * n))
    test_idx, train_idx = order[:n_test], order[n_test:]
    top = torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5
    x, mask = stack_with_distractor(digits, top, letter_a_glyph(DIGIT_SIZE))
    return DataBundle(
        name="digits-distractor",
        train=TensorDataset(x[train_idx], labels[train_idx]),
        test=TensorDataset(x[test_idx], labels[test_idx]),
        num_classes=10,
        shape=(1, 2 * DIGIT_SIZE, DIGIT_SIZE),
        signal_mask_train=mask[train_idx],
        signal_mask_test=mask[test_idx],
        info={"source": "sklearn.datasets.load_digits", "digit_size": DIGIT_SIZE},
    )
