"""The outbox of results (clerk._outbox): kept until acknowledged, resent, bounded."""

from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._messages import Peer, Result
from clerk._outbox import KEEP_MAX, KEEP_SECONDS, RESEND_INTERVAL, Outbox

ME = Peer("n", "n:7400", "i", 0)


def result(run: str) -> Result:
    return Result(ME, 1, "t", run, 1, "ok", {"n": 1})


def test_unacked_results_go_to_a_new_manager_until_acknowledged() -> None:
    box = Outbox()
    box.add(result("r1"), 0.0)
    box.add(result("r2"), 0.0)
    assert {r.run_id for r in box.unacked(0.1)} == {"r1", "r2"} and box.pending() == 2
    assert box.ack("r1") and not box.ack("r1") and not box.ack("nope")
    assert [r.run_id for r in box.unacked(0.2)] == ["r2"]
    # Acknowledged results are still there to answer a new manager's question.
    assert box.find("r1") == result("r1") and box.find("nope") is None


def test_resent_every_interval_and_forgotten_after_keep_seconds() -> None:
    box = Outbox()
    box.add(result("r1"), 10.0)
    assert box.next_deadline() == 10.0 + RESEND_INTERVAL
    assert box.due(10.0 + RESEND_INTERVAL / 2) == []
    assert [r.run_id for r in box.due(10.0 + RESEND_INTERVAL)] == ["r1"]
    assert box.due(10.0 + RESEND_INTERVAL * 1.5) == []  # sent just now
    box.ack("r1")
    assert box.next_deadline() == float("inf") and box.due(11.0 + RESEND_INTERVAL) == []
    assert box.due(10.0 + KEEP_SECONDS) == [] and box.find("r1") is None and len(box) == 0


def test_bounded() -> None:
    box = Outbox()
    for i in range(KEEP_MAX + 10):
        box.add(result(f"r{i}"), 0.0)
    assert len(box) == KEEP_MAX and box.pending() == KEEP_MAX
    assert box.find("r0") is None and box.find(f"r{KEEP_MAX + 9}") is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "ack", "due", "unacked"]),
                          st.integers(0, 7), st.floats(0.0, 0.9)), max_size=60))
def test_resends_and_deadline_match_a_scan_of_every_open_result(
        ops: list[tuple[str, int, float]]) -> None:
    """The open results are kept least recently sent first, so that the next resend is O(1)
    for every loop turn: what is due, and when, is what a scan of every open result says.
    (At most 60 steps of 0.9 s: under KEEP_SECONDS, so nothing is forgotten meanwhile.)"""
    box = Outbox()
    sent: dict[str, float] = {}  # the model: open run id -> last sent
    now = 0.0
    for op, i, step in ops:
        now += step
        run = f"r{i}"
        if op == "add":
            box.add(result(run), now)
            sent[run] = now
        elif op == "ack":
            assert box.ack(run) == (run in sent)
            sent.pop(run, None)
        elif op == "due":
            due = {r for r, t in sent.items() if now - t >= RESEND_INTERVAL}
            assert {r.run_id for r in box.due(now)} == due
            sent.update(dict.fromkeys(due, now))
        else:
            assert {r.run_id for r in box.unacked(now)} == set(sent)
            sent = dict.fromkeys(sent, now)
        assert box.pending() == len(sent)
        assert box.next_deadline() == min((t + RESEND_INTERVAL for t in sent.values()),
                                          default=float("inf"))


def test_waiting_lists_the_unacknowledged_without_marking_them_sent() -> None:
    """A member that left reads which results still wait (clerk._routing,
    ``left_results_taken``) every turn: that must not push their resends back."""
    box = Outbox()
    box.add(result("a"), 0.0)
    box.add(result("b"), 0.0)
    box.ack("a")
    assert [r.run_id for r in box.waiting()] == ["b"]
    assert [r.run_id for r in box.due(RESEND_INTERVAL)] == ["b"]
