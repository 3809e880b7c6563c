"""One facts record per dataset (trainables/facts.py): complete, and loud when missing.

Also the two artifact-side fixes of issue 21: training a denoiser leaves the caller's global
random state alone, and the denoiser's score comes back in float64 (score differences)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from analysis.results.errors import InputError
from trainables.config import TrialConfig
from trainables.data import DATASETS
from trainables.facts import FACTS, MissingFactsError, facts_for
from trainables.measure import artifacts as art_mod
from trainables.measure.autoencoder import default_latent_dim
from trainables.measure.denoiser import Denoiser
from trainables.measure.denoiser_training import train_denoiser
from trainables.measure.protocol import headline_for
from trainables.measure.score import DenoiserScore
from trainables.measure.tangent_measures import SPANS
from trainables.recipes import RECIPES


def test_every_registered_dataset_has_a_complete_record_and_a_recipe():
    assert set(DATASETS.names()) == set(FACTS)
    assert set(DATASETS.names()) <= set(RECIPES)
    for name, facts in FACTS.items():
        for field in dataclasses.fields(facts):
            if field.name != "signal_span":  # optional: "" = no exact split
                assert getattr(facts, field.name) not in (None, 0, ""), (name, field.name)
        assert facts.signal_span in ("", *SPANS), (name, facts.signal_span)
        assert facts.headline.score_sigma > 0
        cfg = ArtifactConfigFor(name)
        assert (cfg.latent_dim, cfg.ae_max_epochs, cfg.denoiser_max_epochs) == (
            facts.latent_dim, facts.ae_max_epochs, facts.denoiser_max_epochs)  # fmt: skip
        assert cfg.score_sigma == facts.headline.score_sigma


def ArtifactConfigFor(dataset: str):  # noqa: N802 (reads like the class it builds)
    return art_mod.ArtifactConfig.for_trial(TrialConfig.from_dict({"dataset": dataset}))


def test_a_dataset_without_a_record_fails_in_one_line(monkeypatch):
    """Before: the latent size raised a bare ValueError, the epoch caps silently became 100 and
    the headline silently became the generic pair."""
    monkeypatch.delitem(FACTS, "synthetic-shapes")
    for call in (
        lambda: facts_for("synthetic-shapes"),
        lambda: default_latent_dim("synthetic-shapes"),
        lambda: headline_for("synthetic-shapes"),
        lambda: ArtifactConfigFor("synthetic-shapes"),
    ):
        with pytest.raises(MissingFactsError) as err:
            call()
        assert isinstance(err.value, InputError)  # pags: one line, exit 2
        msg = str(err.value)
        assert "\n" not in msg and "'synthetic-shapes'" in msg and "trainables/facts.py" in msg


def test_train_denoiser_leaves_the_callers_random_state(tmp_path):
    x = torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train_denoiser(x, 1, seed=7, out_path=str(tmp_path / "d.pt"))
    assert torch.equal(torch.get_rng_state(), before)


def test_the_denoiser_score_is_float64():
    D = Denoiser((1, 4, 4), "mlp", 16, 2, 0).eval()
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    s = DenoiserScore(D, 0.25)(x)
    assert s.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(s, (D(x, 0.25).double() - x.double()) / 0.25**2)


def test_pags_exits_2_in_one_line_for_a_dataset_without_a_record(monkeypatch, capsys, tmp_path):
    from sweep.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(FACTS, "synthetic-shapes")
    assert main(["train", "--dataset", "synthetic-shapes", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no facts record" in err and "Traceback" not in err
