"""Every fact a dataset needs beyond its loader, in one record per dataset (issue 21).

A trial on a dataset needs: the autoencoder's latent size (the tangent estimate's dimension),
the artifact training caps, the headline gradient/score pair and the score's noise level. They
used to live in four tables with silent defaults (an unregistered name got 100-epoch caps and a
generic headline pair); now a dataset without a record fails at once, in one line naming the
dataset and where to add it (`pags` exits 2). tests/test_facts.py checks that every registered
dataset has a record and a training recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.results.errors import InputError


class MissingFactsError(InputError):
    """A dataset without a facts record; the one-line message says where to add it."""


@dataclass(frozen=True)
class Headline:
    """gradient: which input gradient (and the scalar output it differentiates); reference:
    which score map it is compared with; score_sigma: the score's noise level, pixels in [0, 1]."""

    gradient: str
    reference: str
    score_sigma: float


@dataclass(frozen=True)
class DatasetFacts:
    """latent_dim: the autoencoder's latent size k (default for `latent_dim = 0`);
    ae_max_epochs / denoiser_max_epochs: caps on the artifact nets' training (both stop early
    when validation stops improving; the caps bound the cost); headline: the pair behind the
    trial row's `alignment` and its score sigma (trainables/measure/protocol.py says why);
    signal_span: what is exactly known about the signal half's span, for the estimator-free
    split of rho2 (trainables/measure/tangent_measures.py): "" nothing (no split), "pixels"
    every pixel of the half (MNIST), "upsampled-8x8" the bilinear upsampling of 8x8 images."""

    latent_dim: int
    ae_max_epochs: int
    denoiser_max_epochs: int
    headline: Headline
    signal_span: str = ""


# Headline pairs: the reference's where it has one (CIFAR-10: sum of logits vs the unconditional
# score at sigma 0.25; ImageNet-64: the predicted logit vs the score at the true label, sigma
# 0.6), else the predicted logit vs the class-conditional score at the predicted class, whose
# Bayes counterpart is closed form on the oracle sets (protocol.py).
_PRED = Headline("pred_logit", "score", 0.25)

# Latent sizes: cifar10 the paper's 128, imagenet64 the same budget; the distractor sets 16 (the
# prototype found 8-16 safe, 32 counted off-manifold directions as tangent); the oracle sets
# their exact tangent dimensions (4 + 4, 2 + 2, 2 + 2).
# Caps, measured on 2 CPU cores: the curved set's autoencoder converges after about 550 epochs
# (~100 s), the linear one after about 40; the digits conv autoencoder was still improving at 300
# epochs, its cap of 60 keeps `make demo` within 5 minutes. synthetic-shapes (3x32x32, conv
# nets, 1,800 images): the caps keep one artifact build to a few minutes (docs/method.md).
FACTS: dict[str, DatasetFacts] = {
    "cifar10": DatasetFacts(128, 100, 100, Headline("logit_sum", "score_uncond", 0.25)),
    "imagenet64": DatasetFacts(128, 100, 100, Headline("pred_logit", "score_label", 0.6)),
    "mnist-distractor": DatasetFacts(16, 100, 100, _PRED, signal_span="pixels"),
    "digits-distractor": DatasetFacts(16, 60, 150, _PRED, signal_span="upsampled-8x8"),
    "synthetic-manifold": DatasetFacts(8, 1000, 600, _PRED),
    "synthetic-curved": DatasetFacts(4, 1000, 600, _PRED),
    "synthetic-shapes": DatasetFacts(4, 60, 60, _PRED),
}


def facts_for(dataset: str) -> DatasetFacts:
    """The dataset's record; a dataset without one raises MissingFactsError (one line)."""
    try:
        return FACTS[dataset]
    except KeyError:
        raise MissingFactsError(
            f"dataset {dataset!r} has no facts record (latent size, artifact epoch caps, "
            f"headline pair, score sigma): add one to trainables/facts.py FACTS; known: "
            f"{', '.join(sorted(FACTS))}"
        ) from None
