"""The simulated network itself: its fault model and hooks behave as documented, so what the
simulator and the property tests measure is the cores, not artefacts of the harness."""

from __future__ import annotations

from clerk._core import PeerDown, Received, Role
from clerk._messages import Execute
from clerk._simnet import SimNetwork


def formed(n: int = 4, seed: int = 1) -> SimNetwork:
    net = SimNetwork(seed)
    names = [f"n{i}" for i in range(n)]
    seeds = tuple(f"{x}:7400" for x in names[-3:])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    assert net.run_until_true(lambda: net.agreed() is not None, limit=5.0) is not None
    return net


def test_a_crash_closes_connections_but_a_silent_crash_tells_nobody():
    seen: list[str] = []

    def watch(node, ev, eff) -> None:
        if isinstance(ev, PeerDown):
            seen.append(node.name)

    loud = formed()
    loud.observers.append(watch)
    loud.crash("n3")
    loud.run_for(0.01)
    assert sorted(seen) == ["n0", "n1", "n2"]

    quiet = formed()
    seen.clear()
    quiet.observers.append(watch)
    quiet.crash("n3", silent=True)
    quiet.run_for(0.01)
    assert seen == []
    assert quiet.agreed() is None  # n3 is down, the others still follow it
    quiet.inject("n0", PeerDown("n3:7400"))
    assert seen == ["n0"]
    assert quiet.run_until_true(lambda: quiet.agreed() is not None, limit=3.0) is not None


def test_a_paused_node_gets_its_messages_on_resume_in_order():
    net = formed()
    who = "n0"  # a follower: it keeps receiving heartbeats while paused
    net.pause(who)
    assert who not in [n.name for n in net.live()]
    net.run_for(0.3)
    queued = list(net.nodes[who].backlog)
    assert len(queued) >= 2 and all(isinstance(e, Received) for e in queued)
    got: list[object] = []
    net.observers.append(lambda node, ev, eff: node.name == who and got.append(ev))
    net.resume(who)
    assert got[: len(queued)] == queued


def test_send_is_refused_for_down_paused_and_stopped_nodes():
    net = formed()
    me = net.nodes["n0"].core.me
    msg = Execute(me, 1, "t", "r", 1, None, 1000)
    before = sum(net.sent.values())
    net.pause("n0")
    net.send("n0", "n1:7400", msg)
    net.resume("n0")
    net.crash("n1")
    net.send("n1", "n0:7400", msg)
    assert sum(net.sent.values()) == before
    net.send("n0", "n2:7400", msg)
    assert sum(net.sent.values()) == before + 1


def test_managers_and_agreed_exclude_paused_and_stopped_nodes():
    net = formed()
    boss = net.managers()[0].name
    net.pause(boss)
    assert net.managers() == []
    net.resume(boss)
    assert [m.name for m in net.managers()] == [boss]
    net.leave("n0")
    net.run_for(0.1)
    assert net.nodes["n0"].core.role is Role.STOPPED
    assert "n0" not in [n.name for n in net.live()]
