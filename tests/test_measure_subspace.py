"""Agreement between tangent estimates (trainables/measure/subspace.py): the batched figures
against a naive reference (dense projectors, scipy's principal angles), and their anchors
(itself: 1 and 0 degrees; a random subspace: k / d; one direction swapped: (k - 1) / k)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from trainables.measure.subspace import (
    agreement,
    angle_spectrum,
    captured_share,
    projection_overlap,
    random_overlap,
)


def _bases(b: int, d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(b, d, k, generator=g, dtype=torch.float64)).Q


@pytest.mark.parametrize("k1,k2", [(4, 4), (3, 5)])
def test_batched_figures_match_naive_reference(k1, k2):
    d = 12
    q1, q2 = _bases(6, d, k1, 0), _bases(6, d, k2, 1)
    overlap, spectrum = projection_overlap(q1, q2), angle_spectrum(q1, q2)
    captured = captured_share(q1, q2)
    for i in range(6):
        p1, p2 = q1[i] @ q1[i].T, q2[i] @ q2[i].T  # dense d x d projectors
        assert float(overlap[i]) == pytest.approx(float(torch.trace(p1 @ p2)) / max(k1, k2))
        assert float(captured[i]) == pytest.approx(float(torch.trace(p1 @ p2)) / k2)
        ref = np.rad2deg(scipy.linalg.subspace_angles(q1[i].numpy(), q2[i].numpy()))
        assert float(spectrum["largest_angle_deg"][i]) == pytest.approx(ref.max(), abs=1e-6)
        assert float(spectrum["mean_angle_deg"][i]) == pytest.approx(ref.mean(), abs=1e-6)
        assert float(spectrum["median_angle_deg"][i]) == pytest.approx(np.median(ref), abs=1e-6)


def test_itself_is_one_and_zero_degrees_even_in_another_basis():
    q = _bases(5, 30, 4, 2)
    rot = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64)).Q
    fig = agreement(q, q @ rot)  # same span, different columns
    assert fig["overlap"] == pytest.approx(1.0, abs=1e-12)
    assert fig["largest_angle_deg"] < 1e-3


def test_random_subspace_reads_k_over_d():
    d, k = 200, 10
    fig = agreement(_bases(400, d, k, 3), _bases(400, d, k, 4), chunk=64)
    assert fig["overlap"] == pytest.approx(random_overlap(d, k), rel=0.1)
    assert fig["largest_angle_deg"] > 60


def test_overlap_does_not_saturate_where_the_largest_angle_does():
    """Share k - 1 of k directions: overlap (k - 1) / k, largest angle 90 degrees."""
    eye = torch.eye(20, dtype=torch.float64)
    q1, q2 = eye[:, :16][None], torch.cat([eye[:, :15], eye[:, 16:17]], 1)[None]
    fig = agreement(q1, q2)
    assert fig["overlap"] == pytest.approx(15 / 16)
    assert fig["largest_angle_deg"] == pytest.approx(90.0)
    assert fig["median_angle_deg"] == pytest.approx(0.0, abs=1e-6)
