"""Shared fixtures. The ground-truth artifacts (autoencoder, tangent bases, denoiser) of both
synthetic sets are built once per test session, by the product's own pipeline and settings:
training them to convergence takes minutes, and every ground-truth test reads the same ones."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.data import load_dataset
from trainables.measure.artifacts import Artifacts, prepare_artifacts

GROUND_TRUTH_POINTS = 300  # evaluation points the ground-truth bounds are checked over


def _ground_truth(name: str, tmp_path_factory) -> tuple:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: a second thread only adds contention on 2 cores
    try:
        bundle = load_dataset(name, 0)
        cfg = TrialConfig.from_dict({"dataset": name, "eval_points": GROUND_TRUTH_POINTS})
        cache = str(tmp_path_factory.mktemp(f"artifacts-{name}"))
        art: Artifacts = prepare_artifacts(cfg, cache, bundle, log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    return bundle, art


@pytest.fixture(scope="session")
def linear_ground_truth(tmp_path_factory):
    """(bundle, artifacts) of the linear synthetic set, built with the product's defaults."""
    return _ground_truth("synthetic-manifold", tmp_path_factory)


@pytest.fixture(scope="session")
def curved_ground_truth(tmp_path_factory):
    """(bundle, artifacts) of the curved synthetic set, built with the product's defaults."""
    return _ground_truth("synthetic-curved", tmp_path_factory)
