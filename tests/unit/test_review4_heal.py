"""Review of healgap (``Scheduler.handed_over_by``): a merge HANDOVER from the manager a stale
takeover followed ends its wait for the members' OFFERs, on the ground that "its members' rows
came from its replication". That holds only if the followed manager's table was complete. When
the followed manager was itself a ``stale`` takeover still waiting for a member's OFFER, its
table lacks that member's newer rows, and so does its HANDOVER.

The case, on the simulated network (4 nodes, ledger task every 200 ms):

1. n3 manages; its table deltas to n2 and n0 are lost for 0.5 s (their replicas lag; n1's
   holds the newest counter). n3 crashes.
2. n2 takes over (stale); n1's OFFER to it is slow (it would come after 5 s, within the
   10 s hold). n0 follows n2 (``followed = "n2"``).
3. n0 is split off and takes over (stale, higher term); n1's OFFERs to anyone arrive late
   (0.5 s), as over a connection ZeroMQ re-establishes after its back-off.
4. The split heals: n0 wins, n2 steps down and hands its table (without n1's rows) to n0.

Before healgap, n0 waited for n1's OFFER (~0.6 s) and went on from n1's counter. With it, n2's
HANDOVER ends n0's wait at once and n0 runs from its own older counter: the dead manager's last
updates, which a live member held, are dropped (counted as a conflict when n1's OFFER is
merged) in a cluster that is connected again. ``handover_ends_wait=False`` is the old rule.

A second case (``test_a_reclaim_waits_for_its_own_members_offers_after_a_heal``): ``followed``
is the last manager this node followed, and is kept after the node becomes the manager itself.
n1 takes over from n3 in a split, wins the heal, and manages everyone; in a second split n3
manages its side again. n1 sends a run to n0 (it runs long) and, inside the replication hold,
re-claims (a higher-term ELECTION): its reload forgets the run and, ``stale``, it waits for its
members' OFFERs, which list it. The second split heals and n3 hands its table to n1: n3 is
still n1's ``followed``, so its HANDOVER ends the wait, and n1 sends the next slots beside n0's
run still going (the task overlaps itself, one manager, after the merge). Before healgap n1
waited for n0's OFFER and adopted the run.

Fixed: the HANDOVER's row set says which members its sender's table covers (the live members
whose OFFER it merged, or that a HANDOVER it took this way covered: :mod:`clerk._covers`); the
winner counts those as offered, and waits for the others' OFFERs (here n1's: n2 was still
waiting for it). An older build's HANDOVER says nothing: the winner waits, the old rule. And
a claim again while managing clears ``followed`` (the real runner and the simulator): the
second case. Both tests fail on the code before their fix and pass with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from clerk._messages import Election, Heartbeat, Message, Offer
from clerk._simtasks import LEDGER, SimLedger
from tests.unit.test_sim_cover_heal import _slow_offers
from tests.unit.test_sim_resultacks import ledger_cluster


def _counter(world: SimLedger, name: str) -> int:
    rec = world.layers[name].scheduler.records.get(LEDGER)
    return int(rec.state) if rec is not None and rec.has_state else -1


def _stale_handover(seed: int, handover_ends_wait: bool) -> tuple[int, int | None]:
    """Returns (the best counter a live node held at the merge, the counter the winner's
    first run after the merge started from; None: no run within 2 s)."""
    net, world, names = ledger_cluster(seed, 4, handover_ends_wait=handover_ends_wait)
    assert [m.name for m in net.managers()] == ["n3"], net.summary()
    lag = {"n2", "n0"}
    net.cut_where(lambda s, d, msg: s == "n3" and d in lag and isinstance(msg, Heartbeat))
    net.run_for(0.5)
    net.crash("n3")
    net.cuts.clear()
    passing: set[int] = set()

    def slow_offers(src: str, dst: str, msg: Message) -> bool:
        """n1's OFFERs arrive late: to n2 after 5 s, to anyone else after 0.5 s."""
        if src != "n1" or not isinstance(msg, Offer) or id(msg) in passing:
            return False
        passing.add(id(msg))
        address = net.nodes[dst].address
        net.at(net.now + (5.0 if dst == "n2" else 0.5),
               lambda: net.send("n1", address, msg))
        return True

    net.cut_where(slow_offers)
    assert net.run_until_true(
        lambda: [m.name for m in net.managers()] == ["n2"]
        and world.layers["n2"].scheduler.active, limit=5.0, step=0.005) is not None
    net.partition(["n0"], ["n1", "n2"])
    net.cuts.append(slow_offers)
    assert net.run_until_true(
        lambda: len(net.managers()) == 2 and world.layers["n0"].scheduler.active,
        limit=5.0, step=0.005) is not None, net.summary()
    sched = world.layers["n0"].scheduler
    assert sched.stale and sched.followed == "n2"
    net.heal()
    net.cut_where(slow_offers)

    def merged() -> bool:
        ms, core = net.managers(), net.nodes["n2"].core
        return (len(ms) == 1 and world.layers[ms[0].name].scheduler.active
                and core.manager_claim is not None
                and core.manager_claim.name == ms[0].name and not core._merge_out)

    at = net.run_until_true(merged, limit=5.0, step=0.005)
    assert at is not None, net.summary()
    winner = net.managers()[0].name
    assert winner == "n0"
    best = max(_counter(world, x) for x in names if x != "n3")
    net.run_for(2.0)
    after = float(at) + world.lead_ms / 1000
    first = [r for r in world.runs if r.manager == winner and r.at >= after]
    return best, first[0].before if first else None


@pytest.mark.parametrize("seed", [0, 1])
def test_the_old_rule_waits_for_the_members_offer_and_keeps_its_update(seed: int) -> None:
    best, before = _stale_handover(seed, handover_ends_wait=False)
    assert before is not None and before >= best, (best, before)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_handover_from_a_stale_followed_manager_does_not_end_the_wait(seed: int) -> None:
    best, before = _stale_handover(seed, handover_ends_wait=True)
    assert before is not None and before >= best, (
        f"the winner's first run after the merge started from {before}; live member n1 "
        f"held {best} (the dead manager's last updates)")


def _slow_offers_from(net: Any, src: str, delay: float) -> Any:
    """A cut that holds back ``src``'s OFFERs for ``delay`` s (a connection re-established
    after its back-off), then delivers them."""
    return _slow_offers(net, src, "", delay, delay)


def _reclaim_then_heal(seed: int, handover_ends_wait: bool,
                      keeps: bool = False) -> tuple[bool, list[int]]:
    """Returns (whether n1's re-claim forgot n0's run, the slots n1 sent after the second
    heal while n0's run was still going). ``keeps`` False: the re-claim reloads from its
    table log, as before clerk._reclaim (the case needs the reload to forget the run)."""
    net, world, _ = ledger_cluster(seed, 4, handover_ends_wait=handover_ends_wait,
                                   replicate_gap_s=0.025, hold_dispatches=True,
                                   reclaim_keeps=keeps)
    world.long_run_s = 1.5
    assert [m.name for m in net.managers()] == ["n3"], net.summary()
    n1 = world.layers["n1"]
    sched = n1.scheduler
    net.partition(["n0", "n1"], ["n2", "n3"])
    assert net.run_until_true(lambda: len(net.managers()) == 2 and sched.active,
                              limit=5.0, step=0.005) is not None, net.summary()
    net.run_for(0.5)
    net.heal()
    assert net.run_until_true(
        lambda: [m.name for m in net.managers()] == ["n1"] and sched.active
        and not sched._disk_held(n1.wall() * 1000), limit=15.0, step=0.005) is not None
    net.run_for(1.0)
    assert sched.followed == "n3"  # (kept since its takeover: n1 has managed since)
    net.partition(["n0", "n1"], ["n2", "n3"])
    assert net.run_until_true(
        lambda: len(net.managers()) == 2 and world.layers["n3"].scheduler.active,
        limit=5.0, step=0.005) is not None, net.summary()

    def sent_to_n0() -> bool:
        run = sched.records[LEDGER].running
        return run is not None and run["node"] == "n0"

    assert net.run_until_true(sent_to_n0, limit=5.0, step=0.0005) is not None
    run = sched.records[LEDGER].running
    assert run is not None
    long_id = str(run["run"])
    world.long_run_ids.add(long_id)
    core, n0 = net.nodes["n1"].core, net.nodes["n0"].core
    slow = _slow_offers_from(net, "n0", 0.8)
    net.cut_where(slow)
    net.send("n0", core.me.address, Election(n0.me, core.term + 5, ""))  # n1 claims again
    net.run_for(0.05)
    assert sched.stale
    forgot = sched.records[LEDGER].running is None
    net.heal()
    healed = net.now
    net.cut_where(slow)
    net.run_for(2.0)
    long = [r for r in world.runs if r.run_id == long_id]
    assert long, "n0's run never started"
    began, ended = long[0].at, long[0].at + long[0].took
    beside = [r.slot for r in world.runs if r.manager == "n1" and r.managers == 1
              and r.at > healed and began < r.at < ended]
    return forgot, beside


@pytest.mark.parametrize("seed", [0, 9])
def test_the_old_rule_waits_for_the_reclaims_offers_after_a_heal(seed: int) -> None:
    forgot, beside = _reclaim_then_heal(seed, handover_ends_wait=False)
    assert forgot and not beside, (forgot, beside)


@pytest.mark.parametrize("seed", [0, 9])
def test_a_reclaim_waits_for_its_own_members_offers_after_a_heal(seed: int) -> None:
    forgot, beside = _reclaim_then_heal(seed, handover_ends_wait=True)
    assert forgot  # (the case: n1's reload forgot n0's run)
    assert not beside, f"n1 sent slots {beside} while n0's run of the task was still going"


@pytest.mark.parametrize("seed", [0, 9])
def test_a_reclaim_that_keeps_its_rows_forgets_nothing_before_the_heal(seed: int) -> None:
    """Since clerk._reclaim the re-claim keeps the run in flight (no wait needed for it)."""
    forgot, beside = _reclaim_then_heal(seed, handover_ends_wait=True, keeps=True)
    assert not forgot and not beside, (forgot, beside)
