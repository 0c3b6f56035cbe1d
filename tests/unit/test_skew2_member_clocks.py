"""skew2: the manager's ``member_clocks`` lists the members it holds alive: a member declared
dead kept its last offset there (as if it still ran at it) until it was removed, and shows
again only with an ACK after it came back."""

from __future__ import annotations

import pytest

from clerk._clockskew import CLOCK_MARK

from .corenet import Net

WALL0 = 1_800_000_000.0


@pytest.mark.timeout(30)
def test_a_dead_members_clock_leaves_member_clocks() -> None:
    net = Net()
    a = net.node("a", 9, incarnation="a-1" + CLOCK_MARK)
    b = net.node("b", 1, seeds=["a"], incarnation="b-1" + CLOCK_MARK)
    c = net.node("c", 1, seeds=["a"], incarnation="c-1" + CLOCK_MARK)
    a.wall_ms = lambda: int((WALL0 + net.now) * 1000)
    b.wall_ms = lambda: int((WALL0 + net.now - 2.0) * 1000)
    c.wall_ms = lambda: int((WALL0 + net.now + 0.5) * 1000)
    net.advance(2.0)
    clocks = a.status()["member_clocks"]
    assert set(clocks) == {"b", "c"}, clocks
    net.crash(b)  # (its socket closes: the manager marks it dead at once, removes it later)
    net.advance(0.5)
    rows = {m["name"]: m["alive"] for m in a.status()["members"]}
    assert rows == {"a": True, "b": False, "c": True}, rows
    clocks = a.status()["member_clocks"]
    assert set(clocks) == {"c"}, clocks
    row = a.members.get("b")
    assert row is not None and row.clock_ms is None
