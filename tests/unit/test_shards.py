"""tools/_shards.py: tools/test's parallel pytest runs balanced by the files' durations."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from _shards import DEFAULT_S, from_durations, shards, weights  # type: ignore[import-not-found]  # noqa: E402


def test_heaviest_first_to_the_lightest_shard_in_the_files_order() -> None:
    w = {"a": 100.0, "b": 60.0, "c": 50.0, "d": 10.0}
    got = shards(["d", "c", "b", "a"], 2, 0.0, w)
    assert got == [["d", "a"], ["c", "b"]]  # 110 against 110, each in the given order
    assert shards(["d", "c", "b", "a"], 2, 0.0, w) == got  # deterministic
    # The head (the foreground's other work) counts in shard 0.
    assert shards(["a", "b"], 2, 500.0, w) == [[], ["a", "b"]]


def test_unknown_files_weigh_the_default_and_every_file_lands_once() -> None:
    files = [f"f{i}" for i in range(9)]
    got = shards(files, 3, 0.0, {})
    assert sorted(sum(got, [])) == files
    assert [len(s) for s in got] == [3, 3, 3] and DEFAULT_S > 0


def test_the_weights_come_from_a_durations_log(tmp_path: Path) -> None:
    log = ("12.50s call     tests/integration/test_x.py::test_a\n"
           "0.50s setup    tests/integration/test_x.py::test_a\n"
           "3.00s call     tests/unit/test_y.py::test_b[1-2]\n"
           "(1 durations < 0.005s hidden.)\n")
    text = from_durations(log)
    path = tmp_path / "durations.txt"
    path.write_text(text)
    assert weights(path) == {"tests/integration/test_x.py": 13.0, "tests/unit/test_y.py": 3.0}
    assert weights(tmp_path / "missing.txt") == {}
