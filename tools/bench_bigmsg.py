#!/usr/bin/env python3
"""Table-sized messages at 1,000 and 10,000 tasks: their sizes and the time to make them,
before (one message, over the 1 MiB limit: never sent) and now (in parts).

    .venv/bin/python tools/bench_bigmsg.py [--tasks 1000 10000] [--repeat 5]

In process, real codec: a status (rows shaped like a node's: counters, last run with an error
text, lineage, next due) answered as one STATUS_REPLY (before) or as its summary and parts
(``clerk._statusparts``); a merge's table (rows of ~500 bytes: a state and a run history)
as one HANDOVER (before) or in parts (``clerk._handover.table_parts``). ``ms``: median of
``--repeat`` runs of cutting and encoding every message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clerk._codec import MAX_MESSAGE_BYTES, EncodeError, encode  # noqa: E402
from clerk._handover import table_parts  # noqa: E402
from clerk._messages import Handover, Peer, StatusReply  # noqa: E402
from clerk._record import PACK_CHUNK  # noqa: E402
from clerk._replica import HANDOVER_WHOLE_CHARS, table_text  # noqa: E402
from clerk._statusparts import StatusParts  # noqa: E402

PEER = Peer("n1@10.0.0.5", "10.0.0.5:7400", "0123456789ab+t+b", 0)


def status(n: int) -> dict[str, Any]:
    rows = [{"name": f"myapp.tasks:Poll{i:05d}", "interval_ms": 60_000, "enabled": True,
             "runs": {"ok": 1000 + i, "error": 3, "timeout": 0, "skipped": 1},
             "last_run": {"slot": 29_000_000 + i, "node": "n2@10.0.0.6", "outcome": "error",
                          "duration_ms": 12.5, "error": "Traceback ...\nValueError: bad row"},
             "lineage": {"term": 3, "node": "n1@10.0.0.5", "at": 1.7e9}, "version": 1000 + i,
             "next_due": "2026-12-02T18:00:00+00:00", "timezone": None, "cron": None,
             "paused": False, "conflicts": 0, "nodes_overruns": 0, "loaded_here": True}
            for i in range(n)]
    return {"node": "n1@10.0.0.5", "role": "follower", "manager": "n2@10.0.0.6", "term": 4,
            "members": [{"name": f"n{j}@10.0.0.{j}", "alive": True, "tasks": []}
                        for j in range(3)], "tasks": rows}


def table_items(n: int) -> list[tuple[str, str | None]]:
    row = {"state": {"cursor": "2026-12-02T18:00:00Z", "seen": 123456}, "slot": 29_000_000,
           "dispatched": 29_000_000, "version": 1000, "origin": {"term": 3, "node": "n1"},
           "counts": {"ok": 1000, "error": 3, "timeout": 0, "skipped": 1},
           "runs": [[29_000_000 - k, 1.7e9, "n2", 1.7e9, 12.5, "ok", "", 1000 - k, 0]
                    for k in range(3)]}
    text = json.dumps(row, separators=(",", ":"))
    return [(f"t:myapp.tasks:Poll{i:05d}", text) for i in range(n)]


def size(msg: Any) -> int | None:
    try:
        return sum(len(f) for f in encode(msg, max_bytes=1 << 40))
    except EncodeError:
        return None


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"{'message':<10} {'tasks':>6} | {'before: bytes':>13} {'sent':>4} {'ms':>6} | "
          f"{'now: msgs':>9} {'largest':>8} {'total':>9} {'ms':>6}")
    for n in args.tasks:
        st = status(n)
        ms0, one = timed(lambda st=st: size(StatusReply(PEER, 4, st)), args.repeat)

        def parts(st: dict[str, Any] = st) -> list[int]:
            node = StatusParts(time.monotonic)
            first = node.first(st)
            sizes = [sum(map(len, encode(StatusReply(PEER, 4, first))))]
            info = first.get("parts")
            for k in range(1, (info or {}).get("count", 0) + 1):
                body = node.part(info["snapshot"], k)
                sizes.append(sum(map(len, encode(StatusReply(PEER, 4, body)))))
            return sizes

        ms1, sizes = timed(parts, args.repeat)
        _row("status", n, one, ms0, sizes, ms1)
        items = table_items(n)

        def whole(items: list[tuple[str, str | None]] = items) -> int | None:
            text = table_text(items)
            packed = {"packed": 1, "chunks": [text[i:i + PACK_CHUNK]
                                              for i in range(0, len(text), PACK_CHUNK)]}
            return size(Handover(PEER, 4, (), packed))

        def cut(items: list[tuple[str, str | None]] = items) -> list[int]:
            return [sum(map(len, encode(Handover(PEER, 4, (), part))))
                    for part in table_parts(items, HANDOVER_WHOLE_CHARS)]

        ms0, one = timed(whole, args.repeat)
        ms1, sizes = timed(cut, args.repeat)
        _row("handover", n, one, ms0, sizes, ms1)


def _row(kind: str, n: int, one: int | None, ms0: float, sizes: list[int], ms1: float) -> None:
    sent = "yes" if one is not None and one <= MAX_MESSAGE_BYTES else "NO"
    print(f"{kind:<10} {n:>6} | {one or 0:>13,} {sent:>4} {ms0:>6.1f} | {len(sizes):>9} "
          f"{max(sizes):>8,} {sum(sizes):>9,} {ms1:>6.1f}")


if __name__ == "__main__":
    main()
