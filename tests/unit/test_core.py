"""NodeCore as a whole (the entry point in :mod:`clerk._core`): delivery to the layer above,
the status view, deadlines that never lie in the past, timings. The helpers (a tiny in-test
router, fake time) are in :mod:`tests.unit.corenet`; each part of the core has its own file:
test_claims.py, test_joining.py, test_election.py, test_handover.py."""

import json
import random

import pytest

from clerk._codec import decode, encode
from clerk._core import (
    Deliver,
    LeaveRequested,
    NodeCore,
    PeerDown,
    Received,
    Start,
    Tick,
)
from clerk._messages import (
    Join,
    Ok,
    Result,
    Status,
    StatusReply,
    TableDelta,
)
from clerk._timings import Timings
from tests.unit.corenet import INF, Net, addr, cluster, peer


def test_deliver_passes_status_and_results_up():
    net = Net()
    a = net.node("a")
    status = Status(peer("client"), 0)
    assert net.do(a, Received(status)) == [Deliver(status)]
    res = Result(peer("w"), 1, "t", "r", 1, "ok")
    assert net.do(a, Received(res)) == [Deliver(res)]


def test_status_shape_is_json_ready():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    st = b.status()
    assert set(st) == {"node", "role", "manager", "term", "highest_term", "members", "quorum",
                       "merge", "replica"}
    assert st["merge"] == {"unconfirmed": 0, "resent": 0}  # (clerk._handover: MERGED)
    assert st["replica"] == {"refused": 0, "refused_hist": 0, "refusal": ""}  # (clerk._replica)
    assert st["quorum"] == {"mode": "available", "voters": [], "reachable": [], "quorum": None,
                            "detail": "", "promised": None}  # the default mode (issue #10)
    assert (st["node"], st["role"], st["manager"], st["term"], st["highest_term"]) == (
        "b", "follower", "a", 1, 1)
    assert [m["name"] for m in st["members"]] == ["a", "b"]
    assert set(st["members"][0]) == {"name", "address", "alive", "priority", "incarnation",
                                     "tasks"}
    assert st["members"][0]["address"] == addr("a") and st["members"][0]["tasks"] == []
    assert json.loads(json.dumps(st)) == st
    assert decode(encode(StatusReply(b.me, 1, st))).status == st
    assert a.status()["role"] == "manager"


@pytest.mark.parametrize("role", ["joining", "follower", "candidate-wait", "candidate-ok",
                                  "candidate-coord", "manager", "leaving", "stopped"])
def test_next_deadline_is_never_in_the_past_and_ticks_move_it(role):
    net = Net()
    if role == "joining":
        core = net.node("a", 0, seeds=["nobody"])
    elif role == "follower":
        net, (_m, core) = cluster(("m", 9), ("a", 0))
    elif role.startswith("candidate"):
        net, (m, x, core) = cluster(("m", 9), ("x", 5), ("a", 0))
        net.down.update({addr("m"), addr("x")})
        net.do(core, PeerDown(addr("m")))
        if role == "candidate-wait":
            assert core._phase == "wait"
        else:
            net.now = core.next_deadline()
            net.do(core, Tick())
            assert core._phase == "ok"
            if role == "candidate-coord":
                net.do(core, Received(Ok(x.me, 1, None)))
                assert core._phase == "coord"
        net.queue.clear()
    elif role == "manager":
        net, (core, _b) = cluster(("a", 9), ("b", 0))
    elif role == "leaving":
        net, (core, b) = cluster(("a", 9), ("b", 0))
        net.down.add(addr("b"))
        net.do(core, LeaveRequested())
    else:
        net = Net()
        core = net.node("a")
        net.do(core, LeaveRequested())
    assert str(core.role) == role.split("-")[0]
    assert core.next_deadline() >= net.now
    # tick it at its deadlines a few times: each tick must push the deadline forward
    previous = net.now
    for _ in range(20):
        due = core.next_deadline()
        if due == INF:
            break
        assert due >= previous
        net.now = due
        net.do(core, Tick())
        net.queue.clear()  # nobody answers
        assert core.next_deadline() > due
        previous = due
    # and a tick at any time in between does not leave a deadline in the past
    net.do(core, Tick())
    assert core.next_deadline() >= net.now


def test_handle_after_stopped_does_nothing():
    net = Net()
    a = net.node("a")
    net.do(a, LeaveRequested())
    for event in (Tick(), Start(), PeerDown("x:1"), LeaveRequested(),
                  Received(Join(peer("b"), 0))):
        assert a.handle(event, net.now + 1) == []


def test_default_timings_follow_their_stated_reasoning():
    t = Timings()
    assert t.manager_timeout == pytest.approx(7 * t.heartbeat_interval)
    assert t.manager_timeout + t.election_timeout < 1.0  # a paused manager replaced in ~1 s
    assert 2 * t.heartbeat_interval < t.vouch_window < t.manager_timeout
    assert t.member_timeout > t.manager_timeout
    assert t.election_timeout < t.coordinator_timeout


@pytest.mark.parametrize(
    "kwargs",
    [{"heartbeat_interval": 0}, {"manager_timeout": -1}, {"election_timeout": True},
     {"member_timeout": "2"}, {"manager_timeout": 0.2}, {"member_timeout": 0.15},
     {"heartbeat_interval": 1.0}],
    ids=["zero", "negative", "bool", "str", "manager<=2hb", "member<=2hb", "hb-too-long"],
)
def test_invalid_timings_are_refused(kwargs):
    with pytest.raises(ValueError, match="timing"):
        Timings(**kwargs)


def test_custom_timings_drive_the_core():
    fast = Timings(heartbeat_interval=0.01, manager_timeout=0.05, election_timeout=0.01)
    core = NodeCore(peer("a"), now=0.0, rng=random.Random(0), timings=fast)
    core.handle(Start(), 0.0)
    assert core.next_deadline() == pytest.approx(0.01)


def test_status_shows_the_deltas_its_replica_refused() -> None:
    """``replica``: the refused count, of them those for a history patch, and why the last
    delta whose contents were refused was (clerk._replica; the same as metrics)."""
    _, (_, b) = cluster(("a", 1), ("b", 0))
    rows = '{"t:a":NaN}'
    d = TableDelta(b.replica.log, b.replica.seq, b.replica.seq + 5, (rows,), (), True, None,
                   len(rows))
    assert not b.replica.apply(d)
    st = b.status()["replica"]
    assert st["refused"] == 1 and st["refused_hist"] == 0, st
    assert "not a JSON object of rows" in st["refusal"] and "NaN" in st["refusal"], st
