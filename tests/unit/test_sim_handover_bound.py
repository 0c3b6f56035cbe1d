"""A graceful hand-over bounds a run on a node the successor does not list the way a crash
takeover does (``UNLISTED_RUN_WAIT_S`` from the takeover: clerk._adoptedruns).

A member leaves with a long run going; its manager removes it at its LEAVE (the run stays
open: a member that leaves finishes its runs and sends their results), then leaves itself
and hands over gracefully; the member then dies before its result. Before, the successor
kept the run open to its deadline (the task's whole ``timeout``: two minutes here, an hour's
on a real cluster, say), holding the task (no next slot beside a run in flight). Now it
times the run out ``UNLISTED_RUN_WAIT_S`` after its takeover; a member that does not die
still gets its result counted (it keeps it ``LEAVE_ACK_WAIT`` from its leave, before the
takeover).

The manager the member left bounds its run the same way, from the LEAVE
(``bound_runs_of``): a member stops a run still going after ``LEAVE_WAIT`` (5 s) and exits
without a result, and before, that manager too kept the run open to its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clerk._adoptedruns import UNLISTED_RUN_WAIT_S, bounded_at_takeover
from clerk._simnet import SimNetwork
from clerk._simtasks import LEAVE_WAIT_S, LEDGER, SimLedger
from tests.unit.simcluster import ledger_started
from tests.unit.simdepth import seeds
from tests.unit.test_sim_offer_runs import after_a_fresh_dispatch

TIMEOUT_MS = 120_000
LONG_S = 3.0


@dataclass
class Outcome:
    run_id: str
    takeover: float  # when the successor scheduled (sim s)
    ended: float | None  # when the successor's row stopped showing the run (sim s)
    counts: list[int]  # the ledger's counts after the run's slot, in order


def member_leaves_mid_run(seed: int, long_s: float, **rules: bool
                          ) -> tuple[SimNetwork, SimLedger, str, str, str, int]:
    """4 nodes (``rules``: ``SimLedger`` attributes); a run of ``long_s`` on a member, which
    leaves 30 ms into it: (network, world, manager, member, run id, slot)."""
    world = SimLedger(interval_ms=40, timeout_ms=TIMEOUT_MS)
    world.long_run_s = long_s
    for rule, value in rules.items():
        setattr(world, rule, value)
    net = SimNetwork(seed, layer=world)
    net.fifo = True
    ledger_started(net, world, 4)
    manager = after_a_fresh_dispatch(net, world)
    assert manager is not None, net.summary()
    run = world.layers[manager].scheduler.records[LEDGER].running
    assert run is not None
    run_id, member, slot = str(run["run"]), str(run["node"]), int(run["slot"])
    world.long_run_ids.add(run_id)
    net.run_for(0.03)
    net.leave(member)
    return net, world, manager, member, run_id, slot


def leave_then_hand_over(seed: int, dies: bool, bound: bool = True) -> Outcome:
    """A member leaves 30 ms into a long run; once its manager removed it, the manager
    leaves (a graceful hand-over); ``dies``: the member then crashes before its result.
    ``bound``: ``SimLedger.bound_after_handover``."""
    net, world, manager, member, run_id, slot = member_leaves_mid_run(
        seed, LONG_S, bound_after_handover=bound)
    core = net.nodes[manager].core
    assert net.run_until_true(lambda: member not in core.members, limit=1.0, step=0.0005)
    net.run_for(0.1)
    net.leave(manager)

    def successor() -> str | None:
        for node in net.managers():
            layer = world.layers[node.name]
            if node.name not in (manager, member) and layer.scheduler.active:
                return node.name
        return None

    assert net.run_until_true(lambda: successor() is not None, limit=5.0, step=0.001)
    name = successor()
    assert name is not None
    takeover = net.now
    sched = world.layers[name].scheduler
    row = sched.records[LEDGER].running
    assert row is not None and str(row["run"]) == run_id, "the successor adopted the run"
    if dies:
        net.crash(member)

    def open_() -> bool:
        r = sched.records[LEDGER].running
        return r is not None and str(r["run"]) == run_id

    net.run_until_true(lambda: not open_(), limit=UNLISTED_RUN_WAIT_S + 3.0, step=0.01)
    ended = None if open_() else net.now
    net.run_for(1.0)
    counts = [r.after for r in sorted(world.runs, key=lambda r: r.at) if r.slot >= slot]
    return Outcome(run_id, takeover, ended, counts)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", seeds(range(4)))
def test_a_run_on_a_member_that_left_then_died_is_bounded_after_a_hand_over(seed: int) -> None:
    got = leave_then_hand_over(seed, dies=True)
    assert got.ended is not None, f"the run stayed open past the bound: {got}"
    # Not failed at once (the member might still answer), not much past the bound.
    assert UNLISTED_RUN_WAIT_S - 0.1 <= got.ended - got.takeover <= UNLISTED_RUN_WAIT_S + 0.5, got
    assert len(got.counts) > 2, f"the task went on after the bound: {got}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", seeds(range(4)))
def test_a_member_that_left_and_lives_still_gets_its_result_counted(seed: int) -> None:
    got = leave_then_hand_over(seed, dies=False)
    assert got.ended is not None and got.ended - got.takeover < LONG_S + 1.0, got
    assert got.counts == sorted(set(got.counts)), f"a count repeated: {got}"
    assert len(got.counts) > 2, got


@pytest.mark.timeout(120)
def test_before_the_successor_kept_the_run_to_its_deadline() -> None:
    """The exposure, shown (``bound_after_handover = False``, the rule as it was)."""
    got = leave_then_hand_over(0, dies=True, bound=False)
    assert got.ended is None, got


@pytest.mark.timeout(10)
def test_the_rule_bounds_only_unlisted_runs_it_keeps_open() -> None:
    for graceful in (False, True):
        assert bounded_at_takeover(listed=False, alive=False, graceful=graceful, quorum=False)
        assert not bounded_at_takeover(listed=True, alive=True, graceful=graceful, quorum=False)
    # After a hand-over, quorum mode too (a crash takeover fails the run at once there).
    assert bounded_at_takeover(listed=False, alive=False, graceful=True, quorum=True)
    assert not bounded_at_takeover(listed=False, alive=False, graceful=False, quorum=True)
    assert not bounded_at_takeover(listed=True, alive=False, graceful=False, quorum=False)


def leave_long(seed: int, bound: bool = True) -> tuple[float, float | None, str]:
    """A member leaves 30 ms into a run of 30 s (its manager stays): (the leave, when the
    manager's row stopped showing the run or None, its outcome)."""
    net, world, manager, _, run_id, slot = member_leaves_mid_run(seed, 30.0,
                                                                 bound_left_runs=bound)
    left = net.now
    sched = world.layers[manager].scheduler

    def open_() -> bool:
        r = sched.records[LEDGER].running
        return r is not None and str(r["run"]) == run_id

    net.run_until_true(lambda: not open_(), limit=UNLISTED_RUN_WAIT_S + 3.0, step=0.01)
    history = sched.records[LEDGER].run_history.entries
    outcome = next((str(e[5]) for e in history if e[0] == slot), "")
    return left, None if open_() else net.now, outcome


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", seeds(range(3)))
def test_the_manager_a_member_left_bounds_its_run_still_going(seed: int) -> None:
    left, ended, outcome = leave_long(seed)
    assert ended is not None, "the run stayed open past the bound"
    assert UNLISTED_RUN_WAIT_S - 0.1 <= ended - left <= UNLISTED_RUN_WAIT_S + 0.5, (left, ended)
    assert ended - left > LEAVE_WAIT_S and outcome == "timeout", (left, ended, outcome)


@pytest.mark.timeout(120)
def test_before_the_manager_a_member_left_kept_its_run_to_its_deadline() -> None:
    assert leave_long(0, bound=False)[1] is None
