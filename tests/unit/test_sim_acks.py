"""Property: thinned ACKs (:func:`clerk._heartbeats.acknowledge`) keep failure detection as it
was, on the real cores over the simulated network.

Hypothesis draws a cluster of 3-12 nodes, a seed, and a network from a LAN to a badly loaded
machine (delay up to 20 ms, jitter up to 60 ms). Once formed it idles for 12 s (six member
timeouts): the manager never marks a live member down or drops it as silent, nobody starts an
election, no heartbeat carries the member list (it did not change), and each member ACKs a
few times per member timeout, not every heartbeat. In
quorum mode, the voters' ACKs keep the manager's quorum ok all along.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._core import Effect, Event, MemberDown, Role, Send
from clerk._heartbeats import ACKS_PER_TIMEOUT
from clerk._messages import Heartbeat
from clerk._simnet import SimNetwork, SimNode
from clerk._timings import Timings
from tests.unit.simdepth import examples

T = Timings()
EVERY = T.member_timeout / ACKS_PER_TIMEOUT
IDLE = 12.0


def formed(n: int, seed: int, delay: float, jitter: float,
           voters: tuple[str, ...] = ()) -> SimNetwork:
    net = SimNetwork(seed, delay=delay, jitter=jitter, voters=voters)
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == n
                              and _listed(net), limit=15.0, step=0.05) is not None
    net.run_for(1.0)  # settled: every member has ACKed the final list
    return net


def _listed(net: SimNetwork) -> bool:
    (m,) = net.managers()
    return all(row.alive for row in m.core.members)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 12), seed=st.integers(0, 10_000),
       delay=st.floats(0.0002, 0.02), jitter=st.floats(0.0, 0.06),
       quorum=st.booleans())
def test_an_idle_cluster_never_loses_a_member_and_acks_rarely(
        n: int, seed: int, delay: float, jitter: float, quorum: bool) -> None:
    voters = tuple(f"n{i}" for i in range(n - 3, n)) if quorum else ()
    net = formed(n, seed, delay, jitter, voters)
    agreed = net.agreed()
    (manager,) = net.managers()
    downs: list[tuple[str, object]] = []
    quorum_lost: list[float] = []

    lists: list[Heartbeat] = []

    def watch(node: SimNode, event: Event, effects: list[Effect]) -> None:
        downs.extend((node.name, e) for e in effects if isinstance(e, MemberDown))
        lists.extend(e.msg for e in effects if isinstance(e, Send)
                     and isinstance(e.msg, Heartbeat) and e.msg.members is not None)
        if quorum and node is manager and node.core.quorum_status().get("quorum") == "lost":
            quorum_lost.append(net.now)

    net.observers.append(watch)
    sent = net.sent.copy()
    net.run_for(IDLE)
    assert downs == []
    assert lists == []  # the member list rides along only when it changed
    assert net.agreed() == agreed and manager.core.role is Role.MANAGER
    assert all(row.alive for row in manager.core.members)
    assert quorum_lost == []
    acks = net.sent["ack"] - sent["ack"]
    beats = net.sent["heartbeat"] - sent["heartbeat"]
    members = n - 1
    assert beats >= members * IDLE / T.heartbeat_interval * 0.95
    # Voters answer every heartbeat; everyone else every EVERY seconds (a heartbeat's
    # lateness more at most).
    busy = len(voters) - (1 if manager.name in voters else 0)
    idle_acks = acks - busy * IDLE / T.heartbeat_interval * 1.05
    assert idle_acks <= (members - busy) * (IDLE / EVERY + 1)
