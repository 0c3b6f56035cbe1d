"""PendingAcks: a manager's RESULT_ACKs held until the members hold the row (pure)."""

from __future__ import annotations

from clerk._resultacks import ACK_WAIT, PendingAcks


def runs(acks: list) -> list[str]:
    return [a.run_id for a in acks]


def test_an_ack_waits_for_its_stamp_and_for_every_member() -> None:
    p = PendingAcks()
    assert p.hold("tcp://a", "t", "r1", now=0.0)
    assert p.holds("r1") and len(p) == 1 and p.waiting_stamp()
    # Not stamped yet (its row is not in the log): nothing goes, whatever the members hold.
    assert p.release("L", 100, now=0.1) == []
    p.stamp("L", 7)
    assert not p.waiting_stamp()
    assert p.release("L", 6, now=0.1) == []  # a member holds only up to 6
    out = p.release("L", 7, now=0.1)
    assert runs(out) == ["r1"] and out[0].to == "tcp://a" and out[0].task == "t"
    assert not p.holds("r1") and len(p) == 0


def test_a_resend_is_held_once() -> None:
    p = PendingAcks()
    assert p.hold("tcp://a", "t", "r1", now=0.0)
    assert not p.hold("tcp://a", "t", "r1", now=0.5)
    p.stamp("L", 3)
    assert runs(p.release("L", 3, now=0.6)) == ["r1"]
    assert p.release("L", 3, now=0.6) == []


def test_released_in_log_order_up_to_what_every_member_holds() -> None:
    p = PendingAcks()
    p.hold("a", "t", "r1", 0.0)
    p.stamp("L", 5)
    p.hold("a", "t", "r2", 0.1)
    p.hold("b", "u", "r3", 0.1)
    p.stamp("L", 9)
    assert runs(p.release("L", 8, now=0.2)) == ["r1"]
    assert runs(p.release("L", 9, now=0.2)) == ["r2", "r3"]


def test_a_stamp_of_another_log_means_nothing_there() -> None:
    p = PendingAcks()
    p.hold("a", "t", "r1", 0.0)
    p.stamp("L1", 5)
    # The members' sequences are of a new log now: the old stamp is not compared with them.
    assert p.release("L2", 100, now=0.1) == []
    p.hold("a", "t", "r2", 0.2)
    p.stamp("L2", 3)  # restamped in the new log, oldest first
    assert p.release("L2", 2, now=0.3) == []
    assert runs(p.release("L2", 3, now=0.3)) == ["r1", "r2"]


def test_held_at_most_ack_wait() -> None:
    p = PendingAcks()
    p.hold("a", "t", "r1", 0.0)
    p.stamp("L", 5)
    p.hold("a", "t", "r2", 1.0)  # unstamped: its row is still being encoded
    assert p.next_deadline() == ACK_WAIT
    assert p.release("L", 4, now=ACK_WAIT - 0.01) == []
    assert runs(p.release("L", 4, now=ACK_WAIT)) == ["r1"]
    assert p.next_deadline() == 1.0 + ACK_WAIT
    assert runs(p.release("L", 4, now=1.0 + ACK_WAIT)) == ["r2"]
    assert p.next_deadline() == float("inf")


def test_clear_forgets_everything() -> None:
    p = PendingAcks()
    p.hold("a", "t", "r1", 0.0)
    p.stamp("L", 1)
    p.hold("a", "t", "r2", 0.0)
    p.clear()
    assert len(p) == 0 and not p.holds("r1") and p.release("L", 10, now=9.0) == []


def test_a_leaving_manager_releases_every_held_ack() -> None:
    """``take_all``: stamped and unstamped, in the order held; nothing held after."""
    acks = PendingAcks()
    acks.hold("a:1", "t", "r1", 0.0)
    acks.stamp("log", 3)
    acks.hold("b:1", "t", "r2", 0.1)
    assert [a.run_id for a in acks.take_all()] == ["r1", "r2"]
    assert len(acks) == 0 and not acks.holds("r1") and acks.take_all() == []
