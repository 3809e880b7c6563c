"""Training-batch augmentation, batched on the batch's device (`TrialConfig.augment`).

"crop-flip" is the reference code's CIFAR-10 / ImageNet-64 recipe (torchvision
`RandomCrop(size, padding=size // 8)` then `RandomHorizontalFlip()`: 4 pixels at 32, 8 at 64),
applied to a whole batch at once: zero padding, one random offset and one coin per image. The
draws come from the trial's CPU data generator, which the checkpoint carries, so a resumed
trial sees the same augmented batches as an uninterrupted one.
"""

from __future__ import annotations

import torch


def crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by H // 8, then a horizontal flip with probability 1/2.

    x: `(B, C, H, W)`; returns a new tensor of the same shape on x's device."""
    b, _, h, w = x.shape
    pad = h // 8
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


AUGMENT = {"none": None, "crop-flip": crop_flip}
