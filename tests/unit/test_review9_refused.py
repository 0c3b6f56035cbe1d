"""The manager's rate limit on refused runs' WARNINGs (``ResultRouting._log_finished``) is
for stale refusals, which the node logged already and which an overloaded cluster makes by
the hundred a second. A run refused for another reason (its node is leaving, the node has no
record of it: its EXECUTE was lost with the previous manager, or it is not from the manager
the node follows) is rare, logged nowhere else, and stays a WARNING each, also within a
second of a stale one (README: "The manager's line for each run so refused")."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from clerk._dispatch import Finished
from clerk._routing import STALE_LOG_S
from tests.unit.test_routing_order import _Agent, _Runner

pytestmark = pytest.mark.timeout(30)


def test_a_refusal_that_is_not_stale_is_a_warning_within_a_stale_burst(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = [100.0]
    runner = _Runner(_Agent([]))
    runner.agent.clock = SimpleNamespace(monotonic=lambda: clock[0])  # type: ignore[attr-defined]
    runner.agent.metrics = SimpleNamespace(  # type: ignore[attr-defined, assignment]
        observe_run=lambda *a: None)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    others = ["node is leaving",
              "node b has no record of run r9 (its EXECUTE was lost with the previous manager)",
              "not from the manager this node follows"]
    with caplog.at_level(logging.INFO, logger="clerk.tasks"):
        for slot in range(20):
            runner._log_finished(Finished("t", f"r{slot}", slot, "n1", "refused", 0.0,
                                          "stale: reached the node 3.1 s late"))
            clock[0] += STALE_LOG_S / 100
        assert len(warnings()) == 1
        for slot, why in enumerate(others, 50):
            runner._log_finished(Finished("u", f"r{slot}", slot, "n2", "refused", 0.0, why))
        lines = warnings()
        assert len(lines) == 4, lines
        for line, why in zip(lines[1:], others, strict=True):
            assert why.split(" (")[0] in line
        # The stale ones still counted, into the next stale line.
        clock[0] += STALE_LOG_S
        runner._log_finished(Finished("t", "r99", 99, "n1", "refused", 0.0, "stale: late"))
        lines = warnings()
    assert len(lines) == 5 and "slot=99 " in lines[4] and "and 19 more" in lines[4], lines


def test_runs_refused_as_held_back_share_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    """A task that kills its worker every 100 ms is held back on its node
    (clerk._workerdeaths) and has ~10 runs refused a second: a WARNING per run on the manager
    was ~10 lines a second. They share the stale refusals' limit."""
    from clerk._workerdeaths import WorkerDeaths

    clock = [100.0]
    runner = _Runner(_Agent([]))
    runner.agent.clock = SimpleNamespace(monotonic=lambda: clock[0])  # type: ignore[attr-defined]
    runner.agent.metrics = SimpleNamespace(  # type: ignore[attr-defined, assignment]
        observe_run=lambda *a: None)
    deaths = WorkerDeaths(10, 60.0)
    deaths.died_in_run("poison", 0.0, "exit code 1")
    why = deaths.holding("poison", 0.1)
    assert why, "the task is held back"
    with caplog.at_level(logging.INFO, logger="clerk.tasks"):
        for slot in range(20):
            runner._log_finished(Finished("poison", f"r{slot}", slot, "n1", "refused", 0.0,
                                          f"not started: {why}"))
            clock[0] += STALE_LOG_S / 100
        clock[0] += STALE_LOG_S
        runner._log_finished(Finished("poison", "r99", 99, "n1", "refused", 0.0,
                                      f"not started: {why}"))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert "held back" in lines[0] and "and 19 more" in lines[1], lines
