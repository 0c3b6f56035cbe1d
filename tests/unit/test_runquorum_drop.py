"""Quorum mode, manager (clerk._runquorum): a write whose own effects end the ballot (this
node's voter answers at once and had promised a newer one, so the manager steps down and
drops its write-ahead) must not crash the loop. It did: the full suite's SIGSTOP test lost an
agent to ``AttributeError: 'NoneType' object has no attribute 'wrote'``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from clerk._runquorum import QuorumWriting
from clerk._writeahead import WriteAhead


class _Runner(QuorumWriting):
    def __init__(self) -> None:
        self.wa = WriteAhead({}, lambda task: None)
        self._uncommitted, self._rows_out, self._results_out = set(), {}, []
        self.agent = SimpleNamespace(  # type: ignore[assignment]
            core=SimpleNamespace(quorum_write=lambda rows, now: ([7], ["accept"])),
            apply=self._apply)

    def _apply(self, effects: list[Any], now: float) -> None:
        self._quorum_drop()  # the own voter's REJECT: stepped down while applying


def test_a_write_that_ends_the_ballot_does_not_crash() -> None:
    runner = _Runner()
    wa = runner.wa
    assert runner._quorum_write({"t": {"reserved": 3}}, 1.0, 100.0) == [7]
    assert runner.wa is None  # dropped; the write went into the old write-ahead
    assert wa is not None and 7 in wa.started


def test_a_flush_that_ends_the_ballot_does_not_crash() -> None:
    runner = _Runner()
    runner._rows_out = {"t": {"reserved": None, "record": {}}}
    runner._results_out = [("fin", "t", None, "r-1")]  # type: ignore[list-item]
    runner._quorum_flush({}, 1.0, 100.0)
    assert runner.wa is None
