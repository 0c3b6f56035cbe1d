"""A RESULT for a run the new manager's table never showed (clerk._running, base_tag)."""

from __future__ import annotations

from clerk._dispatch import Dispatch
from clerk._running import base_tag, dispatching_claim
from clerk._schedule import Scheduler
from tests.unit.test_schedule import NODES, K, due, run_ok, sched, started


def _lost_dispatch() -> tuple[Scheduler, Scheduler, Dispatch]:
    """The old manager dispatched slot K+2 from state n=1 and died before any member's
    replica showed it: the new manager loaded the table from before that dispatch."""
    old = started(sched(seed=1), due("t", K) + 0.1)
    run_ok(old, K + 1, state={"n": 1})
    table = old.table()
    ds, _ = old.tick(due("t", K + 2), NODES)
    new = sched(seed=2)
    new.load(table)
    new.activate(due("t", K + 2) + 0.05, graceful=False)
    return old, new, ds[0]


def test_the_run_id_names_the_state_the_run_started_from() -> None:
    old, _, d = _lost_dispatch()
    rec = old.records["t"]
    assert d.run_id.endswith(base_tag(rec))
    assert base_tag(rec).startswith(f"~{rec.version}.")
    fresh = sched(seed=3)
    assert base_tag(fresh.records["t"]) == "~init"


def test_a_result_that_continues_the_row_is_applied() -> None:
    _, new, d = _lost_dispatch()
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                        due("t", K + 2) + 0.1, slot=d.slot)
    assert fin is not None and fin.outcome == "ok"
    rec = new.records["t"]
    assert rec.state == {"n": 2} and rec.slot == K + 2 and rec.running is None
    assert rec.conflicts == 0
    # A resend of it is of no use now (the row holds that slot).
    again = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                          due("t", K + 2) + 0.2, slot=d.slot)
    assert again is None and rec.state == {"n": 2}


def test_without_its_slot_it_is_dropped_as_before() -> None:
    _, new, d = _lost_dispatch()
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 2) + 0.1) is None


def test_a_result_from_another_state_is_dropped_and_counted() -> None:
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    forged = d.run_id.rsplit("~", 1)[0] + f"~{rec.version + 5}.00000000"
    assert new.on_result("t", forged, d.node, "ok", {"n": 9}, 1.0, "",
                         due("t", K + 2) + 0.1, slot=d.slot) is None
    assert rec.state == {"n": 1} and rec.conflicts == 1
    assert new.conflicts_out and "does not hold" in new.conflicts_out[-1].lost


def test_not_while_a_run_is_in_flight_and_not_for_an_old_slot() -> None:
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    ds, _ = new.tick(due("t", K + 4), NODES)
    assert ds and rec.running is not None
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 4) + 0.1, slot=d.slot) is None
    assert rec.state == {"n": 1}
    # Its update is lost (the run in flight started from n=1): counted, not silent, and
    # once, however often its node resends it before the ACK.
    assert rec.conflicts == 1 and "a later slot" in new.conflicts_out[-1].lost
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 4) + 0.2, slot=d.slot) is None
    assert rec.conflicts == 1
    # A resend of a run the row already holds is no conflict.
    assert new.on_result("t", "t/1/x~old", d.node, "ok", {"n": 0}, 1.0, "",
                         due("t", K + 4) + 0.3, slot=K) is None
    assert rec.conflicts == 1
    for outcome in ("error", "timeout", "refused"):
        _, other, d2 = _lost_dispatch()
        assert other.on_result("t", d2.run_id, d2.node, outcome, None, 1.0, "x",
                               due("t", K + 2) + 0.1, slot=d2.slot) is None


def test_a_result_for_a_dispatch_an_offer_carried_without_its_run_is_applied() -> None:
    """CI found this: the successor's table lacked the dispatch of K+2; a member's OFFER
    brought the row with ``dispatched`` = K+2 but (as every OFFER) no run in flight, and the
    merge kept that ``dispatched``. The member's RESULT for K+2, resent to the successor, was
    then taken for "an old run the row already holds" and dropped: the next run started from
    the state before it (the count repeated)."""
    old, new, d = _lost_dispatch()
    row = old.table()["tasks"]["t"]
    row["running"] = None  # (what Replication._offer sends)
    assert row["dispatched"] == d.slot
    new.merge({"tasks": {"t": row}}, due("t", K + 2) + 0.06, source="n2")
    rec = new.records["t"]
    assert rec.dispatched == d.slot and rec.running is None and rec.slot < d.slot
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                        due("t", K + 2) + 0.1, slot=d.slot)
    assert fin is not None and fin.outcome == "ok"
    assert rec.state == {"n": 2} and rec.slot == d.slot and rec.conflicts == 0


def _old_manager() -> Scheduler:
    """A manager under claim (1, "old") whose task "t" ran once (state n=1, slot K+1)."""
    old = started(sched(seed=1), due("t", K) + 0.1)
    old.claim = (1, "old")
    run_ok(old, K + 1, state={"n": 1})
    return old


def _both_apply(sender: Scheduler, new: Scheduler, d: Dispatch) -> float:
    """The run's result (n=2) reaches the manager that sent it and, unseen, a new one."""
    at = due("t", K + 2) + 0.1
    assert sender.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", at) is not None
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "", at,
                         slot=d.slot) is not None
    return at


def test_it_is_recorded_in_the_rows_branch_so_the_old_managers_copy_is_the_same() -> None:
    """The old manager applied the same result and replicated it to some member; that copy
    meets the new manager's later (an OFFER, its data directory). Both record the update in
    the branch the old manager had been updating (the row's last): equal records, no
    conflict, and a run started from the old manager's copy continues the new manager's row.
    (Recorded under the new manager's own claim, as before, the two were two branches at one
    version: a conflict, and that next run's result dropped as from a foreign state.)"""
    old = _old_manager()
    table = old.table()
    ds, _ = old.tick(due("t", K + 2), NODES)
    d = ds[0]
    new = sched(seed=2)
    new.load(table)
    new.activate(due("t", K + 2) + 0.05, graceful=False, claim=(2, "new"))
    at = _both_apply(old, new, d)
    theirs, mine = old.records["t"], new.records["t"]
    assert mine.history == theirs.history and mine.version == theirs.version
    assert base_tag(mine) == base_tag(theirs)
    new.merge(old.table(), at + 0.01, source="old")
    mine = new.records["t"]
    assert mine.conflicts == 0 and mine.state == {"n": 2} and not new.conflicts_out
    # The old manager's next dispatch (its copy's base) continues the new manager's row.
    ds, _ = old.tick(due("t", K + 3), NODES)
    assert ds and ds[0].run_id.endswith(base_tag(mine))


def test_the_first_run_a_manager_sent_of_a_task_is_recorded_in_that_managers_branch() -> None:
    """The run id names the claim that dispatched it: a new manager that never saw the run
    records its update in the dispatching manager's branch even when that run opened the
    branch (its first of the task), so the copies agree and the next run continues."""
    old = _old_manager()
    mid = sched(seed=4)  # took over from the old one's table; its first run of "t" is K+2
    mid.load(old.table())
    mid.activate(due("t", K + 1) + 0.1, graceful=True, claim=(2, "mid"))
    table = mid.table()
    ds, _ = mid.tick(due("t", K + 2), NODES)
    d = ds[0]
    assert dispatching_claim(d.run_id) == (2, "mid")
    new = sched(seed=2)  # replica from before mid's dispatch
    new.load(table)
    new.activate(due("t", K + 2) + 0.05, graceful=False, claim=(3, "new"))
    _both_apply(mid, new, d)
    assert new.records["t"].history == mid.records["t"].history == [[1, "old", 0],
                                                                     [2, "mid", 1]]
    assert base_tag(new.records["t"]) == base_tag(mid.records["t"])


def test_a_run_id_of_an_older_build_names_no_claim_and_goes_in_the_rows_last_branch() -> None:
    assert dispatching_claim("0a1b2c3d-7~3.00ff00ff") is None
    assert dispatching_claim("0a1b2c3d-7/12/a-1@host.example~init") == (12, "a-1@host.example")
    old, new, d = _lost_dispatch()
    legacy = d.run_id.split("/", 1)[0] + "~" + d.run_id.rsplit("~", 1)[1]
    assert dispatching_claim(legacy) is None and legacy.endswith(base_tag(new.records["t"]))
    tip = new.records["t"].history[-1][:2]
    assert new.on_result("t", legacy, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 2) + 0.1, slot=d.slot) is not None
    assert new.records["t"].history[-1][:2] == tip


def test_the_tag_is_the_checksum_of_the_lineage_json_whatever_is_cached() -> None:
    """base_tag looks a lineage's checksum up (clerk._running._CRCS): each tag is still the
    checksum of that row's own ``[origin, last branch]`` JSON, also for values that compare
    equal as keys but encode differently (1, 1.0, True), for keys in another order, and
    after a branch or an origin changes."""
    import json
    import zlib

    from clerk._record import TaskRecord

    def plain(rec: TaskRecord) -> str:
        branch = rec.history[-1] if rec.history else None
        text = json.dumps([rec.origin, branch], sort_keys=True, separators=(",", ":"))
        return f"~{rec.version}.{zlib.crc32(text.encode()):08x}"

    shapes: list[tuple[object, list[list[object]]]] = [
        ({"term": 3, "node": "n1@h", "time": 17}, [[3, "n1@h", 0]]),
        ({"term": 3.0, "node": "n1@h", "time": 17}, [[3, "n1@h", 0]]),
        ({"term": True, "node": "n1@h", "time": 17}, [[3, "n1@h", 0]]),
        ({"term": 3, "node": "n1@h", "time": 17}, [[True, "n1@h", 0]]),
        ({"term": 3, "node": "n1@h", "time": 17}, [[3.0, "n1@h", 0]]),
        ({"time": 17, "node": "n1@h", "term": 3}, [[3, "n1@h", 0]]),
        ({"term": 3, "node": "n1@h", "time": 17}, [[3, "n1@h", 0], [4, "n2@h", 9]]),
        ({"term": 3, "node": "n1@h", "time": 17}, []),
        ({"term": [3], "node": "n1@h"}, [[3, "n1@h", 0]]),
    ]
    tags = set()
    for _ in range(2):  # the second pass answers from the cache
        for origin, history in shapes:
            rec = TaskRecord(state=1, has_state=True, version=5, origin=origin,  # type: ignore[arg-type]
                             history=history)
            assert base_tag(rec) == plain(rec)
            tags.add(base_tag(rec))
    assert len(tags) == len(shapes) - 1  # only the reordered keys give the same JSON
    rec = TaskRecord(state=1, has_state=True, version=5, origin=None, history=[])
    assert base_tag(rec) == plain(rec)


def test_an_old_slot_the_row_never_saw_end_is_counted_a_resend_is_not() -> None:
    """The successor, unaware of K+2's run, went on with later slots, which finished before
    K+2's result came (a run that outlasted the failover): the row's slot is past K+2, its
    history shows no K+2, so the update is lost: counted once, never silent. A resend of a
    slot the history shows is harmless."""
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    for k in (K + 4, K + 5):
        ds, _ = new.tick(due("t", k), NODES)
        assert ds and ds[0].slot == k
        assert new.on_result("t", ds[0].run_id, ds[0].node, "ok", {"n": 7}, 1.0, "",
                             due("t", k) + 0.01) is not None
    assert rec.slot == K + 5 and rec.conflicts == 0
    assert any(e[0] == K + 1 for e in rec.run_history)
    for _ in range(2):  # its node resends it until the ACK: counted once
        assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                             due("t", K + 5) + 0.1, slot=d.slot) is None
    assert rec.conflicts == 1 and "later slots" in new.conflicts_out[-1].lost
    assert rec.state == {"n": 7}
    assert new.on_result("t", "t/1/x~old", d.node, "ok", {"n": 1}, 1.0, "",
                         due("t", K + 5) + 0.2, slot=K + 1) is None
    assert rec.conflicts == 1


def test_an_old_slot_after_only_skipped_slots_is_applied() -> None:
    """No node had the task while K+2's result was on its way (the only node that has it
    left with the run going; the nodes that came back skipped its slots): the row's slot is
    past K+2 but no later slot was sent, so nothing started from the state K+2 continues.
    Its result is applied, the row's slot stays (nothing is sent again), and the next slot
    starts from it. Before, dropped and counted "later slots of the task ran meanwhile": the
    update lost (tests/integration/test_last_node_up_leaves.py)."""
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    for k in (K + 4, K + 5):
        ds, fins = new.tick(due("t", k), {})
        assert not ds and [f.outcome for f in fins] == ["skipped"]
    assert rec.slot == K + 5 and rec.dispatched < K + 2
    fin = new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                        due("t", K + 5) + 0.1, slot=d.slot)
    assert fin is not None and fin.outcome == "ok"
    assert rec.state == {"n": 2} and rec.slot == K + 5 and rec.conflicts == 0
    assert [e[0] for e in rec.run_history.entries][-1] == K + 2
    ds, _ = new.tick(due("t", K + 6), NODES)
    assert [x.slot for x in ds] == [K + 6] and ds[0].state == {"n": 2}
    # A resend of it now: harmless, as any result the history shows.
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 6) + 0.1, slot=d.slot) is None
    assert rec.conflicts == 0


def test_an_old_slot_after_a_later_slot_was_sent_is_still_dropped() -> None:
    """A later slot was sent (it may have run, from the state K+2 started from) and ended
    without a result here: K+2's result is dropped and counted, as before; and so is one that
    does not continue the row, after skipped slots only."""
    _, new, d = _lost_dispatch()
    rec = new.records["t"]
    ds, _ = new.tick(due("t", K + 4), NODES)
    assert ds
    new.on_result("t", ds[0].run_id, ds[0].node, "error", None, 1.0, "boom",
                  due("t", K + 4) + 0.01)
    assert rec.slot == K + 4 and rec.running is None and rec.dispatched == K + 4
    assert new.on_result("t", d.run_id, d.node, "ok", {"n": 2}, 1.0, "",
                         due("t", K + 4) + 0.1, slot=d.slot) is None
    assert rec.conflicts == 1 and rec.state == {"n": 1}
    _, other, d2 = _lost_dispatch()
    rec2 = other.records["t"]
    other.tick(due("t", K + 4), {})
    forged = d2.run_id.rsplit("~", 1)[0] + f"~{rec2.version + 5}.00000000"
    assert other.on_result("t", forged, d2.node, "ok", {"n": 9}, 1.0, "",
                           due("t", K + 4) + 0.1, slot=d2.slot) is None
    assert rec2.conflicts == 1 and rec2.state == {"n": 1}
