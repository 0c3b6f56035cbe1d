"""ACKs of heartbeats (:func:`clerk._heartbeats.acknowledge`), through NodeCore on the in-test
router (:mod:`tests.unit.corenet`): a follower answers the list at once, table changes at
most once per heartbeat interval (a burst of rounds once, the rest with the next heartbeat),
an idle heartbeat only every ``member_timeout / ACKS_PER_TIMEOUT``; voters answer every one;
a stalled manager still gets its confirmation at once; idle members are never dropped."""

import random

import pytest

from clerk._core import MemberDown, NodeCore, Received, Role, Send, Tick
from clerk._heartbeats import ACKS_PER_TIMEOUT
from clerk._messages import Ack, Heartbeat, MemberInfo, Peer
from clerk._timings import Timings
from tests.unit import corenet
from tests.unit.corenet import T, addr, cluster

EVERY = T.member_timeout / ACKS_PER_TIMEOUT


def test_an_idle_member_acks_a_few_times_per_member_timeout_not_every_heartbeat():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.advance(1.0)
    since = net.mark()
    net.advance(4.0)
    beats = net.sends(a, Heartbeat, to=b, after=since)
    acks = net.sends(b, Ack, after=since)
    assert len(beats) >= 39  # the manager still heartbeats every 100 ms ...
    assert all(h.members is None and h.table is None for h in beats)
    # ... and an idle member answers every 0.5 s (a heartbeat later at most)
    assert 4.0 / (EVERY + T.heartbeat_interval) - 1 <= len(acks) <= 4.0 / EVERY + 1
    assert {k.seq for k in acks} <= {h.seq for h in beats}
    assert all((k.term, k.epoch) == (1, a.members.epoch) for k in acks)


def test_idle_members_are_never_dropped_and_a_silent_one_still_is():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    since = net.mark()
    net.advance(T.member_timeout * 5)
    assert net.effects(a, MemberDown, after=since) == []
    assert all(a.members.get(n).alive for n in ("b", "c"))
    # A member that stops answering (its loop stalls; its connection stays up) is dropped
    # after the member timeout, as before: the timeout kept its meaning.
    net.down.add(addr("c"))
    stalled = net.now
    net.advance(T.member_timeout + 2 * T.heartbeat_interval)
    assert net.effects(a, MemberDown, after=since) == [MemberDown("c", "silent")]
    assert "c" not in a.members
    # c's last ACK was at most EVERY before its stall: dropped within the timeout after it
    (down_at,) = [t for t, who, e in net.log if who == addr("a") and isinstance(e, MemberDown)]
    assert stalled + T.member_timeout - EVERY - T.heartbeat_interval <= down_at
    assert down_at <= stalled + T.member_timeout + T.heartbeat_interval


def test_a_heartbeat_with_table_changes_or_the_list_is_acked_at_once():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.advance(1.0)
    for n in range(3):  # at any phase of the members' idle ACKs
        net.advance(0.1 * (n + 1))
        a.set_replicated({"tasks": {"t": n}})
        since = net.mark()
        net.advance(T.heartbeat_interval)
        (beat,) = net.sends(a, Heartbeat, to=b, after=since)
        assert beat.table is not None
        (ack,) = net.sends(b, Ack, after=since)
        assert (ack.seq, ack.table, ack.log) == (beat.seq, a.table_log.seq, a.table_log.log)
    # The list changes (a member joins): everyone gets it with the next heartbeat, and ACKs
    # that heartbeat, so the list is not sent again.
    since = net.mark()
    net.node("d", 0, seeds=["a"])
    net.advance(T.heartbeat_interval)
    for member in (b, c):
        (beat,) = net.sends(a, Heartbeat, to=member, after=since)
        assert beat.members is not None
        (ack,) = net.sends(member, Ack, after=since)
        assert (ack.seq, ack.epoch) == (beat.seq, a.members.epoch)
    since = net.mark()
    net.advance(T.heartbeat_interval * 3)
    assert all(h.members is None for h in net.sends(a, Heartbeat, after=since))


def test_a_burst_of_replication_rounds_is_acked_once_and_the_rest_by_the_next_heartbeat():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.advance(1.0)
    since = net.mark()
    for n in range(5):  # five results replicated at once, 10 ms apart
        net.now += 0.01
        a.set_replicated({"tasks": {"t": n}})
        for e in a.heartbeat_now(net.now):
            net.log.append((net.now, a.me.address, e))
            if isinstance(e, Send):
                net.queue.append((a.me.address, e))
        net.run()
    rounds = net.sends(a, Heartbeat, to=b, after=since)
    assert len(rounds) == 5 and all(h.table is not None for h in rounds)
    assert b.replicated == {"tasks": {"t": 4}}
    for member in (b, c):
        assert len(net.sends(member, Ack, after=since)) <= 1
    net.advance(T.heartbeat_interval)
    for member in (b, c):  # the next heartbeat's ACK says what was held back
        last = net.sends(member, Ack, after=since)[-1]
        assert (last.table, last.log) == (a.table_log.seq, a.table_log.log)
        assert a.members.get(member.me.name).acked_table == a.table_log.seq


def test_a_stalled_manager_is_confirmed_at_once_even_when_acks_are_rarer_than_its_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Idle ACKs every 1 s, above the 0.7 s manager timeout: a member may have ACKed just
    # before the manager froze, and only the list in the stall's round makes it ACK now.
    slow = Timings(member_timeout=4.0)
    monkeypatch.setattr(corenet, "T", slow)
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.advance(3.0)
    net.partition([a], [b, c])  # a's heartbeats stop reaching them: they do not elect
    net.advance(slow.heartbeat_interval)
    for f in (b, c):
        f._last_heard = net.now + 10  # (followers that do not elect meanwhile)
    net.down.add(addr("a"))
    net.advance(slow.manager_timeout + 0.05)
    net.down.discard(addr("a"))
    net.heal()
    for f in (b, c):
        f._acked_at = net.now  # each ACKed just now: no idle ACK due for a second
    net.do(a, Tick())
    assert not a.dispatch_ok
    net.run()
    assert a.dispatch_ok and a.role is Role.MANAGER


def _follower(voters: tuple[str, ...]) -> NodeCore:
    return NodeCore(Peer("b", "b:1", "inc-b", 0), now=0.0, rng=random.Random(1),
                    voters=voters, seeds=("a:1",))


def _idle_acks(core: NodeCore) -> int:
    a = Peer("a", "a:1", "inc-a", 9)
    members = tuple(MemberInfo(p.name, p.address, p.incarnation, p.priority, True, ())
                    for p in (a, core.me))
    acks = 0
    for i in range(1, 41):
        beat = Heartbeat(a, 1, i, 3, members if i == 1 else None, None)
        effects = core.handle(Received(beat), i * 0.1)
        acks += sum(1 for e in effects if isinstance(e, Send) and isinstance(e.msg, Ack)
                    and e.msg.seq == i)
    assert core.role is Role.FOLLOWER and core.manager == "a"
    return acks


def test_a_voter_acks_every_heartbeat_a_non_voter_a_few():
    # Check-quorum counts the voters heard within the manager timeout: voters keep answering
    # every heartbeat (at most 7 of them: O(1) in members).
    assert _idle_acks(_follower(("a", "b", "c"))) == 40
    assert _idle_acks(_follower(("a", "c", "d"))) <= 40 * T.heartbeat_interval / EVERY + 1
    assert _idle_acks(_follower(())) <= 40 * T.heartbeat_interval / EVERY + 1
