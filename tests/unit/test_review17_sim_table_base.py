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
from tests.unit.test_review15_sim_second_takeover import LONG_S, n3_sends_a_long_run
from tests.unit.test_sim_offer_runs import settle_and_measure

SEEDS = range(12)


def _schedule(seed: int) -> dict[str, Any] | None:
    """The outcome, or None when the schedule did not get there."""
    started = n3_sends_a_long_run(seed)
    if started is None:
        return None
    net, world, run_id = started
    names = [f"n{i}" for i in range(4)]

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
    net.crash("n2")  # before its first table delta: n1's replica is n3's table
    net.run_for(LONG_S + 2.0)
    got = settle_and_measure(net, world, names)
    got["new"] = sorted(m.name for m in net.managers())
    return got


def _outcomes() -> list[tuple[int, dict[str, Any]]]:
    out = [(seed, got) for seed in SEEDS if (got := _schedule(seed)) is not None]
    assert len(out) >= len(SEEDS) // 2, f"only {len(out)} schedules got there"
    return out


@pytest.mark.timeout(300)
def test_the_second_new_manager_moves_the_tables_run_by_its_offset_to_the_tables_manager(
) -> None:
    for seed, got in _outcomes():
        assert got["new"] == ["n1"], (seed, got)
        assert got["overlaps"] == [] and got["repeated"] == [], (seed, got)


@pytest.mark.timeout(300)
def test_moved_by_the_offset_to_the_last_manager_followed_it_overlaps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``table_of`` not taken (the offset to the manager followed last, n2's: 0)."""
    begin = Adoption.begin_activation

    def without(self: Adoption, *args: Any, **kw: Any) -> None:
        kw.pop("table_of", None)
        begin(self, *args, **kw)

    monkeypatch.setattr(Adoption, "begin_activation", without)
    outcomes = _outcomes()
    bad = [seed for seed, got in outcomes if got["overlaps"] or got["repeated"]]
    assert len(bad) >= len(outcomes) // 2, (bad, outcomes)
