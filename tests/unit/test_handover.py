"""Merge and hand-over (:mod:`clerk._handover`), through NodeCore on the in-test router
(:mod:`tests.unit.corenet`): graceful leaves, two managers meeting, HANDOVERs that are stale
or passed on, partitions that heal after failovers on both sides."""

import json
from typing import Any

import pytest

from clerk import _handover
from clerk._codec import encode
from clerk._core import (
    Deliver,
    LeaveRequested,
    ManagerChanged,
    MemberDown,
    Received,
    Role,
    Send,
    Start,
    StateHandedOver,
    Stopped,
    Tick,
)
from clerk._handover import FORWARD_MEMORY
from clerk._messages import (
    HANDED_MARK,
    MERGE_MARK,
    PARTS_MARK,
    TABLE_MARK,
    Claim,
    Coordinator,
    Handover,
    Heartbeat,
    Leave,
    Merged,
    Result,
)
from clerk._record import unpack_table
from tests.unit.corenet import Net, T, addr, cluster, info, peer


def test_a_stopped_core_still_delivers_results_and_nothing_else():
    """The last manager of a full stop has no successor: its core stops at once, but its loop
    waits for the results of its runs in flight on members (TaskRunner.ready_to_leave). The
    stopped core must deliver those RESULTs (it dropped everything before, and the update was
    lost); any other message, and a RESULT in its own name, is still ignored."""
    net, (a, b) = cluster(("a", 1), ("b", 0))
    net.do(b, LeaveRequested())
    net.run()
    effects = net.do(a, LeaveRequested())
    assert Stopped("left; no member to hand over to") in effects and a.role is Role.STOPPED
    result = Result(b.me, 1, "t", "r1", 7, "ok", {"n": 1}, 3.0)
    assert net.do(a, Received(result)) == [Deliver(result)]
    assert net.do(a, Received(Result(a.me, 1, "t", "r2", 7, "ok"))) == []
    assert net.do(a, Received(Heartbeat(b.me, 1, 1, 0))) == []
    assert net.do(a, Tick()) == []


def test_graceful_leave_of_a_follower():
    net, (a, b, c) = cluster(("a", 1), ("b", 0), ("c", 0))
    effects = net.do(b, LeaveRequested())
    assert [e.msg for e in effects if isinstance(e, Send)] == [Leave(b.me, 1)]
    assert effects[-1] == Stopped("left") and b.role is Role.STOPPED
    net.run()
    assert "b" not in a.members and MemberDown("b", "left") in net.effects(a, MemberDown)
    net.advance(T.heartbeat_interval * 2)
    assert "b" not in c.members
    assert a.role is Role.MANAGER and a.term == 1


def test_graceful_leave_of_the_manager_hands_over_to_the_highest_live_member():
    net, (a, b, c, d) = cluster(("a", 9), ("b", 5), ("c", 7), ("d", 1))
    net.crash(c)  # the highest-ranked member is dead: not chosen
    a.set_replicated({"tasks": {"t": {"slot": 41, "state": [1]}}})
    net.advance(T.heartbeat_interval)
    effects = net.do(a, LeaveRequested())
    (hand,) = [e for e in effects if isinstance(e, Send)]
    assert hand.to == addr("b") and isinstance(hand.msg, Handover)
    # packed (a few strings for the codec to check, whatever the number of tasks)
    assert unpack_table(hand.msg.state) == {"tasks": {"t": {"slot": 41, "state": [1]}}}
    assert "a" not in {m.name for m in hand.msg.members}
    assert a.role is Role.LEAVING
    net.run()
    assert b.role is Role.MANAGER and b.term == 2
    (handed,) = net.effects(b, StateHandedOver)
    assert (handed.sender, unpack_table(handed.state), handed.merge) == (
        "a", a.replicated, False)
    assert b.replicated == {"tasks": {"t": {"slot": 41, "state": [1]}}}
    assert net.sends(b, Coordinator, to=a)
    assert a.role is Role.STOPPED
    assert "handed over to b" in net.effects(a, Stopped)[-1].reason
    assert d.manager == "b" and d.term == 2
    net.advance(1.0)
    assert net.agreed() == ("b", 2)
    assert {m.name for m in b.member_list() if m.alive} == {"b", "d"}


def test_a_leaving_manager_without_members_stops_at_once():
    net = Net()
    a = net.node("a")
    effects = net.do(a, LeaveRequested())
    assert a.role is Role.STOPPED and isinstance(effects[-1], Stopped)
    assert "no member" in effects[-1].reason


def test_a_leaving_manager_whose_successor_is_silent_hands_over_again_then_stops():
    """Its HANDOVER may have been lost on a closing connection (or the successor is frozen):
    sent again every ``handover_timeout`` (to the next member not tried yet, here none), for
    ``LEAVE_PICKS`` hand-overs in all; then it stops. Before, it stopped after the first."""
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.down.add(addr("b"))
    net.do(a, LeaveRequested())
    assert a.role is Role.LEAVING
    assert a.next_deadline() == pytest.approx(net.now + T.handover_timeout)
    for _ in range(_handover.LEAVE_PICKS):
        net.advance(T.handover_timeout - 0.001)
        assert a.role is Role.LEAVING
        net.advance(0.001)
    assert len(net.sends(a, Handover, to=b)) == _handover.LEAVE_PICKS
    assert a.role is Role.STOPPED and "did not confirm" in net.effects(a, Stopped)[-1].reason


def test_a_leaving_managers_successor_that_crashes_is_replaced_at_once():
    """Its connection closes before it took over (a crash): the next live member gets the
    hand-over now, not after ``handover_timeout``."""
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.cut.add(frozenset((addr("a"), addr("b"))))  # (b dies before it hears a)
    effects = net.do(a, LeaveRequested())
    (hand,) = [e for e in effects if isinstance(e, Send)]
    assert hand.to == addr("b")
    net.run()
    net.cut.clear()
    net.crash(b)  # a gets PeerDown(b) at once
    assert net.sends(a, Handover, to=c)
    net.run()
    assert c.role is Role.MANAGER and c.term == 2
    assert a.role is Role.STOPPED and "handed over to c" in net.effects(a, Stopped)[-1].reason


def test_a_leaving_managers_lost_handover_is_sent_again_and_taken():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.cut.add(frozenset((addr("a"), addr("b"))))
    net.do(a, LeaveRequested())
    net.run()
    net.cut.clear()
    net.advance(T.handover_timeout)
    assert b.role is Role.MANAGER and b.term == 2
    assert a.role is Role.STOPPED and "handed over to b" in net.effects(a, Stopped)[-1].reason


def test_a_leaving_manager_whose_successor_leaves_too_hands_over_to_the_next_member():
    """A full stop: the successor's LEAVE was on its way when the manager chose it. It will
    never take over, so the manager hands over to the next live member at once instead of
    waiting out the hand-over timeout (the results it applies meanwhile go to its successor:
    to a member that left, the count was on the manager's disk only, and a full restart
    without it repeated it: tests/unit/test_sim_restart.py)."""
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.do(b, LeaveRequested())  # its LEAVE to a is in flight
    effects = net.do(a, LeaveRequested())
    (hand,) = [e for e in effects if isinstance(e, Send)]
    assert hand.to == addr("b") and a.role is Role.LEAVING
    net.run()
    assert net.sends(a, Handover, to=c)
    assert c.role is Role.MANAGER and c.term == 2
    assert a.role is Role.STOPPED
    assert "handed over to c" in net.effects(a, Stopped)[-1].reason


def test_a_leaving_manager_whose_only_successor_leaves_stops_at_once():
    net, (a, b) = cluster(("a", 9), ("b", 5))
    net.do(b, LeaveRequested())
    net.do(a, LeaveRequested())
    assert a.role is Role.LEAVING
    net.run()
    assert a.role is Role.STOPPED and "no member" in net.effects(a, Stopped)[-1].reason


def test_a_stale_handover_is_not_taken_as_a_graceful_leave():
    # a was paused, b took over with term 2; a then hands over (term 1) to c, a follower of b.
    net, (a, b, c, d) = cluster(("a", 9), ("b", 7), ("c", 5), ("d", 1))
    net.down.add(addr("a"))
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert net.agreed() == ("b", 2)
    members = tuple(m for m in a.member_list() if m.name != "a")
    net.do(c, Received(Handover(a.me, 1, members, {"stale": True})))
    assert c.role is Role.FOLLOWER and c.manager == "b" and c.term == 2
    assert c.replicated != {"stale": True}
    assert not net.effects(c, StateHandedOver)
    net.run()
    net.advance(1.0)
    assert net.agreed() == ("b", 2)


def test_leave_of_the_manager_seen_by_a_follower_starts_an_election():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.do(b, Received(Leave(a.me, 1)))
    assert b.role in (Role.CANDIDATE, Role.MANAGER)


def _two_managers() -> tuple[Net, Any, Any, Any]:
    """a (manager) and b on one side, z and y on the other: both sides elect a manager. (z
    alone would make a lone claim, at term 0, below a's: see test_a_lone_manager_...)"""
    net = Net()
    a = net.node("a", 1)
    b = net.node("b", 0, seeds=["a"])
    z = net.node("z", 9, seeds=["a"], start=False)
    y = net.node("y", 0, seeds=["z"], start=False)
    net.partition([z, y], [a, b])
    net.do(z, Start())
    net.do(y, Start())
    net.run()
    net.advance(T.join_timeout + T.election_timeout)
    assert y.manager == "z"
    return net, a, b, z


def test_a_lone_manager_meeting_a_manager_of_members_follows_it_and_hands_over():
    """z started cut off from its seed a, found nobody and elected itself: a lone claim, at
    term 0 (clerk._claims). When the cut heals, a's claim (term 1, with a member) wins
    although z ranks higher: z hands its table over to a and follows it. (Before, z claimed
    at term 1 and a, the manager of a cluster with members, stepped down to it.)"""
    net = Net()
    a = net.node("a", 1)
    b = net.node("b", 0, seeds=["a"])
    z = net.node("z", 9, seeds=["a"], start=False)
    net.partition([z], [a, b])
    net.do(z, Start())
    net.run()
    net.advance(T.join_timeout + T.election_timeout)
    assert (z.role, z.term, a.role, a.term) == (Role.MANAGER, 0, Role.MANAGER, 1)
    z.set_replicated({"from": "z"})
    mark = net.mark()
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)  # z probes its seed a
    assert net.agreed() == ("a", 1)
    assert not net.effects(a, ManagerChanged, after=mark)
    assert not net.effects(b, ManagerChanged, after=mark)
    # a does not know z (not its seed, not a member yet): the first HANDOVER is a
    # stranger's; z JOINs a as it follows it, and its retry (MERGE_RETRY) is taken.
    assert a.dropped["handover_stranger"] == 1
    net.advance(_handover.MERGE_RETRY)
    hand = net.sends(z, Handover, to=a)
    assert len(hand) == 2 and all(unpack_table(h.state) == {"from": "z"} for h in hand)
    assert [(e.sender, unpack_table(e.state), e.merge)
            for e in net.effects(a, StateHandedOver)] == [("z", {"from": "z"}, True)]
    assert {m.name for m in a.member_list()} == {"a", "b", "z"}
    assert net.agreed() == ("a", 1)


def test_two_managers_meeting_the_lower_hands_over_and_follows():
    net, a, b, z = _two_managers()
    assert z.role is Role.MANAGER and z.term == 1 and a.role is Role.MANAGER and a.term == 1
    a.set_replicated({"from": "a"})
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)  # z probes its seed a
    assert net.agreed() == ("z", 1)
    hand = net.sends(a, Handover, to=z)
    assert len(hand) == 1 and unpack_table(hand[0].state) == {"from": "a"}
    assert {m.name for m in hand[0].members} == {"a", "b"}
    assert [(e.sender, unpack_table(e.state), e.merge)
            for e in net.effects(z, StateHandedOver)] == [("a", {"from": "a"}, True)]
    assert {m.name for m in z.member_list()} == {"a", "b", "y", "z"}


def test_two_managers_same_term_resolve_directly():
    net = Net()
    lo = net.node("lo", 1)
    hi = net.node("hi", 2)
    effects = net.do(hi, Received(Coordinator(lo.me, 1, lo.manager_claim)))
    told = [e.msg for e in effects if isinstance(e, Send)]
    assert told == [Coordinator(hi.me, 1, hi.manager_claim)]  # the lower one is told
    assert hi.role is Role.MANAGER
    net.run()
    assert lo.role is Role.FOLLOWER and lo.manager == "hi"
    assert net.sends(lo, Handover, to=hi)


def test_a_partition_heals_after_failovers_on_both_sides():
    net = Net()
    a = net.node("a", 9)
    b = net.node("b", 5, seeds=["a"])
    c = net.node("c", 3, seeds=["a"])
    d = net.node("d", 1, seeds=["c"])
    net.advance(T.heartbeat_interval * 3)
    assert net.agreed() == ("a", 1)
    net.partition([a, b], [c, d])
    net.advance(T.manager_timeout + 2 * T.election_timeout + T.member_timeout + 0.5)
    assert (a.role, c.role) == (Role.MANAGER, Role.MANAGER)  # each side dropped the other
    net.crash(a)  # both managers die; their successors never lost anyone themselves
    net.crash(c)
    net.advance(T.election_timeout)
    assert (b.role, d.role) == (Role.MANAGER, Role.MANAGER)
    net.heal()  # b and d can talk again, and were members of one cluster a few seconds ago
    net.advance(10.0)
    assert net.agreed() is not None, [(x.me.name, x.role, x.term) for x in net.live()]


def test_a_stale_handover_is_not_forwarded_in_a_loop():
    # Two followers that (transiently) follow each other: a follows a claim of d's previous
    # incarnation, while d, restarted, follows a's old claim. Found by a random fault search.
    net = Net()
    a = net.node("a", 1, seeds=["x"], start=False)
    d = net.node("d", 3, seeds=["x"], incarnation="d-2", start=False)
    x = peer("x", 0)
    net.do(a, Received(Coordinator(x, 2, Claim(2, 3, "d", addr("d")))))
    net.do(d, Received(Coordinator(x, 1, Claim(1, 1, "a", addr("a")))))
    assert (a.manager, d.manager) == ("d", "a")
    net.queue.clear()
    stale = Handover(peer("s", 0), 1, (), {"state": "of a stale manager"})
    net.do(a, Received(stale))
    mark = net.mark()
    net.run(limit=1000)  # raises "message storm" if the HANDOVER keeps circulating
    assert len(net.log) - mark < 20


# --- the hand-over steps on their own ------------------------------------------------------------


def test_forward_passes_each_handover_on_once_and_remembers_a_bounded_number():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    b._out = []
    msgs = [Handover(peer(f"s{i}", 0), 1, (), None) for i in range(FORWARD_MEMORY + 1)]
    _handover.forward(b, msgs[0])
    _handover.forward(b, msgs[0])  # the same one again: not passed on twice
    assert [e for e in b._out if isinstance(e, Send)] == [Send(addr("a"), msgs[0])]
    for m in msgs[1:]:
        _handover.forward(b, m)
    assert len(b._forwarded) == FORWARD_MEMORY  # the oldest is forgotten
    assert ("s0", "s0-1", 1, "") not in b._forwarded


def test_a_handover_is_from_the_current_manager_only_with_its_name_and_term():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    assert _handover.from_current_manager(b, Handover(a.me, 1, (), None))
    assert not _handover.from_current_manager(b, Handover(a.me, 2, (), None))
    assert not _handover.from_current_manager(b, Handover(peer("z", 9), 1, (), None))


def test_accept_merge_takes_a_lower_known_manager_and_drops_a_stranger():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    a._out = []
    _handover.accept_merge(a, Handover(peer("z", 0), 1, (), {"s": 1}), net.now)
    assert a.dropped["handover_stranger"] == 1
    a.tell(addr("z"), net.now)  # we sent z our claim: z may step down to us
    z = peer("z", 0)
    _handover.accept_merge(a, Handover(z, 0, (info(z),), {"s": 1}), net.now)
    assert StateHandedOver("z", {"s": 1}, True) in a._out
    assert a.members.get("z") is not None


def big_table(n: int) -> dict:
    """``n`` task rows of ~500 bytes each (a row with its run history)."""
    return {"tasks": {f"pkg.tasks:Poll{i:05d}": {"state": {"n": i, "pad": "x" * 400},
                                                  "slot": 1_700_000 + i, "version": i}
                      for i in range(n)}}


def test_a_big_table_steps_down_in_parts_each_within_the_message_limit():
    """A merge's whole table in one HANDOVER was over 1 MiB from ~2,000 tasks: never sent, so
    the winner lost what the lower side did during the partition (a pause of a task without
    state, a run in flight: an OFFER carries neither). Now each part is a table of its own
    rows, each merged as it comes."""
    from clerk._codec import MAX_MESSAGE_BYTES, encode

    net, a, b, z = _two_managers()
    assert z.role is Role.MANAGER and a.role is Role.MANAGER
    table = big_table(10_000)
    a.set_replicated(table)
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1)
    hand = net.sends(a, Handover, to=z)
    assert len(hand) > 1
    assert all(sum(len(f) for f in encode(h)) <= MAX_MESSAGE_BYTES for h in hand)
    got: dict = {}
    for h in hand:
        part = unpack_table(h.state)["tasks"]
        assert not set(part) & set(got)  # each row in one part
        got.update(part)
    assert got == table["tasks"]
    merged = [e for e in net.effects(z, StateHandedOver) if e.merge]
    assert len(merged) == len(hand)
    assert {m.name for m in z.member_list()} == {"a", "b", "y", "z"}


def test_table_parts_keep_every_row_once_within_the_limit():
    table = big_table(300)
    log_items = [(f"t:{k}", json.dumps(v, separators=(",", ":")))
                 for k, v in table["tasks"].items()]
    parts = _handover.table_parts(log_items, 20_000)
    assert len(parts) > 5
    assert all(sum(len(c) for c in p["chunks"]) <= 20_000 for p in parts)
    merged: dict = {}
    for p in parts:
        merged.update(unpack_table(p)["tasks"])
    assert merged == table["tasks"]
    assert _handover.table_parts([], 20_000) == []
    one = _handover.table_parts(log_items[:1], 10)  # a row over the limit goes alone
    assert unpack_table(one[0])["tasks"] == dict(list(table["tasks"].items())[:1])


def test_forward_passes_each_part_of_a_merge_on_once():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    b._out = []
    s = peer("s", 0)
    items = [(f"t:x{i}", "{}") for i in range(4)]
    parts = [Handover(s, 1, (), p) for p in _handover.table_parts(items, 10)]
    assert len(parts) == 4
    for m in [*parts, *parts]:
        _handover.forward(b, m)
    assert [e.msg for e in b._out if isinstance(e, Send)] == parts


def test_a_leaving_manager_hands_over_to_the_highest_member_whose_hand_over_fits():
    """The highest-ranked member too far behind for a delta (it joined moments ago) would need
    the whole table: over the message limit from ~2,000 tasks, never sent, and it took over
    with its replica as it was. The next one that holds all but a few rows takes over."""
    net, (a, b, d) = cluster(("a", 9), ("b", 5), ("d", 1))
    for core in (a, b, d):
        core.part_chars = 20_000  # (the table below is ~50 KB: as 10,000 tasks to 1 MiB)
        core.message_bytes = 35_000  # (the limit a hand-over is measured against, encoded)
    a.set_replicated(big_table(100))
    net.advance(T.heartbeat_interval * 20)  # both members catch up and acknowledge
    a.members.get("b").reset_table()  # b: as if it had just joined (nothing acknowledged)
    effects = net.do(a, LeaveRequested())
    (hand,) = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Handover)]
    assert hand.to == addr("d")
    assert hand.msg.state is None or hand.msg.state.get("delta") == 1
    net.run()
    assert d.role is Role.MANAGER
    assert unpack_table(d.replicated) == big_table(100)


def test_a_member_that_takes_parts_gets_the_whole_table_in_parts():
    """As above, every node of a build that takes a hand-over in parts (``PARTS_MARK``): the
    highest-ranked member gets the whole table in parts, each within the limit, and takes
    over once it has the last one, with all of it (clerk._handparts)."""
    net = Net()
    a = net.node("a", 9, incarnation="a-1" + PARTS_MARK + HANDED_MARK + TABLE_MARK)
    b = net.node("b", 5, seeds=["a"], incarnation="b-1" + PARTS_MARK + HANDED_MARK + TABLE_MARK)
    d = net.node("d", 1, seeds=["a"], incarnation="d-1" + PARTS_MARK + HANDED_MARK + TABLE_MARK)
    net.advance(T.heartbeat_interval * 3)
    for core in (a, b, d):
        core.part_chars = 20_000
        core.message_bytes = 35_000
    a.set_replicated(big_table(100))
    net.advance(T.heartbeat_interval * 20)
    a.members.get("b").reset_table()  # b: as if it had just joined (nothing acknowledged)
    effects = net.do(a, LeaveRequested())
    hands = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Handover)]
    assert len(hands) > 1 and {h.to for h in hands} == {addr("b")}
    assert all(sum(len(f) for f in encode(h.msg)) <= 35_000 for h in hands)
    net.run()
    assert b.role is Role.MANAGER and d.role is Role.FOLLOWER
    assert unpack_table(b.replicated) == big_table(100)
    assert a.role is Role.STOPPED


def _two_managers_marked() -> tuple[Net, Any, Any, Any]:
    """As :func:`_two_managers`, every node of a build that reads MERGED (``MERGE_MARK``)."""
    net = Net()
    a = net.node("a", 1, incarnation="a-1" + MERGE_MARK)
    b = net.node("b", 0, seeds=["a"], incarnation="b-1" + MERGE_MARK)
    z = net.node("z", 9, seeds=["a"], start=False, incarnation="z-1" + MERGE_MARK)
    y = net.node("y", 0, seeds=["z"], start=False, incarnation="y-1" + MERGE_MARK)
    net.partition([z, y], [a, b])
    net.do(z, Start())
    net.do(y, Start())
    net.run()
    net.advance(T.join_timeout + T.election_timeout)
    assert y.manager == "z"
    return net, a, b, z


def handover_parts_at_heal(net: Any, a: Any, z: Any, rows: int = 3_000) -> list[Handover]:
    """``a``, manager of one side, holds ``rows`` tasks; the heal makes ``z`` the manager:
    the HANDOVER parts ``a`` sends it (more than one)."""
    a.set_replicated(big_table(rows))
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1)
    hand = net.sends(a, Handover, to=z)
    assert len(hand) > 1
    return hand


def test_each_merged_part_is_confirmed_and_not_sent_again():
    net, a, b, z = _two_managers_marked()
    hand = handover_parts_at_heal(net, a, z)
    acks = net.sends(z, Merged, to=a)
    assert sorted(m.part for m in acks) == sorted(_handover.part_id(h.state) for h in hand)
    assert a.status()["merge"] == {"unconfirmed": 0, "resent": 0}
    mark = net.mark()
    net.advance(_handover.MERGE_GIVE_UP)
    assert not net.sends(a, Handover, after=mark)


def test_a_lost_merge_handover_is_sent_again_until_confirmed():
    """ZeroMQ drops what it queued on a connection that closes: at a heal the old manager
    steps down into a stale connection that is closed moments later. Its parts go again to
    the manager it follows, with a growing wait, until each is confirmed."""
    net, a, b, z = _two_managers_marked()
    a.set_replicated({"tasks": {"t": {"pause": {"paused": True, "node": "a", "at": 1.0}}}})
    net.heal()
    lost: list[Handover] = []
    deliver = net.deliver

    def lossy(src: str, send: Send) -> None:
        if isinstance(send.msg, Handover) and len(lost) < 2:
            lost.append(send.msg)  # the first send and the first retry are lost
            return
        deliver(src, send)

    net.deliver = lossy  # type: ignore[method-assign]
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1) and len(lost) == 1
    assert not [e for e in net.effects(z, StateHandedOver) if e.merge]
    assert a.status()["merge"]["unconfirmed"] == 1
    net.advance(_handover.MERGE_RETRY + 2 * _handover.MERGE_RETRY + 0.1)
    assert len(lost) == 2
    merged = [e for e in net.effects(z, StateHandedOver) if e.merge]
    assert [unpack_table(e.state) for e in merged] == [unpack_table(lost[0].state)]
    assert lost[0].members and not lost[1].members  # a retry has no (maybe stale) list
    assert a.status()["merge"] == {"unconfirmed": 0, "resent": 2}
    mark = net.mark()
    net.advance(_handover.MERGE_GIVE_UP)
    assert not net.sends(a, Handover, after=mark)


def test_an_unconfirmed_merge_is_given_up_after_a_while():
    """A winner of an older build never confirms: it gets the table again
    ``MERGE_OLD_RESENDS`` times (each merge idempotent), then no more. Before, ten times in a
    minute (each the whole table: ~5 MB at 10,000 tasks)."""
    net, a, b, z = _two_managers()  # no MERGE_MARK: z never confirms, a is never told
    a.set_replicated({"from": "a"})
    net.heal()
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1)
    assert not net.sends(z, Merged)
    net.advance(_handover.MERGE_GIVE_UP + _handover.MERGE_RETRY_MAX)
    sent = len(net.sends(a, Handover, to=z))
    assert sent == 1 + _handover.MERGE_OLD_RESENDS
    assert a.status()["merge"]["unconfirmed"] == 0
    mark = net.mark()
    net.advance(2 * _handover.MERGE_RETRY_MAX)
    assert not net.sends(a, Handover, after=mark)


def test_accept_merge_takes_a_member_it_lost_and_confirms_only_a_reader():
    """The winner dropped the old manager's row (silent for the member timeout since the
    takeover) and did not probe it again yet: a member it lost, whose HANDOVER it takes."""
    net, (a, b) = cluster(("a", 1), ("b", 0))
    a._out = []
    z = peer("z", 0, incarnation="z-1" + MERGE_MARK)
    a._lost[z.address] = net.now
    _handover.accept_merge(a, Handover(z, 0, (), {"s": 1}), net.now)
    # (MERGED goes once the task layer merged it: StateHandedOver.confirm)
    confirm = Send(z.address, Merged(a.me, a.term, _handover.part_id({"s": 1})))
    assert StateHandedOver("z", {"s": 1}, True, confirm) in a._out
    a._out = []
    old = peer("o", 0)  # an older build: no MERGED (it would drop an unknown kind)
    a._lost[old.address] = net.now
    _handover.accept_merge(a, Handover(old, 0, (), {"s": 2}), net.now)
    assert StateHandedOver("o", {"s": 2}, True) in a._out
    assert not [e for e in a._out if isinstance(e, Send) and isinstance(e.msg, Merged)]


def test_merged_from_a_stranger_is_dropped():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    b._merge_out["x"] = Handover(b.me, 1, (), None)
    net.do(b, Received(Merged(peer("q", 5), 9, "x")))
    assert b.dropped["merged_stranger"] == 1 and "x" in b._merge_out
    net.do(b, Received(Merged(a.me, a.term, "x")))  # from the manager b follows
    assert not b._merge_out


def test_a_loser_that_claims_again_takes_its_unconfirmed_table_into_its_own():
    """The old manager's HANDOVER was lost and the winner died before a retry: the old one
    claims again (it ranks highest of the rest), and its unconfirmed parts come back to its
    own task layer as a merge, after its ManagerChanged (merged once its table is loaded)."""
    net, a, b, z = _two_managers_marked()
    a.set_replicated({"tasks": {"t": {"pause": {"paused": True, "node": "a", "at": 1.0}}}})
    net.heal()
    deliver = net.deliver
    net.deliver = lambda src, send: (  # type: ignore[method-assign]
        None if isinstance(send.msg, Handover) else deliver(src, send))
    net.advance(T.probe_interval + T.heartbeat_interval * 3)
    assert net.agreed() == ("z", 1) and a.status()["merge"]["unconfirmed"] == 1
    mark = net.mark()
    net.crash(z)
    net.advance(T.manager_timeout + T.election_timeout * 2)
    assert a.role is Role.MANAGER
    kinds = [type(e).__name__ for e in net.effects(a, after=mark)
             if isinstance(e, ManagerChanged | StateHandedOver)]
    assert kinds[-2:] == ["ManagerChanged", "StateHandedOver"]
    back = net.effects(a, StateHandedOver, after=mark)
    assert [(e.sender, e.merge) for e in back] == [("a", True)]
    assert unpack_table(back[0].state)["tasks"]["t"]["pause"]["paused"] is True
    assert a.status()["merge"]["unconfirmed"] == 0
