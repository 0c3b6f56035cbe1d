"""review17 in the simulator: two crash takeovers in a row, the run in flight this time in the
first manager's *table*. n3 (its clock right) dispatches a run that runs long and replicates it
(n1's replica shows the run, in n3's time base) before it crashes; n2 (3 s ahead, as every
other node) takes over, moves the table's run by its offset to n3 (right) and crashes before
its table reaches n1 (its deltas to n1 are cut); n1 takes over from n3's table. Before, it moved
the table's rows by its offset to n2, the manager it followed last (0): the run read 3 s early,
timed out while it ran, and the next slot went beside it (the member's OFFER shows the right
times, but the table's row is kept): 6 of 12 seeds got there, each with 26 runs beside and a
count repeated; now none. The node knows whose table its replica holds
(``CoreState.table_from``) and moves the rows by its offset to that one (``table_of``)."""

from __future__ import annotations

from typing import Any

import pytest

from clerk._adopt import Adoption
from clerk._simtasks import LEDGER
from tests.unit.test_review15_sim_second_takeover import (
    LONG_S,
    assert_kept,
    assert_mostly_overlapped,
    crash_n2_and_measure,
    n3_sends_a_long_run,
    outcomes,
)

SEEDS = range(12)


def _schedule(seed: int) -> dict[str, Any] | None:
    """The outcome, or None when the schedule did not get there."""
    started = n3_sends_a_long_run(seed)
    if started is None:
        return None
    net, world, run_id = started

    def replicated() -> bool:  # n1's replica holds the run, caught up on n3's log
        table = net.nodes["n1"].core.replicated
        row = (table or {}).get("tasks", {}).get(LEDGER) or {}
        running = row.get("running") if isinstance(row, dict) else None
        return isinstance(running, dict) and str(running.get("run")) == run_id

    net.run_until_true(replicated, limit=1.0, step=0.0005)
    if not replicated() or net.nodes["n1"].core.table_from != "n3":
        return None
    log3 = net.nodes["n1"].core.replica.log
    # n2's table deltas to n1 are lost (as when n2 dies before its first one reaches n1, or
    # mid-way through a large table's): its heartbeats' clock stamps still reach n1.
    net.cut_where(lambda src, dst, msg: src == "n2" and dst == "n1"
                  and getattr(msg, "table", None) is not None)
    net.crash("n3")
    n1 = net.nodes["n1"].core

    def follows_n2() -> bool:  # n1 took n2's clock stamps, or n2's table came
        return n1.clock_skew.source.startswith("n2/") or n1.replica.log != log3

    net.run_until_true(follows_n2, limit=LONG_S / 2, step=0.0001)
    if n1.replica.log != log3 or not n1.clock_skew.source.startswith("n2/"):
        return None
    # (before its first table delta: n1's replica is n3's table)
    return crash_n2_and_measure(net, world)


def _outcomes() -> list[tuple[int, dict[str, Any]]]:
    return outcomes(_schedule, SEEDS)


@pytest.mark.timeout(300)
def test_the_second_new_manager_moves_the_tables_run_by_its_offset_to_the_tables_manager(
) -> None:
    assert_kept(_outcomes())


@pytest.mark.timeout(300)
def test_moved_by_the_offset_to_the_last_manager_followed_it_overlaps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``table_of`` not taken (the offset to the manager followed last, n2's: 0)."""
    begin = Adoption.begin_activation

    def without(self: Adoption, *args: Any, **kw: Any) -> None:
        kw.pop("table_of", None)
        begin(self, *args, **kw)

    monkeypatch.setattr(Adoption, "begin_activation", without)
    assert_mostly_overlapped(_outcomes())
