"""The table log's rows are their records' texts when a dispatch is spliced into the text of
before it (``RowEncoder._text``: ``dispatched``, ``decided`` and ``running`` put into the
row's last text instead of encoding the row again): through any sequence of ticks, results,
skips, pauses, triggers, node failures, merges of other rows and changes in place, each
marked as the scheduler marks them; and a dispatch is in fact not encoded whole."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._dispatch import Dispatch
from clerk._record import TaskRecord
from clerk._replicalog import ReplicaLog, RowEncoder
from clerk._rowtexts import row_key
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef
from tests.unit.test_schedule import tdef
from tests.unit.test_schedule_tick import NAMES

pytestmark = pytest.mark.timeout(120)

_OPS = st.lists(st.tuples(
    st.sampled_from(["tick", "tick", "tick", "result", "result", "step", "step", "pause",
                     "resume", "trigger", "fail", "merge", "inplace", "stall"]),
    st.integers(0, 7), st.floats(0.0, 0.4)), min_size=5, max_size=80)


def _check(s: Scheduler, log: ReplicaLog, enc: RowEncoder) -> None:
    enc.step(s, log, float("inf"))
    texts = log.texts()
    for name, rec in s.records.items():
        assert texts[row_key(name)] == rec.to_text(), name
        assert rec.to_text() == json.dumps(rec.to_json(), separators=(",", ":"))


def _plain_state(task: str, k: int) -> Any:
    return k if k % 3 else {"n": k, "s": "\u00e9\"\\"}


def common_op(s: Scheduler, op: str, k: int, name: str, wall: float, sent: list[Dispatch],
              loaded: dict[str, tuple[str, ...]], *,
              state: Callable[[str, int], Any] = _plain_state,
              merged: Callable[[TaskRecord, int], Any]) -> float | None:
    """The random drivers' shared operations (this file's property and
    ``test_review9_splice``'s) on ``s`` at ``wall``: a tick, a stall (missed slots), a result
    of a run sent (its state ``state(task, k)``), a pause or resume, a trigger, a node failed,
    a merge of the row from another side with more history (its state ``merged(row, k)``).
    The wall after it; None for any other ``op`` (and a result with no run sent)."""
    rec = s.records[name]
    if op == "tick":
        sent += s.tick(wall, loaded)[0]
    elif op == "stall":  # the loop late by a few intervals: missed slots counted
        wall += 0.7
        sent += s.tick(wall, loaded)[0]
    elif op == "result" and sent:
        d = sent.pop(k % len(sent))
        s.on_result(d.task, d.run_id, d.node, "ok" if k % 4 else "error", state(d.task, k), 1.0,
                    "" if k % 4 else "boom", max(wall, d.due_ms / 1000))
    elif op in ("pause", "resume"):
        s.set_paused(name, op == "pause", "a", wall)
    elif op == "trigger":
        d2, _ = s.trigger(name, wall, loaded)
        if d2 is not None:
            sent.append(d2)
    elif op == "fail":
        s.fail_node(NAMES[k % len(NAMES)], wall)
    elif op == "merge":  # a row from another side with more history: its state taken
        other = TaskRecord.from_json(json.loads(rec.to_text()))
        assert other is not None
        other.version += 5
        other.history = [[7, "z", 0]]
        other.state, other.has_state = merged(rec, k), True
        other.origin = {"term": 7, "node": "z", "time": 1}
        s.merge({"tasks": {name: other.to_json()}}, wall, "z")
    else:
        return None
    return wall


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, seed=st.integers(0, 1000), lead=st.sampled_from([0.0, 20.0, 50.0]))
def test_the_log_holds_every_row_as_encoded_whole(ops: list[tuple[str, int, float]],
                                                  seed: int, lead: float) -> None:
    rng = random.Random(seed)
    defs = [tdef(f"t{k}", rng.choice([100, 200, 300]), timeout=rng.choice([50, 150, 2000]),
                 instant=rng.random() < 0.2) for k in range(5)]
    names = [d.name for d in defs]
    s = Scheduler(defs, random.Random(seed), dispatch_lead_ms=lead)
    wall = 1_800_000_000.0 + rng.random()
    s.activate(wall, graceful=False, claim=(1, "a"))
    loaded = {n: tuple(names) for n in NAMES}
    log, enc = ReplicaLog("L"), RowEncoder()
    sent: list[Dispatch] = []
    _check(s, log, enc)
    for op, k, dt in ops:
        wall += dt
        name = names[k % len(names)]
        rec = s.records[name]
        after = common_op(s, op, k, name, wall, sent, loaded, merged=lambda r, k: {"merged": k})
        if after is not None:
            wall = after
        elif op == "inplace":  # a change in place, marked as every change is
            if k % 2:
                rec.counts["skipped"] += 1
            elif rec.last is not None:
                rec.last["error"] = f"x{k}"
            s.dirty.add(name)
        else:
            _check(s, log, enc)
    _check(s, log, enc)


def _one_task() -> tuple[Scheduler, ReplicaLog, RowEncoder, float]:
    """A manager of one task every 100 ms, its table log holding the activation's row."""
    d = TaskDef(name="t", target="x:Y", interval=100, timeout=5000)
    s = Scheduler([d], random.Random(3), dispatch_lead_ms=20)
    wall = 1_800_000_000.0
    s.activate(wall, False, (3, "a"))
    log, enc = ReplicaLog("L"), RowEncoder()
    enc.step(s, log, float("inf"))
    return s, log, enc, wall


@contextmanager
def _whole_encodes() -> Iterator[list[str]]:
    """A list that gets "whole" at each ``TaskRecord.to_text`` meanwhile (the test appends
    its own steps to it)."""
    seen: list[str] = []
    original = TaskRecord.to_text

    def counting(rec: TaskRecord) -> str:
        seen.append("whole")
        return original(rec)

    TaskRecord.to_text = counting  # type: ignore[method-assign,assignment]
    try:
        yield seen
    finally:
        TaskRecord.to_text = original  # type: ignore[method-assign]


def _steady(runs: int) -> tuple[Scheduler, ReplicaLog, RowEncoder, list[str]]:
    """One task, each dispatch and each result in a replication round of its own."""
    s, log, enc, wall = _one_task()
    with _whole_encodes() as seen:
        for _ in range(runs):
            wall = s.next_deadline(wall)
            ds, _ = s.tick(wall, {"a": ("t",), "b": ("t",)})
            if not ds:
                continue
            seen.append("dispatch")
            enc.step(s, log, float("inf"))
            d0 = ds[0]
            wall = max(wall, d0.due_ms / 1000 + 0.002)
            s.on_result("t", d0.run_id, d0.node, "ok", {"n": 1}, 0.5, "", wall)
            seen.append("result")
            enc.step(s, log, float("inf"))
    return s, log, enc, seen


def test_a_dispatch_after_a_result_is_spliced_not_encoded_whole() -> None:
    s, log, _, seen = _steady(6)
    assert log.texts()[row_key("t")] == s.records["t"].to_text()
    # The first dispatch follows the activation's row (encoded whole, no run in flight);
    # from then on each result is encoded whole and the dispatch after it is spliced.
    after_first = seen[seen.index("result"):]
    assert after_first.count("dispatch") >= 4
    for i, what in enumerate(after_first):
        if what == "dispatch":
            assert after_first[i + 1] != "whole", after_first


def test_a_skip_while_a_run_is_in_flight_is_spliced_not_encoded_whole() -> None:
    """A slot due while the run before it is still going is skipped: ``decided`` and
    ``counts`` change alone, spliced into the row's last text (on an overloaded cluster about
    one skip per run, each encoded whole before); the text is the whole row's."""
    s, log, enc, wall = _one_task()
    members = {"a": ("t",), "b": ("t",)}
    ds: list[Dispatch] = []
    while not ds:
        wall = s.next_deadline(wall)
        ds = s.tick(wall, members)[0]
    enc.step(s, log, float("inf"))
    with _whole_encodes() as seen:
        for _ in range(6):  # the run still going at its next slots
            skipped = s.records["t"].counts["skipped"]
            wall = s.next_deadline(wall)
            assert s.tick(wall, members)[0] == []
            if s.records["t"].counts["skipped"] == skipped:
                continue  # (a decision deferred to the due time: the next tick skips it)
            enc.step(s, log, float("inf"))
            seen.append("skip")
    assert seen.count("skip") >= 2 and "whole" not in seen, seen
    assert log.texts()[row_key("t")] == s.records["t"].to_text()
