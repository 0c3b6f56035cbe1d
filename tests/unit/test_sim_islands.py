"""Survivors that cannot find each other: restarted nodes that are not seeds, every seed down.

The schedule CI's random search found (``test_sim_properties``): 5 nodes seeded with the three
highest (n2-n4); n0 and n1 are restarted, then every seed crashes, all at one instant. A
restarted process starts from nothing but its seeds, so n0 and n1 each JOIN n2-n4 (down),
find no manager within ``join_timeout`` and make a lone claim (term 0); as lone managers
they probe their seeds and the members they lost (none), and nothing either holds names the
other's address. They never exchange a message: no protocol can merge them. What does:

* a seed coming back: both probe it (every ``probe_interval``), it follows the higher lone
  claim, whose holder graduates to term 1 with a member, and the other follows that claim;
* a data directory (the real node's default): it recorded the other members at its last
  write, so each JOINs the other too (:mod:`clerk._joining`, "Restarts"), they hear from each
  other at once, and after ``rejoin_timeout`` (the seeds never answer) one is elected with
  the other as its member.
"""

from __future__ import annotations

from clerk._core import Received, Role
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import SimLedger
from clerk._timings import Timings
from tests.unit.test_sim_properties import build, islands, listed, names_for

SCHEDULE = [("restart", 0), ("crash", 1), ("crash", 1), ("crash", 3), ("crash", 4),
            ("restart", 1), ("heal", None), ("crash", 2)]


def apply(net: SimNetwork, names: list[str]) -> None:
    for op, arg in SCHEDULE:
        if op == "restart":
            net.restart(names[arg])  # type: ignore[index]
        elif op == "crash":
            net.crash(names[arg])  # type: ignore[index]
        else:
            net.heal()


def test_survivors_that_know_only_dead_seeds_never_meet() -> None:
    net = build(5, 0)
    names = names_for(5)
    between: list[str] = []

    def watch(node: SimNode, event: object, effects: object) -> None:
        if isinstance(event, Received) and {node.name, event.msg.sender.name} == {"n0", "n1"}:
            between.append(f"{node.name} <- {type(event.msg).__name__}")

    net.observers.append(watch)
    apply(net, names)
    net.run_for(12.0)
    assert between == []
    assert sorted((x.name, x.core.role, x.core.term) for x in net.live()) == [
        ("n0", Role.MANAGER, 0), ("n1", Role.MANAGER, 0)]
    assert sorted(sorted(g) for g in islands(net)) == [["n0"], ["n1"]]


def test_a_seed_back_merges_them() -> None:
    net = build(5, 0)
    names = names_for(5)
    apply(net, names)
    net.run_for(2.0)  # both lone managers
    assert len(islands(net)) == 2
    net.restart("n4")
    assert len(islands(net)) == 1
    t0 = net.now
    done = net.run_until_true(lambda: net.agreed() is not None and listed(net), limit=3.0,
                              step=0.005)
    assert done is not None, net.summary()
    assert done - t0 < 1.5  # a probe interval and an election
    view = net.agreed()
    assert view is not None and view[1] >= 1  # not a lone claim: the cluster has members


def test_with_data_directories_they_merge_after_the_rejoin_timeout() -> None:
    """As real nodes do by default: each restarted node's data directory recorded the other
    members; they JOIN each other, and one is elected once the seeds' wait runs out."""
    world = SimLedger(interval_ms=200)
    timings = Timings()
    net = SimNetwork(0, layer=world, timings=timings)
    names = names_for(5)
    seeds = tuple(f"{x}:7400" for x in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and world.acknowledged(names) > 3
                              and all(len(world.disk_members.get(x, {})) == 4 for x in names),
                              limit=10.0, step=0.01) is not None, net.summary()
    apply(net, names)
    t0 = net.now
    done = net.run_until_true(lambda: net.agreed() is not None and listed(net),
                              limit=timings.rejoin_timeout + 3.0, step=0.005)
    assert done is not None, net.summary()
    assert done - t0 >= timings.rejoin_timeout - 0.1  # they waited for the seeds first
    view = net.agreed()
    assert view is not None and view[1] >= 1
    assert {x.name for x in net.live()} == {"n0", "n1"}
