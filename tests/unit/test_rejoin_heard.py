"""A restarted node's claim waits for the recorded members it heard from that it does not
list (:mod:`clerk._joining`, "Restarts"; simulator: tests/unit/test_offer_review_sim.py,
``SILENT``): the core remembers them (``rejoin_heard``, and ``_lost``: the claim probes
them), and the scheduler waits for their OFFERs (``Scheduler.expected``) at most
``OFFER_WAIT_MS``."""

from __future__ import annotations

import random

from clerk._adopt import OFFER_WAIT_MS
from clerk._core import NodeCore, Received, Start
from clerk._corestate import REJOIN_HEARD_S
from clerk._messages import MemberInfo, Peer, Welcome
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from clerk._timings import Timings

T = Timings()


def _restarted() -> NodeCore:
    core = NodeCore(Peer("a", "a:7400", "a-1", 0), now=100.0, rng=random.Random(1),
                    seeds=("b:7400",), timings=T)
    core.rejoin({"b": "b:7400", "d": "d:7400"})
    core.handle(Start(), 100.0)
    return core


def _welcome(name: str) -> Received:
    return Received(Welcome(Peer(name, f"{name}:7400", f"{name}-2", 0), 0, None,
                            (MemberInfo(name, f"{name}:7400", f"{name}-2", 0, True),), 1))


def test_a_recorded_member_heard_from_is_remembered_and_probed() -> None:
    core = _restarted()
    core.handle(_welcome("d"), 100.2)
    assert core.rejoin_heard == {"d": 100.2}
    assert "d:7400" in core._lost  # a claim of ours probes it (probe_lost)
    # Not a member (it follows another manager): taken, for a takeover to wait for its
    # OFFER; then no longer once it is a member, or heard too long ago.
    core.members.remove("d")
    assert core.take_rejoin_heard(101.0) == {"d"}
    assert core.take_rejoin_heard(100.2 + REJOIN_HEARD_S + 1) == set()
    assert core.rejoin_heard == {}


def test_a_takeover_waits_for_an_expected_node_at_most_offer_wait_ms() -> None:
    task = TaskDef(name="t", target="x:T", interval=1000, timeout=500, instant=False,
                   enabled=True, args=None)
    sched = Scheduler([task], random.Random(1), await_offers=True)
    sched.expected = {"d"}
    members = {"a": ("t",)}
    sched.offer_from("a")  # (our own rows)
    wall_ms = 1_700_000_000_000.0
    assert sched._init_held(members, wall_ms) == wall_ms + OFFER_WAIT_MS
    sched.offer_from("d")
    assert sched._init_held(members, wall_ms) == 0.0
    sched.offered.discard("d")
    assert sched._init_held(members, wall_ms + OFFER_WAIT_MS + 1) == 0.0  # the bound
