"""The holder incarnation a member that left knows (``CoreState._left_holder``,
clerk._leftmember, "A claim's holder restarted") is the one it followed, as that holder
announced itself, not its member list's row: right after following a claim (before the
holder's list came) the row is the holder's previous incarnation."""

from dataclasses import replace

from clerk._core import LeaveRequested, LeftHeard, Received, Role
from clerk._messages import Claim, Coordinator, Heartbeat
from tests.unit.corenet import addr, cluster


def test_a_member_that_left_right_after_following_a_reborn_holder() -> None:
    """b restarted (b-2) and claims term 5; c follows that COORDINATOR and leaves before
    b-2's member list reaches it (its row for b is still b-1). b-2's own COORDINATOR of that
    claim is the manager c followed: nothing (before: a LeftHeard, c's OFFER, results and
    LEAVE sent again to the manager that had them). A third life of b, claiming the same key
    again, is still a new manager."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    reborn = replace(b.me, incarnation="b-2")
    claim = Claim(5, 1, "b", addr("b"))
    net.do(c, Received(Coordinator(reborn, 5, claim)))
    assert c.role is Role.FOLLOWER and c._claim == claim
    assert c.members.get("b").peer.incarnation == "b-1"  # (the list did not come yet)
    net.do(c, LeaveRequested())
    assert c.role is Role.STOPPED and c._left_holder == "b-2"
    assert net.do(c, Received(Coordinator(reborn, 5, claim))) == []
    third = replace(b.me, incarnation="b-3")
    assert net.do(c, Received(Coordinator(third, 5, claim))) == [LeftHeard("b", addr("b"))]


def test_a_heartbeat_of_the_followed_holder_names_it_too() -> None:
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    reborn = replace(b.me, incarnation="b-2")
    net.do(c, Received(Heartbeat(reborn, 5, 1, 0)))
    assert c._claim == Claim(5, 1, "b", addr("b"))
    net.do(c, LeaveRequested())
    assert c._left_holder == "b-2"


def test_the_member_row_still_serves_when_the_holder_never_spoke_since() -> None:
    """c followed a (its row a-1) from the start: as before."""
    net, (a, b, c) = cluster(("a", 2), ("b", 1), ("c", 0))
    net.do(c, LeaveRequested())
    assert c._left_holder == "a-1"
