"""A cluster run's storage on a real S3-protocol endpoint (issue 23): everything a sweep stores
goes through moto's S3 server on loopback (tests/s3_server.py), reached only through
`AWS_ENDPOINT_URL`, as a MinIO or Ceph endpoint would be.

- the four-trial sweep of test_reliability_faults.py on `--storage s3://...`, with a second
  driver started on the same experiment while it runs (refused by the S3 lease lock, the
  first's results whole), then `pags analyze s3://...` reading it from the bucket;
- the same sweep with its driver SIGKILLed mid-sweep: the same command resumes and the tables
  equal the uninterrupted run's;
- a peak search (Optuna) on S3 with its driver SIGKILLed mid-search and its local copy of the
  study gone: the rerun resumes the bucket's study, asking nothing twice.

Every check reads the bucket through its own S3 client: a sweep that wrote anywhere else fails.
"""

import io
import json
import shutil
import signal
import time

import optuna
import pandas as pd
import pytest
from s3_server import S3, s3_endpoint_fixture  # noqa: F401 - fixtures
from test_reliability_helpers import (
    descendants,
    final_columns,
    finish,
    reap,
    start_sweep,
    wait_until,
)

from analysis.results.layout import (
    LOCK_FILE,
    MEASURES_FILE,
    SEARCH_BEST_FILE,
    STUDY_FILE,
    SWEEP_FILE,
    TRIALS_FILE,
)
from sweep.tune.search import study_name

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FOUR = ["--preset", "digits-quick", "--set", "measure=false", "--methods", "none,randsmooth",
        "--strengths", "0.1,0.3,0.5", "--epochs", "4", "--num-cpus", "2"]  # fmt: skip


def sweep_on(s3: S3, name: str, cwd, *extra):
    return start_sweep(*FOUR, *extra, "--storage", s3.uri("pags"), "--output", name, cwd=cwd,
                       env=s3.env)  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(s3_endpoint, tmp_path_factory):
    """The four-trial sweep on S3 without faults, a second driver on the same experiment
    started while it runs; then `pags analyze` of the experiment's URI."""
    s3 = S3(s3_endpoint)
    root = tmp_path_factory.mktemp("s3-uninterrupted")
    first = sweep_on(s3, "exp", root)
    try:
        wait_until("trials running", lambda: s3.reports("pags/exp/"), first, timeout=180)
        sweep_config = s3.read(f"pags/exp/{SWEEP_FILE}")
        lock = s3.client.head_object(Bucket=s3.bucket, Key=f"pags/exp/{LOCK_FILE}")["ETag"]
        second_dir = root / "second"
        second_dir.mkdir()
        second = sweep_on(s3, "exp", second_dir)
        second_log = finish(second, timeout=180)
        first_running = first.poll() is None
        log = finish(first, timeout=300)
    finally:
        reap(descendants(first.pid))
    assert first.returncode == 0, log
    return {"s3": s3, "root": root, "second": (second.returncode, second_log, lock),
            "first_running": first_running, "sweep_config": sweep_config,
            "results": s3.results("pags/exp", root)}  # fmt: skip


def test_sweep_on_s3_stores_everything_there_and_refuses_a_second_driver(uninterrupted):
    s3 = uninterrupted["s3"]
    keys = s3.keys("pags/exp/")
    for name in (SWEEP_FILE, TRIALS_FILE, MEASURES_FILE):
        assert f"pags/exp/{name}" in keys
    checkpoints = [k for k in keys if "/checkpoint_" in k and k.endswith("/state.pt")]
    assert len({k.split("/")[3] for k in checkpoints}) == 4, keys  # every trial's, in the bucket
    assert f"pags/exp/{LOCK_FILE}" not in keys  # released at the end
    res = uninterrupted["results"]
    assert len(res.trials) == 4 and res.trials["config_id"].is_unique
    assert set(res.trials["status"]) == {"completed"}
    assert (res.trials["epochs_trained"] == 4).all()

    code, log, lock = uninterrupted["second"]
    assert uninterrupted["first_running"], "the first sweep ended before the second was refused"
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pags: error: "), log
    assert "in use by another pags sweep" in lines[0] and s3.uri("pags", "exp") in lines[0]
    assert s3.read(f"pags/exp/{SWEEP_FILE}") == uninterrupted["sweep_config"]


def test_analyze_reads_the_experiment_on_s3(uninterrupted):
    import subprocess
    import sys

    s3 = uninterrupted["s3"]
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "analyze", s3.uri("pags", "exp")],
                         env=s3.env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"report: {s3.uri('pags', 'exp', 'report', 'report.md')}" in out.stdout, out.stdout
    report = s3.read("pags/exp/report/report.md").decode()
    assert "completed" in report or "trials" in report
    # The report's tables are the ones of this experiment: its trials, as stored.
    keys = s3.keys("pags/exp/report/")
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".png") for k in keys)


def test_killed_driver_on_s3_resumes_and_the_tables_equal_the_uninterrupted_run(
    uninterrupted, tmp_path
):
    s3 = uninterrupted["s3"]
    proc = sweep_on(s3, "killed", tmp_path)
    ray_procs = []
    try:

        def some_finished():
            done = {c: r for c, r in s3.reports("pags/killed/").items()
                    if r[-1]["status"] == "completed"}  # fmt: skip
            return done if len(done) < 4 else None

        finished = wait_until("a finished trial", some_finished, proc, timeout=240)
        ray_procs = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        finish(proc, timeout=30)
    finally:
        reap(ray_procs)
    assert proc.returncode == -signal.SIGKILL
    assert f"pags/killed/{TRIALS_FILE}" not in s3.keys("pags/killed/")
    assert f"pags/killed/{LOCK_FILE}" in s3.keys("pags/killed/")  # the dead driver's lease
    before = {c: len(r) for c, r in s3.reports("pags/killed/").items()}

    start = time.monotonic()
    rerun = sweep_on(s3, "killed", tmp_path)
    try:
        log = finish(rerun, timeout=300)
    finally:
        reap(descendants(rerun.pid))
    print(f"rerun after the killed driver on S3: {time.monotonic() - start:.1f} s")
    assert rerun.returncode == 0, log
    assert "resuming sweep" in log

    res = s3.results("pags/killed", tmp_path)
    t = res.trials.set_index("config_id")
    assert len(t) == 4 and set(t["status"]) == {"completed"}
    # Tune uploads its state in the background: a trial that finished in the moment before
    # the kill may be stored as running, and the rerun resumes it from its last stored
    # checkpoint: it repeats the epochs since (same numbers: resuming is exact), never from
    # scratch.
    for cid, rows in finished.items():
        new = s3.reports("pags/killed/")[cid][before[cid]:]
        if not new:  # left alone: its row is the one it wrote before the kill
            assert t.loc[cid, "pid"] == rows[-1]["pid"]
            continue
        assert new[0]["epoch"] >= 2 and new[-1]["epoch"] == 4, [r["epoch"] for r in new]
        assert new[-1]["status"] == "completed"
    ref = uninterrupted["results"]
    got_t, got_m = final_columns(res.trials, res.measures)
    want_t, want_m = final_columns(ref.trials, ref.measures)
    pd.testing.assert_frame_equal(got_t, want_t)
    pd.testing.assert_frame_equal(got_m, want_m)


SEARCH = ["--preset", "digits-quick", "--set", "measure=false", "--methods", "gradnorm",
          "--search", "optuna", "--objective", "test_accuracy", "--trials", "3",
          "--epochs", "3", "--set", "train_subset=256", "--num-cpus", "2"]  # fmt: skip


def test_peak_search_on_s3_killed_mid_run_resumes_from_the_buckets_study(s3_endpoint, tmp_path):
    """The study is kept in the bucket as it changes: a driver SIGKILLed mid-search and rerun
    with none of its local copy (another machine's view, same --cache-dir path) resumes the
    same study: nothing asked twice, every strength told once."""
    s3 = S3(s3_endpoint)
    cache = tmp_path / "cache"
    cmd = [*SEARCH, "--storage", s3.uri("pags"), "--output", "search", "--cache-dir", cache]
    key = f"pags/search/{STUDY_FILE}"

    def study():
        path = tmp_path / f"study-{time.monotonic_ns()}.db"
        path.write_bytes(s3.read(key))
        return optuna.load_study(study_name=study_name("gradnorm"), storage=f"sqlite:///{path}")

    proc = start_sweep(*cmd, cwd=tmp_path, env=s3.env)
    ray_procs = []
    try:

        def some_strengths_told():
            if key not in s3.keys("pags/search/"):
                return None
            try:
                done = [t for t in study().trials if t.state.is_finished()]
            except (KeyError, optuna.exceptions.OptunaError):
                return None  # the study not created in this copy yet
            return done if 1 <= len(done) < 3 else None

        wait_until("a strength told, not all", some_strengths_told, proc, timeout=300)
        ray_procs = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        finish(proc, timeout=30)
    finally:
        reap(ray_procs)
    assert proc.returncode == -signal.SIGKILL
    before = {t.number: t for t in study().trials}
    told = {n: t for n, t in before.items() if t.state.is_finished()}
    shutil.rmtree(cache / "studies")  # the driver's own copy gone: the bucket's must serve

    rerun = start_sweep(*cmd, cwd=tmp_path, env=s3.env)
    try:
        log = finish(rerun, timeout=400)
    finally:
        reap(descendants(rerun.pid))
    assert rerun.returncode == 0, log
    assert "resuming sweep" in log and "best gradnorm strength: lambda=" in log, log
    after = study().trials
    assert [t.number for t in after] == [0, 1, 2]  # the same study, nothing asked twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    for n, t in told.items():  # told before the kill: untouched
        assert (after[n].value, after[n].params) == (t.value, t.params)
    for n, t in before.items():  # asked before the kill: the same strength, finished now
        assert after[n].params == t.params
    best = json.loads(s3.read(f"pags/search/{SEARCH_BEST_FILE}"))["gradnorm"]
    assert best["n_complete"] == 3 and best["storage"] == s3.uri("pags", "search", STUDY_FILE)
    trials = pd.read_parquet(io.BytesIO(s3.read(f"pags/search/{TRIALS_FILE}")))
    assert len(trials) == 2 + 3 * 2 and trials["config_id"].is_unique  # baseline + 3 x 2 seeds
