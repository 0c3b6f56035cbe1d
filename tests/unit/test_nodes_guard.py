"""``nodes()`` within its time budget (clerk._nodes_guard), with real threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import clerk
from clerk._nodes_guard import AHEAD_MAX_S, AHEAD_STALE_S, NODES_BUDGET_S, NodesGuard
from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(30)

release = threading.Event()


class Default(clerk.Task):
    def execute(self, state: Any) -> Any:
        return state


class FirstOnly(Default):
    def nodes(self, members: list[str]) -> list[str]:
        return members[:1]


class Blocks(Default):
    def nodes(self, members: list[str]) -> list[str]:
        release.wait(10)
        return members[:1]


class Raises(Default):
    def nodes(self, members: list[str]) -> list[str]:
        raise LookupError("no rack map")


calls: list[tuple[str, ...]] = []  # what Counting.nodes() was asked, in order


class Counting(Default):
    def nodes(self, members: list[str]) -> list[str]:
        calls.append(tuple(members))
        return members[-1:]


CLASSES: dict[str, type[clerk.Task]] = {"default": Default, "first": FirstOnly,
                                        "blocks": Blocks, "raises": Raises,
                                        "counting": Counting}


def d(name: str, interval: int = 1000) -> clerk.TaskDef:
    target = f"{__name__}:{CLASSES[name].__qualname__}" if name in CLASSES else f"{name}:X"
    return clerk.TaskDef(name=name, target=target, interval=interval)


@pytest.fixture
def guard() -> Any:
    g = NodesGuard(dict(CLASSES))
    release.clear()
    yield g
    release.set()
    g.close()


def test_a_quick_nodes_decides(guard: NodesGuard) -> None:
    assert guard(d("first"), ["a", "b"]) == ["a"]
    assert guard(d("default"), ["a", "b"]) == ["a", "b"]
    assert not guard.overruns


def test_a_slow_nodes_falls_back_to_every_member_within_the_budget(
        guard: NodesGuard, caplog: pytest.LogCaptureFixture) -> None:
    t0 = time.monotonic()
    assert guard(d("blocks"), ["a", "b"]) == ["a", "b"]
    waited = time.monotonic() - t0
    assert NODES_BUDGET_S <= waited < NODES_BUDGET_S + 0.5
    assert guard.overruns["blocks"] == 1
    assert "task=blocks nodes() took over 20 ms" in caplog.text
    # Still running: the next slot does not start a second call, nor wait for it.
    t0 = time.monotonic()
    assert guard(d("blocks"), ["a", "b"]) == ["a", "b"]
    assert time.monotonic() - t0 < NODES_BUDGET_S
    assert guard.overruns["blocks"] == 2
    # Another task is not held up by the hung one.
    assert guard(d("first"), ["a", "b"]) == ["a"]
    release.set()
    wait_until(guard._pending["blocks"].done, timeout=5)  # the released call ends
    assert guard(d("blocks"), ["a", "b"]) == ["a"]
    assert guard.overruns["blocks"] == 2


def test_a_raising_nodes_reaches_the_scheduler(guard: NodesGuard) -> None:
    with pytest.raises(LookupError, match="no rack map"):
        guard(d("raises"), ["a"])


def test_a_task_the_manager_has_not_loaded(guard: NodesGuard) -> None:
    # Importable here: its own nodes() decides.
    other = clerk.TaskDef(name="other", target=f"{__name__}:FirstOnly", interval=1000)
    assert guard(other, ["a", "b"]) == ["a"]
    # Not importable on the manager (new code elsewhere only): every member that has it.
    new = clerk.TaskDef(name="new", target="not_deployed_here.tasks:New", interval=1000)
    assert guard(new, ["a", "b"]) == ["a", "b"]
    assert "cannot be imported" in guard.unavailable["new"]


def test_the_next_runs_nodes_is_asked_ahead_and_used_when_the_members_are_the_same() -> None:
    """A 1 s task: run 1 asks (and waits); run 2's answer was asked as run 1's came in, so
    run 2 finds it ready; each run gets one answer; changed members are asked again."""
    now = [100.0]
    guard = NodesGuard(dict(CLASSES), clock=lambda: now[0])
    calls.clear()
    try:
        assert guard(d("counting"), ["a", "b"]) == ["b"]
        time.sleep(0.05)
        assert calls == [("a", "b")]  # nothing asked ahead before the loop's dispatches went
        guard.ask_ahead()
        wait_until(lambda: len(calls) == 2, timeout=5)  # run 2's call, asked ahead
        assert calls == [("a", "b"), ("a", "b")]
        now[0] += 1.0
        assert guard(d("counting"), ["a", "b"]) == ["b"]  # the answer asked ahead
        guard.ask_ahead()
        wait_until(lambda: len(calls) == 3, timeout=5)  # and run 3's, asked ahead in turn
        time.sleep(0.05)
        assert len(calls) == 3  # one call per run, no more
        # A member joined: the answer asked ahead (for a, b) is not this run's.
        assert guard(d("counting"), ["a", "b", "c"]) == ["c"]
        assert calls[3] == ("a", "b", "c")
        guard.ask_ahead()
        wait_until(lambda: len(calls) == 5, timeout=5)
        # Asked ahead too long ago (a paused loop, a late tick): asked again.
        now[0] += AHEAD_STALE_S + 0.1
        assert guard(d("counting"), ["a", "b", "c"]) == ["c"]
        assert len(calls) == 6
        guard.ask_ahead()
        wait_until(lambda: len(calls) == 7, timeout=5)
        assert not guard.overruns
    finally:
        guard.close()


def test_a_longer_interval_is_not_asked_ahead() -> None:
    guard = NodesGuard(dict(CLASSES))
    calls.clear()
    try:
        slow = d("counting", interval=int(AHEAD_MAX_S * 1000) + 1)
        assert guard(slow, ["a", "b"]) == ["b"]
        guard.ask_ahead()
        time.sleep(0.1)
        assert calls == [("a", "b")]
        assert guard(slow, ["a", "b"]) == ["b"]
        assert calls == [("a", "b")] * 2
    finally:
        guard.close()


def test_keeps_says_which_tasks_get_the_members_as_asked(guard: NodesGuard) -> None:
    # No nodes() of its own, or not loadable here: the members as they are (the scheduler
    # then neither calls the guard nor checks its answer); its own nodes(): asked.
    assert guard.keeps(d("default"))
    assert not guard.keeps(d("first"))
    assert guard.keeps(clerk.TaskDef(name="new", target="not_deployed_here.tasks:New",
                                     interval=1000))
    # A new definition of a task (another target) is looked at again.
    assert not guard.keeps(clerk.TaskDef(name="default", target=f"{__name__}:FirstOnly",
                                         interval=1000))
    assert guard(d("default"), ["a", "b"]) == ["a", "b"]
