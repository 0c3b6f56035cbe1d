"""clerk._jsoncheck: the plain-types fast path gives exactly the walk's answer."""

from __future__ import annotations

import enum
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._jsoncheck import MAX_DEPTH, _walk, json_problem


class _Int(enum.IntEnum):
    A = 1


class _Str(str):
    pass


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([_Int.A, _Str("s"), b"x", (1, 2), {1, 2}, frozenset(), 1j, math.nan]))
_keys = st.one_of(st.text(max_size=3), st.integers(), st.sampled_from([_Str("k"), None]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_keys, inner, max_size=4),
                            st.tuples(inner)),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_fast_path_agrees_with_the_walk(value: Any) -> None:
    assert json_problem(value) == _walk(value, "state")


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_limit_is_the_walks() -> None:
    for depth in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
        assert json_problem(_nested(depth)) == _walk(_nested(depth), "state")
    assert json_problem(_nested(MAX_DEPTH)) is None
    assert "nested deeper" in (json_problem(_nested(MAX_DEPTH + 1)) or "")


def test_plain_states_pass_and_problems_are_named() -> None:
    assert json_problem({"a": [1, 2.5, "x", None, True, {"b": []}]}) is None
    assert json_problem({"a": [1, (2,)]}) == \
        'state["a"][1]: tuple (JSON would bring it back as a list)'
    assert json_problem({"a": math.inf}) == 'state["a"]: float inf (not JSON)'
