"""Generated bad input: every invalid config or train argument is refused with one line."""

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.cli import main
from trainables.config import TrialConfig

FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}

junk = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=-1),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(FIELDS)), value=junk)
def test_from_dict_refuses_with_a_message_naming_the_field(name, value):
    try:
        cfg = TrialConfig.from_dict({name: value})
    except ValueError as err:
        msg = str(err)
        assert "\n" not in msg and name in msg and "allowed" in msg
    else:  # accepted: then it must really be a valid, finite value of the right type
        got = getattr(cfg, name)
        if isinstance(got, float):
            assert math.isfinite(got)


@settings(max_examples=50, deadline=None)
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_fields_are_refused(key):
    if key in FIELDS:
        return
    with pytest.raises(ValueError, match="unknown config field"):
        TrialConfig.from_dict({key: 1})


BAD_TRAIN_ARGS = st.one_of(
    st.tuples(st.just("--dataset"), st.text(min_size=1, max_size=10).filter(
        lambda s: s not in ("digits-distractor", "synthetic-manifold", "mnist-distractor",
                            "cifar10", "imagenet64") and not s.startswith("-"))),
    st.tuples(st.just("--method"), st.sampled_from(["adv", "GRADNORM", "pgd", "x"])),
    st.tuples(st.just("--strength"), st.sampled_from(["-1", "-0.5", "nan", "inf", "abc"])),
    st.tuples(st.just("--epochs"), st.sampled_from(["0", "-3", "1.5", "many"])),
    st.tuples(st.just("--seed"), st.sampled_from(["x", "1.5"])),
    st.tuples(st.just("--set"), st.sampled_from(["lr=0", "batch_size=0", "eps=-1", "nokey",
                                                 "activation=tanh", "lr=inf"])),
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arg=BAD_TRAIN_ARGS)
def test_train_cli_bad_input_exits_2_with_one_line_and_writes_nothing(
    arg, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["train", "--no-measure", *arg]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert set(tmp_path.iterdir()) == before
