"""Adversarial property for the table log's splices (``RowEncoder._text``: a dispatch's
``dispatched``/``decided``/``running`` and a skip's ``decided``/``counts`` put into the row's
last text): after every ``RowEncoder.step`` the log holds each row exactly as
``TaskRecord.to_text`` writes it, through random ticks (runs kept in flight: skips, several in
a row), results whose states hold the splices' own key texts, stalls (missed slots),
``bound_run``, ``fail_node``, adopted runs (OFFER), merges that replace a row, a new log and
``all_dirty``. Examples: ``REVIEW9_EXAMPLES`` (default 300)."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk._dispatch import Dispatch
from clerk._record import TaskRecord
from clerk._replicalog import ReplicaLog, RowEncoder
from clerk._rowtexts import row_key
from clerk._schedule import Scheduler
from tests.unit.test_row_splice import common_op
from tests.unit.test_schedule import tdef
from tests.unit.test_schedule_tick import NAMES

pytestmark = pytest.mark.timeout(1800)

_EXAMPLES = int(os.environ.get("REVIEW9_EXAMPLES", "300"))

_OPS = st.lists(st.tuples(
    st.sampled_from(["next", "next", "next", "next", "step", "tick", "tick", "result",
                     "result", "step", "step", "step", "stall", "pause",
                     "resume", "trigger", "fail", "merge", "bound", "offer", "newlog",
                     "alldirty", "tricky"]),
    st.integers(0, 7), st.floats(0.0, 0.12)), min_size=5, max_size=100)


def _tricky(rec: TaskRecord, k: int) -> Any:
    """A state whose text holds the splices' key texts (with the row's numbers now and
    next), inside strings and as keys."""
    d, e = rec.dispatched, rec.decided
    run = json.dumps(rec.running, separators=(",", ":")) if rec.running else "null"
    inner = (f',"dispatched":{d},"decided":{e},"running":{run},"counts":{{"ok":1}},'
             f'"last":null')
    if k % 3 == 0:
        return {"s": inner, "t": f',"dispatched":{d},"decided":{e + 1},"running":null,'
                                '"counts":'}
    if k % 3 == 1:
        return {"a": 0, "dispatched": d, "decided": e, "running": rec.running,
                "counts": {"ok": 1}, "last": None}
    return {"a": 0, "dispatched": d, "decided": e + 1, "running": None, "counts": {"x": "y"}}


@settings(max_examples=_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=_OPS, seed=st.integers(0, 10_000), lead=st.sampled_from([0.0, 20.0, 50.0]))
def test_every_step_leaves_the_log_with_each_row_as_to_text(
        ops: list[tuple[str, int, float]], seed: int, lead: float) -> None:
    rng = random.Random(seed)
    defs = [tdef(f"t{k}", rng.choice([100, 200]), timeout=rng.choice([50, 400, 5000]),
                 instant=rng.random() < 0.2,
                 args={"a": ',"dispatched":1,"decided":1,"running":null,"counts":'})
            for k in range(4)]
    names = [d.name for d in defs]
    s = Scheduler(defs, random.Random(seed), dispatch_lead_ms=lead)
    wall = 1_800_000_000.0 + rng.random()
    s.activate(wall, graceful=False, claim=(1, "a"))
    loaded = {n: tuple(names) for n in NAMES}
    log, enc = ReplicaLog("L0"), RowEncoder()
    sent: list[Dispatch] = []
    logs = 0

    def check() -> None:
        enc.step(s, log, float("inf"))
        texts = log.texts()
        for name, rec in s.records.items():
            assert texts[row_key(name)] == rec.to_text(), (name, ops)

    check()
    for op, k, dt in ops:
        wall += dt
        name = names[k % len(names)]
        rec = s.records[name]
        if op == "next":  # the next deadline, to the ms: a slot each, no missed ones
            wall = max(wall, s.next_deadline(wall))
            sent += s.tick(wall, loaded)[0]
            check()
        elif op == "tricky" and sent:  # a result whose state holds the splice's marks
            common_op(s, "result", k, name, wall, sent, loaded, merged=_tricky,
                      state=lambda task, k: _tricky(s.records[task], k))
        elif (after := common_op(s, op, k, name, wall, sent, loaded,
                                 merged=_tricky)) is not None:
            wall = after
        elif op == "bound":
            s.bound_run(name, wall * 1000 + 10 * k)
        elif op == "offer":  # a member's run in flight of a slot ahead of the row's
            slot = max(rec.slot, rec.dispatched) + 1 + k % 2
            s.adopt_run(name, f"r{k}-{slot}/1/b", slot, NAMES[k % len(NAMES)], 0.0,
                        wall * 1000 + 3000, wall)
        elif op == "newlog":
            logs += 1
            log = ReplicaLog(f"L{logs}")
        elif op == "alldirty":
            s.all_dirty = True
        else:
            check()
    check()
