"""tests.unit.simdepth: the quick depth runs a third of a test's examples, deep all of them."""

from __future__ import annotations

import pytest

from tests.unit import simdepth


def test_the_depth_is_quick_unless_set_to_deep() -> None:
    assert simdepth.depth({}) == "quick"
    assert simdepth.depth({"CLERK_SIM_DEPTH": ""}) == "quick"
    assert simdepth.depth({"CLERK_SIM_DEPTH": " Deep "}) == "deep"


def test_a_misspelt_depth_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ValueError, match=r"CLERK_SIM_DEPTH='deeep' \(environment\)"):
        simdepth.depth({"CLERK_SIM_DEPTH": "deeep"})


def test_quick_takes_a_third_but_never_fewer_than_the_minimum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simdepth, "DEEP", False)
    assert simdepth.examples(40) == 14
    assert simdepth.examples(12) == simdepth.QUICK_MIN
    assert simdepth.examples(3) == 3
    assert list(simdepth.seeds(range(12))) == [0, 1, 2, 3]
    monkeypatch.setattr(simdepth, "DEEP", True)
    assert simdepth.examples(40) == 40
    assert list(simdepth.seeds(range(12))) == list(range(12))
