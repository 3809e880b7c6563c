"""`pags measure` (issue 15): models measured from checkpoint files, as a trial measures its own.

One tiny digits-distractor trial is trained by `pags train --checkpoint-dir` (in this process,
over a briefly trained artifact set) and measured from its pags checkpoint and from a re-saved
plain state_dict: both must equal each other and the trial's own final measurement, bit for bit.
The format tests write tiny checkpoints with the exact key layout of each format.
"""

import contextlib
import dataclasses
import fractions
import io
import json
import math
import os
import shutil

import pandas as pd
import pytest
import torch

from analysis import load_results
from sweep.cli import main
from sweep.measure_cli import read_manifest
from trainables import checkpoints, zoo
from trainables.measure import artifacts as art_mod
from trainables.models import build_model

MEASURE = ["--set", "eval_points=16", "--set", "noise_draws=2"]
HEADLINE = ("test_accuracy", "on_manifold_sensitivity", "off_manifold_sensitivity",
            "signal_sensitivity", "distractor_sensitivity", "alignment", "rho1",
            "rho2", "eval_accuracy", "robust_accuracy")  # fmt: skip


def pags(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch trial at seed 1 (the measurement must take it from the checkpoint) with its
    pags checkpoint, the same weights as a plain state_dict, and
    the trial's own `--json` result. Artifacts: every training budget cut to 2 epochs (this
    test compares measurements with each other, not with the truth)."""
    torch.set_num_threads(1)
    real = art_mod.ArtifactConfig.for_trial.__func__

    def quick(cls, cfg):
        acfg = real(cls, cfg)
        budgets = {f.name: 2 for f in dataclasses.fields(acfg) if "epochs" in f.name}
        return dataclasses.replace(acfg, **budgets)

    mp = pytest.MonkeyPatch()
    mp.setattr(art_mod.ArtifactConfig, "for_trial", classmethod(quick))
    root = tmp_path_factory.mktemp("measure")
    cache, ckdir = root / "cache", root / "ck"
    code, out, err = pags("train", "--epochs", "2", "--seed", "1", "--set", "train_subset=512",
                          "--set", "lr=0.01", *MEASURE,
                          "--checkpoint-dir", ckdir, "--cache-dir", cache, "--output",
                          root / "maps", "--device", "cpu", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    pags_ck = ckdir / f"{result['config_id']}.pt"
    plain = root / "plain.pt"
    torch.save(torch.load(pags_ck, weights_only=False)["model"], plain)
    (built,) = cache.iterdir()  # the briefly trained set, under its own (quick) id
    real_dir = art_mod.artifact_dir(real(art_mod.ArtifactConfig, _measure_cfg()), str(cache))
    yield {"root": root, "cache": cache, "result": result, "pags": pags_ck, "plain": plain,
           "built": built, "real_name": os.path.basename(real_dir)}  # fmt: skip
    mp.undo()


def test_checkpoint_and_state_dict_measure_as_the_trial_did(trained):
    root, result = trained["root"], trained["result"]
    out_dir = root / "out"
    common = ["measure", "--local", "--device", "cpu", *MEASURE, "--cache-dir", trained["cache"],
              "--output", out_dir]  # fmt: skip
    code, out, err = pags(*common, "--checkpoint", trained["pags"])
    assert code == 0, out + err
    # the plain state_dict knows neither seed nor epoch: given as the trial's
    code, out, err = pags(*common, "--checkpoint", trained["plain"], "--format", "state_dict",
                          "--arch", "small-cnn", "--seed", "1", "--epoch", "2")  # fmt: skip
    assert code == 0, out + err
    assert "2 models in the tables" in out
    # measured results are kept: the same command again reruns nothing
    records = sorted((out_dir / "records").iterdir())
    stamps = [p.stat().st_mtime_ns for p in records]
    code, out, err = pags(*common, "--checkpoint", trained["pags"])
    assert code == 0 and "1 already measured" in out and "done" not in out, out + err
    assert [p.stat().st_mtime_ns for p in records] == stamps

    res = load_results(out_dir)
    t = res.trials.set_index("checkpoint_format")
    assert sorted(t.index) == ["pags", "state_dict"] and res.trials["config_id"].is_unique
    a, b = t.loc["pags"], t.loc["state_dict"]
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["checkpoint_sha256"] != b["checkpoint_sha256"]
    assert (a["seed"], a["method"], a["model"]) == (1, "pretrained", "small-cnn")
    # trained 2 epochs elsewhere, measured after the second; no configured epochs here
    assert (a["epochs_trained"], a["measured_epoch"], a["epochs"]) == (2, 2, -1)
    assert a["input_size"] == "1x28x14" and a["input_normalization"] == "none"
    summary = result["summary"]
    print("trial, pags checkpoint:", {c: (summary[c], a[c]) for c in HEADLINE})
    for col in HEADLINE:  # identical, not close: the same pipeline on the same weights
        assert a[col] == b[col] == summary[col], col
        assert math.isfinite(a[col]), col
    # every long-format row too
    m = res.measures.merge(res.trials[["config_id", "checkpoint_format"]], on="config_id")
    keys = ["epoch", "measure", "eps", "gradient", "reference", "metric"]
    rows = {fmt: g.drop(columns=["config_id", "checkpoint_format"]).sort_values(keys)
            .reset_index(drop=True) for fmt, g in m.groupby("checkpoint_format")}  # fmt: skip
    assert {"on_manifold_sensitivity", "signal_sensitivity", "alignment", "rho1", "rho2",
            "test_accuracy"} <= set(rows["pags"]["measure"])  # fmt: skip
    pd.testing.assert_frame_equal(rows["pags"], rows["state_dict"], check_exact=True)

    # `pags analyze` reads the directory as any sweep's
    code, out, err = pags("analyze", out_dir)
    assert code == 0, err
    assert (out_dir / "report" / "report.md").exists() and (out_dir / "report" / "report.html")


def test_robustbench_architecture_measured_end_to_end_with_certificate(trained, tmp_path):
    """A RobustBench-layout WideResNet file (random weights, width 2, for digits' 1 channel)
    through `pags measure`: robust accuracy at the scaled radius, and, labelled randsmooth at
    sigma 0.25, Cohen's certificate."""
    torch.manual_seed(0)
    model = zoo.build("wrn-10-2", 1, 10)
    path = tmp_path / "wrn.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    out_dir = tmp_path / "out"
    code, out, err = pags("measure", "--local", "--device", "cpu", *MEASURE, "--cache-dir",
                          trained["cache"], "--output", out_dir, "--checkpoint", path,
                          "--format", "robustbench", "--arch", "wrn-10-2", "--label",
                          "randsmooth", "--strength", "0.25", "--set", "certify_n=100")  # fmt: skip
    assert code == 0, out + err
    res = load_results(out_dir)
    (row,) = res.trials.to_dict("records")
    assert (row["model"], row["checkpoint_format"]) == ("wrn-10-2", "robustbench")
    assert row["input_normalization"] == "none"
    assert row["robust_attack"] == "apgd-ce-l2@20"
    assert row["robust_radius"] == pytest.approx(0.5 * math.sqrt(392 / 3072))
    assert 0 <= row["robust_accuracy"] <= row["eval_accuracy"] <= 1
    assert row["certify_sigma"] == 0.25
    assert 0 <= row["certified_accuracy"] <= 1 and 0 <= row["certify_abstain_rate"] <= 1
    m = res.measures
    assert len(m[m.measure == "certified_accuracy"]) == 5  # the ladder (holds the robust radius)
    assert m[m.measure == "robust_accuracy"]["metric"].item() == "apgd-ce-l2@20"


def test_bad_checkpoints_are_one_line_each_the_rest_measured_exit_2(trained, tmp_path):
    sd = torch.load(trained["plain"])
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    torch.save({k: v for k, v in sd.items() if k != "head.bias"}, tmp_path / "missing.pt")
    torch.save({**sd, "extra.weight": torch.zeros(1)}, tmp_path / "unexpected.pt")
    big = build_model("small-cnn", 1, 7, "softplus").state_dict()  # 7 classes, not 10
    torch.save(big, tmp_path / "classes.pt")
    manifest = tmp_path / "models.csv"
    manifest.write_text(
        "name,path,arch,format,strength,label\n"
        f"good,{trained['plain']},small-cnn,state_dict,0.5,fam\n"
        "gone,gone.pt,small-cnn,state_dict,,\n"
        "corrupt,corrupt.pt,small-cnn,state_dict,,\n"
        "missing,missing.pt,small-cnn,state_dict,,\n"
        "unexpected,unexpected.pt,small-cnn,state_dict,,\n"
        "classes,classes.pt,small-cnn,state_dict,,\n"
        f"channels,{trained['plain']},resnet18,state_dict,,\n"
        f"size,{trained['plain']},small-cnn,torchvision,,\n"
        f"neg,{trained['plain']},small-cnn,state_dict,-1,\n"
    )
    out_dir = tmp_path / "out"
    code, out, err = pags("measure", "--local", "--device", "cpu", *MEASURE, "--cache-dir",
                          trained["cache"], "--manifest", manifest,
                          "--output", out_dir)  # fmt: skip
    assert code == 2, out + err
    assert "Traceback" not in out + err
    bad = [ln for ln in out.splitlines() if ln.startswith("[pags] bad")]
    assert len(bad) == 8, out
    expect = {
        "gone.pt": "file not found",
        "corrupt.pt": "not a readable torch checkpoint",
        "missing.pt": "1 missing (e.g. ['head.bias'])",
        "unexpected.pt": "1 unexpected (e.g. ['extra.weight'])",
        "classes.pt": "head.weight has shape (7, 1024), small-cnn needs (10, 1024)",
        "checkpoint channels:": "keys do not fit resnet18",
        "checkpoint size:": "'small-cnn' is not a torchvision architecture",
        "line 10 (neg)": "strength -1.0 is invalid",
    }
    for needle, what in expect.items():
        assert any(needle in ln and what in ln for ln in bad), (needle, out)
    assert "8 checkpoint(s) could not be measured" in out
    t = load_results(out_dir).trials
    assert list(t["checkpoint_name"]) == ["good"] and t["method"].item() == "fam"
    assert t["strength"].item() == 0.5


def test_manifest_without_its_columns_is_refused_at_once(tmp_path):
    bad = tmp_path / "models.csv"
    bad.write_text("name,file\nx,y.pt\n")
    code, out, err = pags("measure", "--manifest", bad, "--output", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "missing columns ['path', 'arch', 'format']" in err and "allowed: name, path" in err
    code, _, err = pags("measure", "--checkpoint", "x.pt", "--format", "onnx")
    assert code == 2 and "format 'onnx' is unknown; allowed: pags, state_dict" in err
    code, _, err = pags("measure", "--checkpoint", "x.pt", "--set", "lr=1")
    assert code == 2 and "'lr' is not a measurement setting" in err
    code, _, err = pags("measure", "--checkpoint", "x.pt", "--format", "state_dict", "--arch",
                        "small-cnn", "--epoch", "-1")  # fmt: skip
    assert code == 2 and "--epoch -1 is invalid" in err
    code, _, err = pags("measure", "--checkpoint", "x.pt", "--cpus-per-task", "nan")
    assert code == 2 and "--cpus-per-task nan is invalid" in err


def test_a_trial_remeasured_with_no_flags_reproduces_itself(trained, tmp_path):
    """The trial ran at non-default settings (eval_points 16, noise_draws 2): its checkpoint
    measured with no --set takes them from the checkpoint, says so, and gives the trial's
    numbers and its resolved metric name (not "auto")."""
    out_dir, result = tmp_path / "out", trained["result"]
    code, out, err = pags("measure", "--local", "--device", "cpu", "--cache-dir",
                          trained["cache"], "--output", out_dir, "--checkpoint", trained["pags"])
    assert code == 0, out + err
    assert ("settings from the checkpoints' trials: dataset=digits-distractor, eval_points=16, "
            "noise_draws=2") in out  # fmt: skip
    row = load_results(out_dir).trials.iloc[0]
    for col in HEADLINE:
        assert row[col] == result["summary"][col], col
    assert row["alignment_metric"] == result["summary"]["alignment_metric"] != "auto"


def test_checkpoints_measured_differently_are_refused_together(trained, tmp_path):
    other = torch.load(trained["pags"], weights_only=False)
    other["config"]["eval_points"] = 24
    torch.save(other, tmp_path / "other.pt")
    code, out, err = pags("measure", "--local", "--output", tmp_path / "out", "--checkpoint",
                          trained["pags"], "--checkpoint", tmp_path / "other.pt")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, out + err
    assert "other.pt was measured with eval_points=24" in err and "with 16" in err
    assert not (tmp_path / "out").exists()


def test_one_set_of_measurement_settings_per_directory(trained, tmp_path):
    out_dir = tmp_path / "out"
    args = ["measure", "--local", "--cache-dir", trained["cache"], "--output", out_dir,
            "--checkpoint", trained["pags"]]  # fmt: skip
    code, out, err = pags(*args, *MEASURE)
    assert code == 0, out + err
    code, out, err = pags(*args, "--set", "eval_points=24", "--set", "noise_draws=2")
    assert code == 2 and len(err.strip().splitlines()) == 1, out + err
    assert "holds measurements with eval_points=16, not 24" in err
    assert len(load_results(out_dir).trials) == 1


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    (tmp_path / "m.csv").write_text(
        "name,path,arch,format,seed\na,sub/a.pt,small-cnn,state_dict,3\n"
    )
    lines = []
    (spec,) = read_manifest(str(tmp_path / "m.csv"), lines.append)
    assert spec.path == str(tmp_path / "sub" / "a.pt") and spec.seed == 3 and not lines


# ---- formats: tiny checkpoints with each format's exact key layout -------------------------


def _x(shape, n=4):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))


def test_robustness_library_layout_with_its_input_normalization(tmp_path):
    """MadryLab robustness: AttackerModel in DataParallel, so `module.model.*` (the net),
    `module.normalizer.new_mean/new_std` `(C, 1, 1)` and the attacker's copies of both."""
    net = build_model("small-cnn", 3, 10, "softplus").eval()
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    sd = {}
    for prefix in ("module.", "module.attacker."):
        sd.update({f"{prefix}model.{k}": v for k, v in net.state_dict().items()})
        sd[f"{prefix}normalizer.new_mean"] = mean[:, None, None]
        sd[f"{prefix}normalizer.new_std"] = std[:, None, None]
    path = tmp_path / "robust.pt"
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "schedule": None,
                "epoch": 150}, path)  # fmt: skip
    loaded = checkpoints.load(str(path), "robustness", "small-cnn", (3, 8, 8), 10)
    x = _x((3, 8, 8)) * 1.2  # some pixels above 1: the library clamps them
    want = net((x.clamp(0, 1) - mean[:, None, None]) / std[:, None, None])
    assert torch.allclose(loaded.model(x), want)
    assert loaded.epoch == 150 and loaded.normalization.endswith("clamp01")
    assert loaded.normalization.startswith("mean=(0.4914,0.4822,0.4465)")
    # the normalizer keys are required: without them the inputs would be measured raw
    del sd["module.normalizer.new_std"]
    torch.save({"model": sd, "epoch": 150}, path)
    with pytest.raises(checkpoints.CheckpointError, match="new_mean/new_std"):
        checkpoints.load(str(path), "robustness", "small-cnn", (3, 8, 8), 10)


def test_torchvision_architecture_with_imagenet_normalization(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "tv.pt"
    torch.save(net.state_dict(), path)
    loaded = checkpoints.load(str(path), "torchvision", "resnet18", (3, 32, 32), 10)
    x = _x((3, 32, 32), 2)
    mean = torch.tensor(checkpoints.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(checkpoints.IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net((x - mean) / std), atol=1e-6)
    assert "clamp" not in loaded.normalization and loaded.normalization.startswith("mean=(0.485")
    # the wrong input size is refused when loading, not mid-measurement
    with pytest.raises(checkpoints.CheckpointError, match="does not take 1x28x14 inputs"):
        checkpoints.load(str(path), "torchvision", "resnet18", (1, 28, 14), 10)


def test_state_dict_from_data_parallel_and_pags_checkpoint_without_config(tmp_path):
    net = build_model("small-cnn", 1, 10, "relu").eval()
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = checkpoints.load(str(path), "state_dict", "small-cnn", (1, 28, 14), 10, "relu")
    x = _x((1, 28, 14))
    assert torch.equal(loaded.model(x), net(x)) and loaded.normalization == "none"
    assert checkpoints.weights_sha256(loaded.model) == checkpoints.weights_sha256(net)
    torch.save({"model": net.state_dict(), "epoch": 3}, path)
    with pytest.raises(checkpoints.CheckpointError, match="without its config"):
        checkpoints.load(str(path), "pags", "", (1, 28, 14), 10)


def test_foreign_files_are_not_unpickled_as_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": fractions.Fraction(1, 3)}, path)  # any object beyond tensors
    with pytest.raises(checkpoints.CheckpointError, match="not a readable torch checkpoint"):
        checkpoints.load(str(path), "state_dict", "small-cnn", (1, 28, 14), 10)


# ---- through Ray: one task per checkpoint, progress line, a rerun keeps what is done ---------


@pytest.mark.ray
@pytest.mark.slow
def test_manifest_family_through_ray_then_analyze(trained, tmp_path):
    """Two checkpoints of a labelled family measured as Ray tasks by the CLI in a subprocess.
    Ray's workers cannot see a monkeypatch, so a briefly trained artifact set is put where
    the real one would be cached (this test checks the plumbing, not the numbers)."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    _real_place_quick_artifacts(trained, cache)
    rows = ["name,path,arch,format,strength,label"]
    for i, strength in enumerate((0.0, 1.0)):
        torch.manual_seed(i)
        torch.save(build_model("small-cnn", 1, 10, "softplus").state_dict(), tmp_path / f"{i}.pt")
        rows.append(f"m{i},{i}.pt,small-cnn,state_dict,{strength},family")
    (tmp_path / "models.csv").write_text("\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "sweep.cli", "measure", "--manifest", tmp_path / "models.csv",
           *MEASURE, "--cache-dir", cache, "--output", tmp_path / "out",
           "--num-cpus", "2"]  # fmt: skip
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[pags measure]" in out.stdout and "2/2 done" in out.stdout, out.stdout
    t = load_results(tmp_path / "out").trials
    assert sorted(t["strength"]) == [0.0, 1.0] and set(t["method"]) == {"family"}
    assert t["alignment"].map(math.isfinite).all()
    again = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "2 already measured" in again.stdout, again.stdout
    assert "done" not in again.stdout.replace("already", "")  # no task ran
    code, _, err = pags("analyze", tmp_path / "out")
    assert code == 0 and (tmp_path / "out" / "report" / "report.md").exists(), err


def _measure_cfg():
    from trainables.config import TrialConfig

    return TrialConfig.from_dict({"eval_points": 16, "noise_draws": 2})


def _real_place_quick_artifacts(trained, cache) -> None:
    """The fixture's briefly trained artifacts copied to where the real (default-budget) set
    would be cached: for subprocesses, which the monkeypatch cannot reach."""
    shutil.copytree(trained["built"], cache / trained["real_name"])


@pytest.mark.slow
def test_killed_driver_resumes_without_remeasuring(trained, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "cache"
    _real_place_quick_artifacts(trained, cache)
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        paths.append(tmp_path / f"{i}.pt")
        torch.save(build_model("small-cnn", 1, 10, "softplus").state_dict(), paths[-1])
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "sweep.cli", "measure", "--local", "--device", "cpu",
           "--format", "state_dict", "--arch", "small-cnn", *MEASURE, "--cache-dir", cache,
           "--output", out_dir] + [a for p in paths for a in ("--checkpoint", p)]  # fmt: skip
    cmd = list(map(str, cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out_dir / "records"
    while proc.poll() is None and not (records.exists() and any(records.glob("*.json"))):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-run, writing nothing more
    proc.wait()
    done = sorted(records.glob("*.json"))
    assert 1 <= len(done) < 3
    stamps = [p.stat().st_mtime_ns for p in done]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} already measured" in again.stdout, again.stdout
    assert [p.stat().st_mtime_ns for p in done] == stamps  # kept, not rerun
    assert len(load_results(out_dir).trials) == 3
