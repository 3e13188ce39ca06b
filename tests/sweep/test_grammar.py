"""The sweep grammar: axes and ranges parsed as documented, bad ones refused with a line naming them; any grid expands
to the product of its axes (checked against itertools.product), and trial names are unique, stable and safe."""

import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_lm.errors import ConfigError
from cs336_lm.sweep.grammar import format_value, grid_points, parse_arguments, parse_scalar, trial_name


def test_fixed_values_grid_axes_and_ranges():
    args = parse_arguments(
        [
            "train.max_steps=300",
            "optim.lr=1e-3,3e-3,1e-2",
            "train.batch_size=8,32",
            "model.norm=pre",
            "data.train_path=[1,2]",
        ]
    )
    assert args.fixed == ("train.max_steps=300", "model.norm=pre", "data.train_path=[1,2]")
    assert [(a.key, a.kind, a.values) for a in args.axes] == [
        ("optim.lr", "grid", (0.001, 0.003, 0.01)),
        ("train.batch_size", "grid", (8, 32)),
    ]
    assert not args.is_search
    search = parse_arguments(
        ["optim.lr=loguniform(1e-4,1e-1)", "train.batch_size=int(8, 64)", "model.ffn=choice(swiglu,silu)"]
    )
    assert search.is_search
    lr, bs, ffn = search.axes
    assert (lr.kind, lr.low, lr.high) == ("loguniform", 1e-4, 1e-1)
    assert (bs.kind, bs.low, bs.high, bs.corners()) == ("int", 8, 64, (8, 64))
    assert (ffn.kind, ffn.values) == ("choice", ("swiglu", "silu"))


def test_a_key_given_again_wins():
    args = parse_arguments(["train.max_steps=10", "optim.lr=1,2", "train.max_steps=20"])
    assert args.fixed == ("train.max_steps=20",)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("optim.lr=loguniform(1,)", r"malformed range 'optim.lr=loguniform\(1,\)'"),
        ("optim.lr=loguniform(0,1)", r"loguniform needs LOW > 0"),
        ("optim.lr=uniform(2,1)", r"LOW must be below HIGH"),
        ("train.batch_size=int(1.5,8)", r"'1.5' is not an integer"),
        ("optim.lr=uniform(a,b)", r"'a' is not a finite number"),
        ("model.ffn=choice(silu)", r"at least two values"),
        ("optim.lr=1e-3,,1e-2", r"an empty value between commas"),
        ("optim.lr=1e-3,1e-3", r"listed twice"),
        ("optim.lr", r"must look like section.key=value"),
        ("=3", r"must look like section.key=value"),
    ],
)
def test_malformed_arguments_name_themselves(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_arguments([item])


def test_values_read_like_yaml_scalars():
    assert parse_scalar("1e-3", "x") == 0.001 and isinstance(parse_scalar("1e-3", "x"), float)
    assert parse_scalar("8", "x") == 8 and parse_scalar("true", "x") is True and parse_scalar("null", "x") is None
    assert parse_scalar("muon", "x") == "muon"
    for value in (0.001, 1e-05, 8, True, None, "muon", 3.0, "1", "true", "a,b"):
        assert parse_scalar(format_value(value), "x") == value


def test_names_read_like_the_values():
    assert trial_name({"optim.lr": 0.001, "train.batch_size": 8}) == "lr=0.001,batch_size=8"
    assert trial_name({"model.norm": "none", "train.norm": 1}) == "model.norm=none,train.norm=1"
    assert trial_name({}) == "base"
    odd = trial_name({"data.train_path": "a/b"})
    assert odd.startswith("train_path=a_b~") and "/" not in odd


scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    st.sampled_from(["1", "true", "null", "1e-3", "a,b", " x", "~", "."]),  # strings that look like other values
)
keys = st.from_regex(r"\A[a-z]{1,6}(\.[a-z_]{1,8}){0,2}\Z")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, st.lists(scalars, min_size=1, max_size=3, unique_by=lambda v: (type(v), v)), max_size=3))
def test_any_grid_is_the_product_with_unique_stable_names(axes_values):
    from cs336_lm.sweep.grammar import Axis

    axes = [Axis(k, "grid", tuple(v)) for k, v in axes_values.items()]
    points = grid_points(axes)
    expected = [dict(zip(axes_values, combo, strict=True)) for combo in itertools.product(*axes_values.values())]
    assert points == expected
    assert len(points) == math.prod(len(v) for v in axes_values.values())
    names = [trial_name(p) for p in points]
    assert len(set(names)) == len(names)  # no two points share a run directory
    assert names == [trial_name(dict(p)) for p in points]  # the same point, the same name, every time
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._+=,~-]+", name) and not name.startswith(".") and len(name) <= 120


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=5, unique=True))
def test_a_comma_list_of_numbers_parses_back_to_the_same_axis(values):
    text = ",".join(format_value(v) for v in values)
    (axis,) = parse_arguments([f"optim.lr={text}"]).axes
    assert [float(v) for v in axis.values] == values
