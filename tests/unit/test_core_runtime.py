"""NodeCore (fake clock): a stalled manager's fence, advertised tasks, stale EXECUTEs, messages
only the current manager may send, and a HANDOVER that comes back to its sender (issue 9)."""

import pytest

from clerk._core import (
    Deliver,
    Dropped,
    NodeCore,
    PeerDown,
    PeerUp,
    Received,
    Role,
    Send,
    StaleExecute,
    Start,
    Tick,
)
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Execute,
    Handover,
    Heartbeat,
    Join,
    ResultAck,
    RunQuery,
)
from tests.unit.corenet import Net, T, addr, cluster, peer


def test_a_stalled_manager_that_was_replaced_never_may_dispatch_and_steps_down():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    assert a.dispatch_ok
    net.down.add(addr("a"))  # SIGSTOP of the manager
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout)
    assert (b.role, c.manager) == (Role.MANAGER, "b")
    net.down.discard(addr("a"))  # SIGCONT: a still believes it is the manager of term 1
    seq_before = a._seq
    effects = net.do(a, Tick())  # the first event after the resume shows the time jump
    assert a.role is Role.MANAGER and not a.dispatch_ok and a.stalls == 1
    # It asked at once: a heartbeat round to every member.
    beats = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Heartbeat)]
    assert {m.seq for m in beats} == {seq_before + 1} and len(beats) == 2
    # An ACK sent before the stall (queued in ZeroMQ meanwhile) confirms nothing.
    net.do(a, Received(Ack(c.me, 1, seq_before, -1)))
    assert not a.dispatch_ok
    while net.queue:  # the members answer with the newer claim: a follows it
        net.deliver(*net.queue.popleft())
        assert not a.dispatch_ok
    assert a.role is Role.FOLLOWER and a.manager == "b"
    assert net.agreed() == ("b", 2)


def test_a_stalled_manager_still_followed_is_confirmed_by_the_next_ack():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.down.add(addr("a"))
    net.advance(T.manager_timeout + 0.02)  # b is probing a, nobody has taken over yet
    assert b.role is Role.CANDIDATE
    net.down.discard(addr("a"))
    net.do(a, Tick())
    assert not a.dispatch_ok
    net.run()  # heartbeats out, ACKs of that round back
    assert a.dispatch_ok and a.role is Role.MANAGER
    net.advance(T.heartbeat_interval * 2)
    assert net.agreed() == ("a", 1)
    # A gap shorter than the manager timeout is an ordinary turn of the loop.
    net.now += T.manager_timeout * 0.9
    net.do(a, Tick())
    assert a.dispatch_ok and a.stalls == 1


def test_a_stalled_manager_gives_members_a_full_timeout_and_is_alone_only_after_it():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.partition([a], [b, c])
    net.down.add(addr("a"))
    net.advance(5.0)  # far beyond member_timeout: still not a reason to drop them at once
    net.down.discard(addr("a"))
    effects = net.do(a, Tick())
    assert not any(e for e in effects if type(e).__name__ == "MemberDown")
    assert not a.dispatch_ok
    net.advance(T.member_timeout - 0.2)
    assert not a.dispatch_ok and a.role is Role.MANAGER
    net.advance(0.4)  # nobody answered for a member timeout: a runs its own side
    assert a.dispatch_ok and not any(m.alive for m in a.members.others())


def test_disconnects_right_after_the_resume_neither_kill_members_nor_confirm_a_manager():
    # While a was stopped its peers closed its connections (ZeroMQ heartbeats): the socket
    # monitor reports each as down the moment a resumes. Those are not crashes.
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.partition([a], [b, c])  # (so that the newer claim cannot reach a in this test)
    net.down.add(addr("a"))
    net.advance(3.0)
    net.down.discard(addr("a"))
    net.do(a, Tick())
    effects = net.do(a, PeerDown(addr("b"))) + net.do(a, PeerDown(addr("c")))
    assert not any(type(e).__name__ == "MemberDown" for e in effects)
    assert all(m.alive for m in a.members.others())
    assert not a.dispatch_ok
    net.advance(T.member_timeout - 0.2)
    assert not a.dispatch_ok


def test_a_resumed_ex_manager_does_not_elect_itself_on_the_disconnects_of_its_freeze():
    # tools/chaos.py seed 2: the resumed manager followed its successor's claim, then the
    # successor's stale disconnect made it probe for 25 ms, win alone at term+1 and run a slot
    # on its old table. Now it stays a follower of the successor.
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.down.add(addr("a"))
    net.advance(T.manager_timeout + T.election_timeout + T.coordinator_timeout + 2.0)
    assert (b.role, c.manager) == (Role.MANAGER, "b")
    net.down.discard(addr("a"))
    net.do(a, Received(Coordinator(b.me, b.term, b.manager_claim)))
    assert (a.role, a.manager) == (Role.FOLLOWER, "b")
    net.do(a, PeerDown(addr("b")))
    net.do(a, PeerDown(addr("c")))
    assert (a.role, a.manager) == (Role.FOLLOWER, "b")
    net.advance(T.member_timeout)
    assert net.agreed() == ("b", 2) and a.role is Role.FOLLOWER


def test_a_manager_alone_is_never_fenced():
    net, (a,) = cluster(("a", 1))
    net.now += 10.0
    net.do(a, Tick())
    assert a.dispatch_ok and a.stalls == 1


def test_set_tasks_reaches_the_managers_member_list():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    assert a.members.get("b").tasks == ()
    net.do(b, Tick())
    effects = b.set_tasks(("t1", "t2"), net.now)
    joins = [e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, Join)]
    assert [j.tasks for j in joins] == [("t1", "t2")]
    for e in effects:
        if isinstance(e, Send):
            net.queue.append((b.me.address, e))
    net.run()
    assert a.members.get("b").tasks == ("t1", "t2")
    net.advance(T.heartbeat_interval * 3)
    assert b.members.get("b").tasks == ("t1", "t2")
    # The manager's own tasks go out with its member list.
    a.set_tasks(("t1",), net.now)
    net.advance(T.heartbeat_interval * 2)
    assert b.members.get("a").tasks == ("t1",)


def test_a_follower_whose_tasks_the_manager_lost_joins_again():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    b.tasks = ("t1",)  # advertised by a JOIN the manager never got
    assert a.members.get("b").tasks == ()
    mark = net.mark()
    # The list changes (its own epoch moves): the next heartbeat carries the list, which shows
    # no tasks for b. (A bump of the epoch alone is a table change: the table goes, not the list.)
    a.members.epoch += 1
    a.members.list_epoch = a.members.epoch
    net.advance(T.heartbeat_interval * 2)
    assert [j.tasks for j in net.sends(b, Join, to=a, after=mark)] == [("t1",)]
    assert a.members.get("b").tasks == ("t1",)


@pytest.mark.parametrize("digests", [False, True], ids=["entries", "by-digest"])
def test_a_joiner_welcomed_for_a_join_older_than_its_tasks_joins_again(digests):
    # A node JOINs before its workers are ready (no tasks), then announces its tasks; its
    # first JOIN reaches the manager last (the transport let a later message overtake it:
    # tests/integration/test_members_big.py, issue 11). The manager takes the stale entries
    # and WELCOMEs it with them; no heartbeat brings the list again once the joiner ACKs
    # that epoch, so the joiner must JOIN again on the WELCOME itself.
    inc = "+d" if digests else ""
    net = Net()
    a = net.node("a", 1, incarnation="a-1" + inc)
    net.advance(T.heartbeat_interval * 3)
    b = net.node("b", 0, seeds=["a"], incarnation="b-1" + inc, start=False)
    net.do(b, Start())
    stale = net.queue.popleft()  # JOIN with no tasks, held back
    assert not net.queue and isinstance(stale[1].msg, Join) and stale[1].msg.tasks == ()
    assert b.set_tasks(("t1", "t2"), net.now) == []  # (joining: the next JOIN carries them)
    net.advance(T.join_retry + T.heartbeat_interval * 3)
    assert b.role is Role.FOLLOWER and a.members.get("b").tasks == ("t1", "t2")
    mark = net.mark()
    net.deliver(*stale)  # the old JOIN arrives after all
    net.run()
    net.advance(T.heartbeat_interval * 5)
    assert [j.tasks for j in net.sends(b, Join, to=a, after=mark)] == [("t1", "t2")]
    assert a.members.get("b").tasks == ("t1", "t2")


def test_a_joiner_whose_tasks_came_before_its_welcome_is_listed_with_them():
    # No message overtakes another here. The joiner's workers are ready after its first JOIN
    # (no tasks) left and before the WELCOME (answering it) came: JOINING, it sent nothing
    # for them. It follows (ACK epoch -1: "send me the list"), but a heartbeat without the
    # list came right behind the WELCOME, and its loop, slow, ACKs that with the WELCOME's
    # epoch right behind the first ACK: the manager took the list as seen and never sent it
    # again (the CI failure of tests/integration/test_members_big.py: its n5 was ready 1 ms
    # before it followed).
    net = Net()
    a = net.node("a", 1, incarnation="a-1+d")
    net.advance(T.heartbeat_interval * 3)
    b = net.node("b", 0, seeds=["a"], incarnation="b-1+d", start=False)
    net.do(b, Start())
    assert b.set_tasks(("t1", "t2"), net.now) == []  # workers ready while joining
    net.deliver(*net.queue.popleft())  # the JOIN without tasks: the WELCOME
    welcome = net.queue.popleft()
    beat = []
    while not beat:  # the manager's next heartbeat round, before b reads the WELCOME
        net.now = max(net.now, a.next_deadline())
        net.do(a, Tick())
        beat = [q for q in net.queue if isinstance(q[1].msg, Heartbeat) and q[1].to == addr("b")]
    net.queue.clear()
    assert beat[0][1].msg.members is None
    mark = net.mark()
    net.deliver(*welcome)
    net.now += T.heartbeat_interval  # b's loop was busy
    net.deliver(*beat[0])
    net.run()
    net.advance(T.heartbeat_interval * 10)
    assert [j.tasks for j in net.sends(b, Join, to=a, after=mark)] == [("t1", "t2")]
    assert a.members.get("b").tasks == ("t1", "t2")


def test_an_execute_from_a_stale_claim_is_reported_as_stale():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    net.do(b, Received(Coordinator(peer("n", 0), 2, Claim(2, 0, "n", addr("n")))))
    late = Execute(a.me, 1, "t", "run-2", 8, None, 1000)
    effects = net.do(b, Received(late))
    (stale,) = [e for e in effects if isinstance(e, StaleExecute)]
    assert stale.msg == late and "below the highest" in stale.reason


def test_an_execute_is_delivered_only_under_the_exact_claim_followed():
    """The claim an EXECUTE stands for is compared by its key (term, priority, name): the
    manager's own is delivered; its name at another priority or term is not."""
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    run = Execute(a.me, 1, "t", "run-1", 1, None, 1000)
    assert net.do(c, Received(run)) == [Deliver(run)]
    for sender, term in ((peer("a", 8), 1), (a.me, 2), (b.me, 1)):
        other = Execute(sender, term, "t", "run-2", 2, None, 1000)
        assert Deliver(other) not in net.do(c, Received(other))


def test_result_ack_and_run_query_only_from_the_manager_we_follow():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    for msg in (ResultAck(a.me, 1, "t", "r1"), RunQuery(a.me, 1, "t", "r1")):
        assert net.do(c, Received(msg)) == [Deliver(msg)]
    for msg in (ResultAck(b.me, 1, "t", "r1"), RunQuery(b.me, 1, "t", "r1"),
                RunQuery(a.me, 0, "t", "r1")):
        assert not any(isinstance(e, Deliver) for e in net.do(c, Received(msg)))


def test_a_handover_returning_to_its_sender_is_not_impersonation():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    back = Handover(a.me, a.term, a.member_list(), None)
    effects = net.do(a, Received(back))
    assert not any(isinstance(e, Dropped) for e in effects)
    assert not a.dropped and a.returned_handovers == 1
    # Anything else in our own name still is.
    effects = net.do(a, Received(Join(a.me, a.term)))
    assert [e.reason for e in effects if isinstance(e, Dropped)] == ["impersonation"]


def test_dispatch_ok_only_for_a_manager():
    net, (a, b) = cluster(("a", 1), ("b", 0))
    assert a.dispatch_ok and not b.dispatch_ok
    assert isinstance(a, NodeCore)


def test_a_link_coming_back_up_to_a_lost_node_gets_our_claim_at_once():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.partition([c], [a, b])
    net.advance(T.member_timeout + 0.3)  # a drops c from its list: c is lost, probed each 1 s
    assert a.members.get("c") is None and addr("c") in a._lost
    effects = net.do(a, PeerUp(addr("c")))
    told = [e.msg for e in effects if isinstance(e, Send) and e.to == addr("c")]
    assert [type(m) for m in told] == [Coordinator] and told[0].claim == a.manager_claim
    # A link to a member, or to a stranger, is nothing to act on.
    assert net.do(a, PeerUp(addr("b"))) == []
    assert net.do(a, PeerUp("stranger:1")) == []


def test_an_execute_from_the_manager_we_gave_up_on_is_stale_not_a_forgery():
    net, (a, b, c) = cluster(("a", 9), ("b", 5), ("c", 1))
    net.down.add(addr("a"))
    net.advance(T.manager_timeout + 0.02)  # b gave up on a, and is electing
    assert b.role is Role.CANDIDATE
    queued = Execute(a.me, 1, "t", "run-9", 9, None, 1000)  # a's, sent before it went silent
    effects = net.do(b, Received(queued))
    assert [type(e) for e in effects if isinstance(e, StaleExecute | Dropped)] == [StaleExecute]
    assert not b.dropped
    refused = [e.msg for e in effects if isinstance(e, Send)]
    assert [r.outcome for r in refused] == ["refused"]
