"""A joiner's manager timeout counts from its manager's own word, not from a relay's.

A node that joins through a seed that is not the manager follows the claim that seed names
(its relayed WELCOME: "manager is ..." in the node's log), then JOINs the manager. The
manager's first word to it (the heartbeat answering its ACK, its WELCOME) comes a round trip
and a turn of the manager's loop later: on a loaded machine, behind a big table's chunks, that
can be most of a ``manager_timeout`` or more. The joiner counted that timeout from the relay's
WELCOME (whose sender may itself have last heard the manager up to a timeout before), and a
manager's WELCOME did not restart it: it declared "manager lost" ~0.7 s after joining and
elected (seen in node logs on a loaded machine).

Now a relay's word gives the manager ``join_timeout`` more for its first word
(``CoreState.manager_due``), and every word of the manager itself, its WELCOME as its
heartbeats, restarts the clock. A relay naming a dead manager still ends in an election, a
``join_timeout`` later than before.
"""

from __future__ import annotations

import pytest

from clerk._core import Effect, Event, ManagerChanged, Role
from clerk._messages import Message
from clerk._simnet import SimNetwork, SimNode
from tests.unit.simdepth import seeds


def _settled(seed: int) -> tuple[SimNetwork, str, str]:
    net = SimNetwork(seed, jitter=0.0)
    net.fifo = True
    names = ["n1", "n2", "n3"]
    seeds = tuple(f"{x}:7400" for x in names)
    for name in names:
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=5.0) is not None
    net.run_for(1.0)
    manager = net.managers()[0].name
    follower = next(n for n in names if n != manager)
    return net, manager, follower


def _join_through(net: SimNetwork, follower: str) -> list[tuple[float, str | None]]:
    """Start ``j`` with ``follower`` as its only seed; the manager changes it logs."""
    changes: list[tuple[float, str | None]] = []

    def watch(node: SimNode, event: Event, effects: list[Effect]) -> None:
        if node.name == "j":
            changes.extend((net.now, e.manager) for e in effects
                           if isinstance(e, ManagerChanged))

    net.observers.append(watch)
    net.add_node("j", seeds=(f"{follower}:7400",))
    return changes


@pytest.mark.parametrize("seed", seeds(range(4)))
@pytest.mark.parametrize("lag", [0.5, 0.9])
def test_a_joiner_through_a_follower_does_not_elect_while_its_manager_answers_late(
        seed: int, lag: float) -> None:
    """Everything the manager sends the joiner in its first half second arrives ``lag`` s
    late (a loaded manager; its table chunks ahead of it): 0.5 s, within a manager timeout
    of the relay's WELCOME (held before too); 0.9 s, past it (elected before)."""
    net, manager, follower = _settled(seed)
    until = net.now + 0.5

    def late_from_the_manager(src: str, dst: str, msg: Message) -> float:
        return lag if src == manager and dst == "j" and net.now < until else 0.0

    net.link_delay = late_from_the_manager
    changes = _join_through(net, follower)
    net.run_for(3.0)
    assert [m for _, m in changes] == [manager], changes  # followed once, never "lost"
    j = net.nodes["j"].core
    assert j.role is Role.FOLLOWER and j.manager == manager
    assert net.agreed() is not None


@pytest.mark.parametrize("seed", seeds(range(4)))
def test_a_joiner_told_of_a_dead_manager_still_elects(seed: int) -> None:
    """The relay names a manager that died (its connection to the joiner never closes: it was
    never opened): the joiner elects once the manager has not said a word for a manager
    timeout and a join timeout after the relay's WELCOME."""
    net, manager, follower = _settled(seed)
    net.crash(manager, silent=True)  # (the relay has not noticed yet)
    changes = _join_through(net, follower)
    t = net.timings
    assert net.run_until_true(lambda: len(changes) >= 2, limit=3.0) is not None, changes
    (followed, first), (lost, second) = changes[:2]
    assert first == manager and second is None, changes
    assert lost - followed == pytest.approx(t.manager_timeout + t.join_timeout, abs=1e-6)
