"""The embedded data sets and the synthetic oracle."""

import torch

from trainables.data import load_dataset


def test_digits_masks_partition_every_image_and_hold_the_digit():
    b = load_dataset("digits-distractor", seed=0)
    x, mask = b.train.tensors[0], b.signal_mask_train
    assert x.shape[1:] == b.shape == (1, 28, 14)
    assert x.min() >= 0 and x.max() <= 1
    # each image: exactly one half is signal, the other distractor
    top, bottom = mask[:, 0, :14], mask[:, 0, 14:]
    assert ((top.all(dim=(1, 2)) & ~bottom.any(dim=(1, 2))) |
            (bottom.all(dim=(1, 2)) & ~top.any(dim=(1, 2)))).all()  # fmt: skip
    # the distractor half is the same glyph in every image; the signal half varies
    distractor = x[~mask.expand_as(x)].view(len(x), -1)
    assert torch.allclose(distractor, distractor[0].expand_as(distractor))
    signal = x[mask.expand_as(x)].view(len(x), -1)
    assert signal.std(0).mean() > 0.05


def test_digits_deterministic_split_and_seeded_layout():
    a, b = load_dataset("digits-distractor", 0), load_dataset("digits-distractor", 0)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    c = load_dataset("digits-distractor", 1)
    assert torch.equal(a.test.tensors[1], c.test.tensors[1]), "split is fixed across seeds"
    assert not torch.equal(a.signal_mask_train, c.signal_mask_train), "layout follows the seed"
    assert len(a.train) + len(a.test) == 1797


def test_synthetic_bayes_gradient_matches_autograd():
    b = load_dataset("synthetic-manifold", 0)
    o = b.oracle
    x = b.test.tensors[0][:16].double().requires_grad_(True)
    logits = o.bayes_logits(x)
    cls = logits.argmax(1)
    (auto,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), x)
    assert torch.allclose(o.bayes_logit_grad(x.detach(), cls), auto, atol=1e-10)
    # the Bayes gradient lies in the signal subspace (Theorem 2)
    g = auto.flatten(1)
    in_signal = g @ o.signal_basis() @ o.signal_basis().T
    assert torch.allclose(in_signal, g, atol=1e-10)


def test_synthetic_bayes_classifier_is_accurate_and_score_is_exact():
    b = load_dataset("synthetic-manifold", 0)
    o = b.oracle
    x, y = b.test.tensors
    assert (o.bayes_logits(x).argmax(1) == y).float().mean() > 0.9
    # exact score vs autograd of the smoothed Gaussian-mixture log density
    sigma = 0.3
    xs = (x[:8].double() + sigma * torch.randn(8, *b.shape, dtype=torch.float64)).requires_grad_()
    d = xs[0].numel()
    A, B = o.signal_basis(), o.distractor_basis()
    cov = (
        o.signal_std**2 * A @ A.T
        + o.distractor_std**2 * B @ B.T
        + sigma**2 * torch.eye(d, dtype=torch.float64)
    )
    comps = [
        torch.distributions.MultivariateNormal(o.offset + o.means[k] @ A.T, cov)
        for k in range(len(o.means))
    ]
    flat = xs.flatten(1)
    logp = torch.logsumexp(torch.stack([c.log_prob(flat) for c in comps]), 0)
    (auto,) = torch.autograd.grad(logp.sum(), xs)
    assert torch.allclose(o.score(xs.detach(), sigma), auto, atol=1e-6)
