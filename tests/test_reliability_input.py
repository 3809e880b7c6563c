"""Generated bad input to `pags sweep` (issue 6, item 6): every invalid argument or preset
override exits 2 with one line on stderr, no traceback, and writes nothing.

`sweep.cli.main` runs in this process. Sweeps are *not* dry runs in the first test: the real
code path runs until Ray would start, and reaching Ray (`sweep.tune.cluster.connect`) with an
invalid input fails the test. No generated value makes the CLI touch the network: addresses have no
digits (no port, so no connection attempt) and storage URIs have unknown schemes.
(tests/test_bad_input.py covers TrialConfig dicts and `pags train`.)
"""

import dataclasses
import math
import os
import string
import tempfile

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from sweep.cli import build_parser, main
from sweep.plan.config import OBJECTIVES, RESERVED
from sweep.plan.presets import PRESETS
from sweep.tune import cluster
from trainables.config import METHODS, OPTIMIZERS, SCHEDULES, TrialConfig
from trainables.models import ACTIVATIONS
from trainables.recipes import recipe_config

FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}
NUMERIC = sorted(n for n, f in FIELDS.items() if f.type in ("int", "float", int, float))
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "activation": ACTIVATIONS}
SWEEP_OPTIONS = sorted(
    s for a in build_parser()._subparsers._group_actions[0].choices["sweep"]._actions
    for s in a.option_strings
)  # fmt: skip
SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

word = st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=10)
anytext = st.text(max_size=12)
not_a_number = word.filter(lambda s: _not_float(s))
bad_positive = st.one_of(  # invalid where a number > 0 is needed
    st.sampled_from(["0", "-1", "-0.5", "nan", "inf", "-inf", "1e400", "0x10", ""]),
    st.floats(max_value=0, allow_nan=False).map(repr),
    not_a_number,
)
bad_count = st.one_of(  # invalid where an integer >= 1 is needed
    st.integers(max_value=0).map(str), st.sampled_from(["1.5", "2.0", "nan", "", "1e3"]),
    not_a_number,
)  # fmt: skip


def _not_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


def csv_with(bad, good):
    """A comma-separated list with at least one bad item among good ones, in any order."""
    return st.tuples(st.lists(good, max_size=3), st.lists(bad, min_size=1, max_size=2)).flatmap(
        lambda t: st.permutations(t[0] + t[1]).map(",".join)
    )


unknown_method = word.filter(lambda s: s.strip() and s.strip() not in METHODS)
unknown_option = (
    st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=10)
    .map(lambda s: "--" + s)
    .filter(lambda o: not any(opt.startswith(o) for opt in SWEEP_OPTIONS))
)
bad_set = st.one_of(
    word.filter(lambda k: k not in FIELDS).map(lambda k: f"{k}=1"),  # unknown field
    st.sampled_from(sorted(RESERVED)).map(lambda k: f"{k}=1"),  # set by the sweep itself
    st.sampled_from(["", "=", "=1", "lr", "epochs:3", "train_subset 5"]),  # not key=value
    st.tuples(st.sampled_from(NUMERIC), not_a_number).map("=".join),
    st.tuples(st.sampled_from(sorted(CHOICES)), word).filter(
        lambda kv: kv[1] not in CHOICES[kv[0]]
    ).map("=".join),
    st.sampled_from(["lr=0", "lr=-1e-3", "lr=inf", "epochs=0", "batch_size=0", "eval_points=0",
                     "train_subset=-1", "measure=maybe", "pgd_steps=0", "eps=0", "eps=1,-1",
                     "milestones=0", "weight_decay=-1", "smooth_sigma=nan"]),
)  # fmt: skip

# One invalid option each; a test draws one or more and mixes them with valid ones.
BAD_OPTION = st.one_of(
    st.tuples(st.just("--preset"), anytext.filter(lambda s: s not in PRESETS)),
    st.tuples(st.just("--methods"), csv_with(unknown_method, st.sampled_from(METHODS))),
    st.tuples(st.just("--methods"), st.sampled_from(["", ",", " , "])),
    st.tuples(st.just("--strengths"), csv_with(bad_positive, st.sampled_from(["0.1", "2"]))),
    st.tuples(st.just("--seeds"), bad_count),
    st.tuples(st.just("--epochs"), bad_count),
    st.tuples(st.just("--set"), bad_set),
    st.tuples(st.just("--cpus-per-trial"), bad_positive),
    st.tuples(
        st.just("--gpus-per-trial"), st.sampled_from(["-1", "1.5", "2.5", "nan", "inf", "x"])
    ),
    st.tuples(st.just("--num-cpus"), st.sampled_from(["0", "-2", "1.5", "x"])),
    st.tuples(st.just("--max-failures"), st.sampled_from(["-1", "-10", "x", "1.5"])),
    st.tuples(st.just("--search"), word.filter(lambda s: s not in ("grid", "optuna"))),
    st.tuples(st.just("--objective"), word.filter(lambda s: s not in OBJECTIVES)),
    st.tuples(st.just("--trials"), st.sampled_from(["x", "1.5"])),
    st.tuples(
        st.just("--address"),
        st.text(alphabet=string.ascii_letters + ".:/-_", min_size=1, max_size=16).filter(
            lambda s: s not in ("auto", "local") and not s.startswith("-")
        ),
    ),
    st.tuples(st.just("--storage"), word.map(lambda s: f"pags-nosuch-{s.lower()}://bucket/x")),
    st.tuples(st.just("--output"), word.map(lambda s: "{file}/" + s)),  # under a file
    unknown_option.map(lambda o: (o,)),
)
VALID_OPTION = st.sampled_from(
    [("--methods", "none,gradnorm"), ("--strengths", "0.1,1"), ("--seeds", "1"),
     ("--epochs", "2"), ("--set", "train_subset=64"), ("--set", "measure=false"),
     ("--cpus-per-trial", "1"), ("--max-failures", "0")]
)  # fmt: skip


@pytest.fixture
def no_ray(monkeypatch):
    """Reaching Ray means an invalid input got past validation."""

    def connect(*args, **kwargs):
        raise AssertionError("an invalid input reached Ray")

    monkeypatch.setattr(cluster, "connect", connect)


def run_in_empty_dir(monkeypatch, capsys, argv, output=True):
    """main(argv) in a fresh directory holding one file; (code, stdout, stderr, what is left
    in the directory besides that file). `{file}` in an argument names that file."""
    with tempfile.TemporaryDirectory() as d:
        monkeypatch.chdir(d)
        afile = os.path.join(d, "a-file")
        with open(afile, "w") as f:
            f.write("x")
        argv = [a.replace("{file}", afile) for a in argv]
        if output and "--output" not in argv:
            argv += ["--output", os.path.join(d, "exp")]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        left = sorted(set(os.listdir(d)) - {"a-file"})
    return code, out, err, left


def assert_refused(code, out, err, left):
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("pags: error: "), err
    assert "Traceback" not in err and out == ""
    assert left == [], f"invalid input wrote {left}"


@settings(max_examples=300, **SETTINGS)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    good=st.lists(VALID_OPTION, max_size=3),
    bad=st.lists(BAD_OPTION, min_size=1, max_size=2),
)
def test_invalid_sweep_arguments_exit_2_with_one_line_and_write_nothing(
    monkeypatch, capsys, no_ray, preset, good, bad
):
    # Bad options last: a later valid option of the same name would replace a bad one.
    argv = ["sweep", "--preset", preset, *[a for opt in [*good, *bad] for a in opt]]
    assert_refused(*run_in_empty_dir(monkeypatch, capsys, argv))


@settings(max_examples=200, **SETTINGS)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    key=st.sampled_from(sorted(FIELDS)),
    value=st.one_of(anytext, st.floats().map(repr), st.integers(-5, 5).map(str)),
)
def test_any_preset_override_is_refused_or_is_a_valid_trial_config(
    monkeypatch, capsys, preset, key, value
):
    """`--set key=value` for every TrialConfig field: either refused (2, one line) or the value
    is one the trial config itself accepts; a dry run writes nothing either way."""
    argv = ["sweep", "--preset", preset, "--set", f"{key}={value}", "--dry-run"]
    code, out, err, left = run_in_empty_dir(monkeypatch, capsys, argv)
    assert left == []
    if code == 2:
        assert_refused(code, out, err, left)
        return
    assert code == 0 and err == "", err
    assert key not in RESERVED
    probe = TrialConfig.from_dict(recipe_config({"dataset": PRESETS[preset].dataset, key: value}))
    got = getattr(probe, key)
    assert not (isinstance(got, float) and not math.isfinite(got))


OPTION = st.sampled_from([o for o in SWEEP_OPTIONS if o not in ("-h", "--help", "--dry-run")])
VALUE = st.one_of(
    st.sampled_from(["digits-quick", "synthetic", "none,gradnorm", "0.1,1", "1", "2", "-1",
                     "0", "nan", "x", "grid", "optuna", "alignment", "epochs=2", "lr=x", ""]),
    st.text(alphabet=string.ascii_letters + string.digits + ",.=-_ ", max_size=8).filter(
        lambda s: not s.startswith("-")  # options only from the list: no abbreviations
    ),
)  # fmt: skip
# Mostly option-value pairs (to get past the parser), then stray options or values.
ARGS = st.tuples(
    st.lists(st.tuples(OPTION, VALUE), max_size=5), st.lists(st.one_of(OPTION, VALUE), max_size=2)
).map(lambda t: [a for pair in t[0] for a in pair] + t[1])


@settings(max_examples=300, **SETTINGS)
@given(preset=st.sampled_from(sorted(PRESETS)), tokens=ARGS)
def test_any_argument_list_is_run_or_refused_never_a_traceback(monkeypatch, capsys, preset, tokens):
    """Random argument lists (dry runs): exit 0 with the trial table, or 2 with one line."""
    assume("--seeds" not in tokens)  # a huge count would only make a long table
    argv = ["sweep", "--preset", preset, *tokens, "--dry-run"]
    code, out, err, left = run_in_empty_dir(monkeypatch, capsys, argv, output=False)
    event(f"exit {code}")
    assert left == [], f"a dry run wrote {left}"
    if code == 2:
        assert_refused(code, out, err, left)
    else:
        assert code == 0 and err == "" and out.startswith("preset "), (code, err)
