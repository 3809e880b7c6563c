"""`--dry-run` shows what a trial's dataset defaults resolve to, and what a sweep will cost."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from sweep.cli import main
from sweep.plan.cost import gpu_hours
from trainables.config import TrialConfig


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


@pytest.mark.parametrize(
    "preset, expect",
    [
        ("cifar10", dict(latent_dim=128, score_sigma=0.25, alignment_gradient="logit_sum",
                         alignment_reference="score_uncond", ae_max_epochs=100,
                         denoiser_max_epochs=100, augment="crop-flip", eval_points=1000,
                         input_shape=[3, 32, 32])),
        ("digits-quick", dict(latent_dim=16, score_sigma=0.25, alignment_gradient="pred_logit",
                              alignment_reference="score", ae_max_epochs=60,
                              denoiser_max_epochs=150, augment="none",
                              input_shape=[1, 28, 14])),
    ],
)  # fmt: skip
def test_train_dry_run_shows_resolved_values(preset, expect):
    """The config holds 0 / "auto" for "the dataset's default"; `resolved` holds the values."""
    code, out = run("train", "--preset", preset, "--method", "gradnorm", "--strength", "0.01",
                    "--dry-run")  # fmt: skip
    assert code == 0
    obj = json.loads(out)
    assert obj["config"]["latent_dim"] == 0 and obj["config"]["alignment_metric"] == "auto"
    resolved = obj["resolved"]
    assert {k: resolved[k] for k in expect} == expect
    # the metric as rows name it: the resize suffix where maps are below LPIPS's 32 pixels
    native = preset == "cifar10"
    assert resolved["alignment_metric"] in (
        ("lpips-alex", "stlpips-alex") if native else ("lpips-alex@x3", "stlpips-alex@x3")
    )


def test_artifact_budgets_are_config_fields():
    code, out = run("train", "--preset", "digits-quick", "--method", "none", "--strength", "0",
                    "--set", "ae_max_epochs=7", "--set", "denoiser_max_epochs=9", "--dry-run")
    resolved = json.loads(out)["resolved"]
    assert code == 0 and (resolved["ae_max_epochs"], resolved["denoiser_max_epochs"]) == (7, 9)
    assert TrialConfig(ae_max_epochs=7).config_id != TrialConfig().config_id


def test_cost_model():
    """epochs x images x passes / throughput: 200 epochs of 50,000 images at 2,500 images/s
    is 4,000 s; gradient-norm steps cost 3 passes, PGD 1 + its steps."""
    base = dict(dataset="cifar10", model="resnet18-cifar", epochs=200)
    assert gpu_hours(TrialConfig(**base), 50_000) == pytest.approx(4000 / 3600)
    gn = TrialConfig(**base, method="gradnorm", strength=1.0)
    assert gpu_hours(gn, 50_000) == pytest.approx(3 * 4000 / 3600)
    pgd = TrialConfig(**base, method="pgd_l2", strength=0.5, pgd_steps=10)
    assert gpu_hours(pgd, 50_000, throughput=5000) == pytest.approx(11 * 2000 / 3600)
    assert gpu_hours(TrialConfig(**base, train_subset=500), 50_000) == pytest.approx(40 / 3600)


def test_sweep_dry_run_prints_settings_and_cost():
    code, out = run("sweep", "--preset", "cifar10", "--dry-run")
    assert code == 0
    assert "tangents from a latent of 128; score at sigma 0.25" in out
    assert "autoencoder <= 100 epochs, denoiser <= 100 epochs" in out
    assert "augment crop-flip" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if "GPU-hours" in ln and "trials" in ln}
    hours = {m: float(ln.split()[-2]) for m, ln in lines.items()}
    methods = {"none", "gradnorm", "smoothness", "randsmooth", "pgd_l2"}
    assert methods <= set(hours)
    assert hours["total"] == pytest.approx(sum(hours[m] for m in methods), abs=0.2)
    assert hours["gradnorm"] == pytest.approx(3 * hours["randsmooth"], rel=1e-3)
