"""The per-dataset headline choices, pinned to the paper and its reference code."""

import numpy as np
import pytest

from trainables.config import TrialConfig
from trainables.measure.artifacts import ArtifactConfig
from trainables.measure.evaluate import step_sizes
from trainables.measure.protocol import HEADLINES, headline_eps, headline_for
from trainables.measure.sensitivity import default_eps


def test_headline_table_is_the_references():
    # score sigma on [0, 1] pixels: the reference's EDM sigma on [-1, 1] divided by 2
    assert {name: h.score_sigma for name, h in HEADLINES.items()} == {
        "cifar10": 0.25, "imagenet64": 0.6, "mnist-distractor": 0.25,
        "digits-distractor": 0.25, "synthetic-manifold": 0.25, "synthetic-curved": 0.25,
        "synthetic-shapes": 0.25,
    }  # fmt: skip
    assert (headline_for("cifar10").gradient, headline_for("cifar10").reference) == (
        "logit_sum", "score_uncond",
    )  # fmt: skip
    assert (headline_for("imagenet64").gradient, headline_for("imagenet64").reference) == (
        "pred_logit", "score_label",
    )  # fmt: skip
    for name in HEADLINES:  # an artifact set is built at the dataset's sigma unless overridden
        cfg = TrialConfig(dataset=name)
        assert ArtifactConfig.for_trial(cfg).score_sigma == HEADLINES[name].score_sigma
    assert ArtifactConfig.for_trial(TrialConfig(score_sigma=0.1)).score_sigma == 0.1


def test_headline_eps_is_figure_3s():
    figure3 = ([0] + list(np.logspace(-3, 2, 20)))[14]  # reference notebooks/Figure3.ipynb
    assert headline_eps(3072) == pytest.approx(figure3) == pytest.approx(2.6367, abs=1e-4)
    assert headline_eps(392) == pytest.approx(figure3 * (392 / 3072) ** 0.5)
    for d in (128, 392, 784, 3072, 12288):
        eps, head = step_sizes((), d)
        assert eps == default_eps(d) and head == eps[1] == pytest.approx(headline_eps(d))
    eps, head = step_sizes((0.5, 4.0), 392)  # the user's steps keep the headline beside them
    assert eps == [0.5, head, 4.0] and head == headline_eps(392)
