"""The dispatch window (clerk._lead): a tick that sends a slot also sends the slots due within
the window after it, and nothing else changes (the pure Scheduler, fake wall times)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clerk._lead import DISPATCH_WINDOW_MS, MAX_DISPATCH_LEAD_MS, window_for
from clerk._schedule import Scheduler, phase_ms
from tests.unit.test_schedule import IV, K, due, tdef

LEAD = 20.0  # ms
L = LEAD / 1000  # s
W = window_for(LEAD) / 1000  # s
NAMES = [f"w{i}" for i in range(400)]


def after(first: str, lo_ms: float, hi_ms: float, skip: tuple[str, ...] = ()) -> str:
    """A task name whose slots fall ``lo_ms``..``hi_ms`` after ``first``'s (same slot k)."""
    base = phase_ms(first, IV)
    for name in NAMES:
        if name != first and name not in skip and lo_ms <= phase_ms(name, IV) - base <= hi_ms:
            return name
    raise AssertionError("no such name")  # pragma: no cover (400 names over 1 s: never)


A = NAMES[0] if phase_ms(NAMES[0], IV) < 900 else NAMES[1]
B = after(A, 2, DISPATCH_WINDOW_MS - 3)  # due within the window after A
C = after(A, DISPATCH_WINDOW_MS + 3, DISPATCH_WINDOW_MS + 15, skip=(B,))  # beyond it


def sched(*names: str, lead: float = LEAD, timeout: int = 500) -> Scheduler:
    return Scheduler([tdef(n, timeout=timeout) for n in names], random.Random(1),
                     dispatch_lead_ms=lead)


def members(*names: str) -> dict[str, tuple[str, ...]]:
    return {m: tuple(names) for m in ("a", "b", "c")}


def test_the_window_goes_with_the_lead_and_stays_within_the_takeover_guard() -> None:
    assert DISPATCH_WINDOW_MS > 0
    assert window_for(0) == 0  # no lead: sent at the due time, no window either
    assert window_for(MAX_DISPATCH_LEAD_MS) == 0
    for lead in range(MAX_DISPATCH_LEAD_MS + 1):
        assert 0 <= window_for(lead) and lead + window_for(lead) <= MAX_DISPATCH_LEAD_MS
    assert sched(A, lead=LEAD).dispatch_window_ms == DISPATCH_WINDOW_MS


def test_a_tick_that_dispatches_also_sends_the_slots_due_within_the_window() -> None:
    names = (A, B, C)
    s = sched(*names)
    m = members(*names)
    s.activate(due(A, K) - 0.5, graceful=False)
    # The manager wakes for A's instant only (the window never wakes it by itself) ...
    assert s.next_deadline(due(A, K) - 0.5) == pytest.approx(due(A, K) - L)
    assert s.tick(due(A, K) - L - 0.001, m) == ([], [])
    # ... and that tick sends B too, due later, with its own due time; not C (beyond).
    ds, _ = s.tick(due(A, K) - L, m)
    assert [(d.task, d.slot) for d in ds] == [(A, K), (B, K)]
    assert [d.due_ms for d in ds] == [int(due(A, K) * 1000), int(due(B, K) * 1000)]
    assert ds[1].deadline_ms == ds[1].due_ms + 500  # its clock starts at its own due time
    # B's own instant has nothing left to send; C goes at its own, its lead ahead.
    assert s.next_deadline(due(A, K) - L) == pytest.approx(due(C, K) - L)
    assert s.tick(due(B, K) - L, m)[0] == []
    assert [(d.task, d.slot) for d in s.tick(due(C, K) - L, m)[0]] == [(C, K)]


def test_no_lead_no_window() -> None:
    s = sched(A, B, lead=0)
    m = members(A, B)
    s.activate(due(A, K) - 0.5, graceful=False)
    ds, _ = s.tick(due(A, K), m)
    assert [d.task for d in ds] == [A]
    assert [d.task for d in s.tick(due(B, K), m)[0]] == [B]


def test_in_flight_at_a_window_instant_the_decision_waits_for_the_due_time() -> None:
    """B's previous run is still in flight when A's tick reaches B's next slot: not sent then
    (never overlapped); sent at its due time if the run ended meanwhile, else skipped."""
    s = sched(A, B, timeout=5000)
    m = members(A, B)
    s.activate(due(A, K) - 0.5, graceful=False)
    first, _ = s.tick(due(A, K) - L, m)
    assert [d.task for d in first] == [A, B]
    run_b = first[1]
    s.on_result(A, first[0].run_id, first[0].node, "ok", 1, 1.0, "", due(A, K) + 0.001)
    # Slot K+1: A's tick would take B along, but B's slot K is still running.
    ds, _ = s.tick(due(A, K + 1) - L, m)
    assert [d.task for d in ds] == [A]
    assert s.records[B].counts["skipped"] == 0
    assert s.next_deadline(due(A, K + 1) - L) == pytest.approx(due(B, K + 1))
    s.on_result(B, run_b.run_id, run_b.node, "ok", 1, 1.0, "", due(B, K + 1) - 0.001)
    ds, _ = s.tick(due(B, K + 1), m)
    assert [(d.task, d.slot) for d in ds] == [(B, K + 1)]
    assert s.records[B].counts["skipped"] == 0
    # Slot K+2: still in flight at its due time: skipped, never overlapped.
    flight = s.records[A].running
    assert flight is not None
    s.on_result(A, flight["run"], flight["node"], "ok", 2, 1.0, "", due(A, K + 1) + 0.001)
    ds, _ = s.tick(due(A, K + 2) - L, m)
    assert [d.task for d in ds] == [A]
    assert s.tick(due(B, K + 2), m)[0] == []
    assert s.records[B].counts["skipped"] == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.integers(0, 40), min_size=20, max_size=120),
       lead=st.sampled_from([0.0, 5.0, 20.0, 35.0, 50.0]))
def test_property_sent_within_lead_plus_window_once_per_slot_never_overlapped(
        n: int, seed: int, steps: list[int], lead: float) -> None:
    """Random tasks, ticks at random steps, results after random delays: every slot is sent
    at most once, never more than the lead plus the window ahead of its due time, never while
    a run of its task is in flight, and a run sent ahead carries its slot's due time."""
    rng = random.Random(seed)
    names = rng.sample(NAMES, n)
    s = sched(*names, lead=lead, timeout=5000)
    m = members(*names)
    ahead_ms = lead + window_for(lead)
    wall = due(names[0], K) - 0.2
    s.activate(wall, graceful=False)
    sent: set[tuple[str, int]] = set()
    open_runs: dict[str, tuple[str, str, float]] = {}  # task -> run id, node, ends at
    for step in steps:
        wall += step / 1000
        for name, (run_id, node, ends) in list(open_runs.items()):
            if ends <= wall:
                del open_runs[name]
                s.on_result(name, run_id, node, "ok", 1, 1.0, "", ends)
        ds, _ = s.tick(wall, m)
        for d in ds:
            assert (d.task, d.slot) not in sent
            sent.add((d.task, d.slot))
            assert d.task not in open_runs
            assert d.due_ms == int(due(d.task, d.slot) * 1000)
            assert d.due_ms - wall * 1000 <= ahead_ms + 1e-6
            # it ends some time after its due time (sometimes past the next slot's)
            open_runs[d.task] = (d.run_id, d.node,
                                 max(wall, d.due_ms / 1000) + rng.choice([0.001, 0.03, 1.2]))
