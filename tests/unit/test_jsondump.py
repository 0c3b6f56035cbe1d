"""clerk._jsondump: the encoders made once write the standard encoder's text exactly."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from clerk._jsondump import encoder

_OPTIONS: list[dict[str, Any]] = [
    {}, {"allow_nan": False}, {"ensure_ascii": False, "allow_nan": False},
    {"sort_keys": True}, {"separators": (", ", ": ")},
    {"separators": (", ", ": "), "allow_nan": False},
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(10**20), 10**20)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e-300, 1e300, 0.1, -2.5, rng.random() * 1e6])
    if kind in (3, 4, 5):
        return "".join(rng.choice('ab"\\\n\té€😀\x00/') for _ in range(rng.randrange(8)))
    if kind in (6, 7):
        return {str(_value(rng, 9)): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


@pytest.mark.parametrize("options", _OPTIONS)
def test_the_text_is_the_standard_encoders(options: dict[str, Any]) -> None:
    fast = encoder(**options)
    std = json.JSONEncoder(**{"separators": (",", ":"), **options}).encode  # (compact unless told)
    rng = random.Random(11)
    for _ in range(2000):
        value = _value(rng)
        assert fast(value) == std(value)


def test_what_json_cannot_carry_fails_as_before() -> None:
    strict = encoder(allow_nan=False)
    for bad in (math.nan, math.inf, [1, -math.inf], {"a": math.nan}):
        with pytest.raises(ValueError):
            strict(bad)
    assert encoder()(math.nan) == "NaN"  # allowed when asked, like json.dumps
    with pytest.raises(TypeError, match="not JSON serializable"):
        strict({"a": object()})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(RecursionError):  # (no circular check: see the module docstring)
        strict(loop)
