"""The rows a scheduler marks changed (``take_dirty``): replication encodes exactly those again
(clerk._replicalog.RowEncoder), so a row whose text changed and is not marked would never reach
the members; a row marked without a change costs an encoding for nothing (a tick that finds its
slot not due yet, or deferred to its due time while the previous run is in flight)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._dispatch import Dispatch
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from tests.unit.test_schedule import K, due, tdef
from tests.unit.test_schedule_tick import NAMES, OPS, members


def texts(s: Scheduler) -> dict[str, str]:
    return {n: r.to_text() for n, r in s.records.items()}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}


def test_a_tick_before_the_slot_or_deferred_marks_no_row() -> None:
    s = Scheduler([tdef("t", timeout=5000)], random.Random(1), dispatch_lead_ms=20.0)
    at = due("t", K) + 0.01
    s.activate(at, graceful=False)
    s.take_dirty()
    assert s.tick(at + 0.1, members("t")) == ([], [])  # the next slot is 0.9 s away
    assert s.take_dirty() == ([], False)
    ds, _ = s.tick(due("t", K + 1) - 0.01, members("t"))  # within the lead: sent
    assert [d.slot for d in ds] == [K + 1]
    assert s.take_dirty()[0] == ["t"]
    # The next slot comes within the lead while that run is still in flight: deferred to
    # its due time, the row as it was.
    assert s.tick(due("t", K + 2) - 0.01, members("t")) == ([], [])
    assert s._deferred
    assert s.take_dirty()[0] == []
    # At its due time, still in flight: skipped, counted (the row changed).
    assert s.tick(due("t", K + 2), members("t")) == ([], [])
    assert s.records["t"].counts["skipped"] == 1
    assert s.take_dirty()[0] == ["t"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 1000), lead=st.sampled_from([0.0, 20.0, 50.0]))
def test_every_row_whose_text_changed_is_marked(ops: list[tuple[str, int, float]],
                                                seed: int, lead: float) -> None:
    rng = random.Random(seed)
    defs = [tdef(f"t{k}", rng.choice([100, 200, 300, None]), timeout=rng.choice([50, 150, 2000]),
                 instant=rng.random() < 0.2, enabled=rng.random() > 0.1) for k in range(6)]
    defs = [d if d.interval is not None or d.instant else TaskDef(
        name=d.name, target=d.target, interval=None, timeout=d.timeout, instant=True,
        enabled=d.enabled, args=None) for d in defs]
    names = [d.name for d in defs]
    s = Scheduler(defs, random.Random(seed), dispatch_lead_ms=lead)
    wall = 1_800_000_000.0 + rng.random()
    s.activate(wall, graceful=False, claim=(1, "a"))
    loaded = {n: tuple(names) for n in NAMES}
    sent: list[Dispatch] = []
    s.take_dirty()
    for op, k, dt in ops:
        wall += dt
        name = names[k % len(names)]
        before = texts(s)
        if op in ("tick", "wait", "deploy", "takeover", "fail"):
            ds, _ = s.tick(wall, loaded)
            sent += ds
        elif op == "result" and sent:
            d = sent.pop(k % len(sent))
            s.on_result(d.task, d.run_id, d.node, "ok", k, 1.0, "", max(wall, d.due_ms / 1000))
        elif op in ("pause", "resume"):
            s.set_paused(name, op == "pause", "a", wall)
        elif op == "trigger":
            d2, _ = s.trigger(name, wall, loaded)
            if d2 is not None:
                sent.append(d2)
        marked, _ = s.take_dirty()
        missed = changed(before, texts(s)) - set(marked)
        assert not missed, f"{op}: rows changed but not marked: {missed}"
