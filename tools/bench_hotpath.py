#!/usr/bin/env python3
"""Single functions of a run's path, before and after their last cut, in one process.

    .venv/bin/python tools/bench_hotpath.py [--repeats 7] [--number 20000]

Each row times the way the code did it before (rebuilt here, as it was) against the function
as it is now, in interleaved repeats (the order alternating), and prints the medians and
their ratio. What each row is, and how often a run pays it:

* ``base_tag``: the state a run starts from, at every dispatch and again at its result (the
  manager): the lineage's JSON encoded and summed each time, against looked up.
* ``link message``: a worker's DONE (the executor, on the node's loop) and the agent's RUN
  (the worker), one each per run: ``json.loads`` of bytes (their encoding guessed in Python
  first) against of their text.
* ``parse_hist``: a delta's history patches (20 rows), on every follower per replication
  round: ``json.loads`` with a hook (a new decoder per call) and a generator per entry
  against one decoder and the checks unrolled.
* ``row head`` and ``message body``: ``JSONEncoder.encode`` (its C encoder made at every
  call) against :func:`clerk._jsondump.encoder` (made once), for a task row's head (two a run
  on the manager: ``TaskRecord.to_text`` at its dispatch and its result) and a RESULT's body
  (every message a node sends is one such encode: ``clerk._codec.encode``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clerk._histdelta import _refuse, parse_hist  # noqa: E402
from clerk._jsondump import encoder  # noqa: E402
from clerk._record import TaskRecord  # noqa: E402
from clerk._running import _LINEAGE_DUMP, base_tag  # noqa: E402


def _old_base_tag(rec: TaskRecord) -> str:
    if not rec.has_state:
        return "~init"
    branch = rec.history[-1] if rec.history else None
    lineage = _LINEAGE_DUMP([rec.origin, branch])
    return f"~{rec.version}.{zlib.crc32(lineage.encode()):08x}"


def _old_parse_hist(text: str) -> dict[str, list[Any]] | None:
    try:
        raw = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    for value in raw.values():
        if not (isinstance(value, list) and len(value) in (3, 5)
                and all(type(v) is int and v >= 0 for v in value[:4])):
            return None
        if len(value) == 5 and not isinstance(value[4], str):
            return None
    return raw


def _cases() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    rec = TaskRecord(state={"n": 1}, has_state=True, version=1234,
                     origin={"term": 3, "node": "n1@127.0.0.1", "time": 1764770000000},
                     history=[[3, "n1@127.0.0.1", 0]])
    assert base_tag(rec) == _old_base_tag(rec)
    done = json.dumps({"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "outcome": "ok",
                       "state": {"n": 1}, "error": "", "duration_ms": 0.12}).encode()
    entry = ('[100,1764770000000.0,\\"n2@127.0.0.1\\",1764770000000.4,0.21,\\"ok\\",\\"\\",'
             '100,false]')
    hist = "{" + ",".join(f'"t:t{i:05d}":[123456,{100 + i},{101 + i},2300,"{entry}"]'
                          for i in range(20)) + "}"
    assert parse_hist(hist) == _old_parse_hist(hist)
    head = rec.to_json()
    head.pop("run_history")
    head["running"] = {"run": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "slot": 101,
                       "node": "n2@127.0.0.1", "started": 1764770000000.4,
                       "deadline": 1764770005000.4, "claim": [3, "n1@127.0.0.1"]}
    body = {"sender": {"name": "n2@127.0.0.1", "address": "127.0.0.1:47002",
                       "incarnation": "5f0c1a2b3c4d+t+d", "priority": 0},
            "term": 3, "run_id": "a1b2-17/3/n1@127.0.0.1~1234.0badf00d", "task": "t0001",
            "slot": 101, "outcome": "ok", "state": {"n": 1}, "duration_ms": 0.12,
            "error": "", "due_ms": 1764770000000.0}
    std_row = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    std_msg = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                               allow_nan=False).encode
    new_row, new_msg = encoder(allow_nan=False), encoder(ensure_ascii=False, allow_nan=False)
    assert std_row(head) == new_row(head) and std_msg(body) == new_msg(body)
    return [
        ("row head", lambda: std_row(head), lambda: new_row(head)),
        ("message body", lambda: std_msg(body), lambda: new_msg(body)),
        ("base_tag", lambda: _old_base_tag(rec), lambda: base_tag(rec)),
        ("link message", lambda: json.loads(done), lambda: json.loads(done.decode())),
        ("parse_hist, 20 rows", lambda: _old_parse_hist(hist), lambda: parse_hist(hist)),
    ]


def _time(f: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        f()
    return (time.perf_counter() - t0) / number * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000, help="calls per timing")
    args = ap.parse_args()
    print(f"{'function':<22} | {'before us':>9} | {'after us':>8} | ratio "
          f"(medians of {args.repeats} interleaved repeats of {args.number} calls)")
    for name, before, after in _cases():
        got: dict[str, list[float]] = {"before": [], "after": []}
        for rep in range(args.repeats):
            pair = (("before", before), ("after", after))
            for label, f in pair if rep % 2 == 0 else pair[::-1]:
                got[label].append(_time(f, args.number))
        b, a = statistics.median(got["before"]), statistics.median(got["after"])
        print(f"{name:<22} | {b:9.2f} | {a:8.2f} | {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
