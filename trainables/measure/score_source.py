"""Which score a trial's alignment is measured against: the `score` config field.

"" (default): the project's own denoiser from the shared artifacts (docs/method.md, "Score").
"edm:PATH": a user's EDM-style denoiser file (trainables/measure/edm.py; the paper's CIFAR-10
pipeline with NVIDIA's EDM network, docs/cluster.md), read at the trial's score sigma
(`score_sigma`, else the dataset's: 0.25 on CIFAR-10 = EDM's 0.5 on [-1, 1] images).
Conditioning is the file's: a net with a label_dim gives class-conditional scores, one without
gives the unconditional score everywhere (the recorded name says which). The name is recorded
in every row's `alignment_score`.
"""

from __future__ import annotations

import functools

import torch

from analysis.results.errors import InputError
from trainables.config import SCORE_PREFIX, TrialConfig
from trainables.measure.artifacts import Artifacts
from trainables.measure.score import DenoiserScore, ScoreFn


def trial_score(cfg: TrialConfig, art: Artifacts, device: torch.device) -> ScoreFn:
    sigma = art.config.score_sigma
    if not cfg.score:
        return DenoiserScore(art.denoiser.to(device), sigma)
    return _edm(cfg.score[len(SCORE_PREFIX) :], sigma, str(device))


@functools.lru_cache(maxsize=2)  # a Ray actor reused for many trials loads the file once
def _edm(path: str, sigma: float, device: str) -> ScoreFn:
    from trainables.measure.edm import edm_score

    try:
        return edm_score(path, sigma, device=device)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"score=edm:{path}: {err}") from None
