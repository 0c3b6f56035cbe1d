#!/usr/bin/env python3
"""The data directory's cost: what a write blocks the node's loop for, inline vs writer thread.

::

    .venv/bin/python tools/bench_store.py --rounds 200 --dir /tmp

For task tables of 10, 100 and 1000 tasks (each state a small dict, as the replicated table
holds it), times ``Store.write`` as the loop sees it (hand the replicated table's JSON text,
already serialized for the heartbeats, to the writer thread) against the full write done
inline on the loop (serialize, write, fsync, rename, fsync of the directory: what the loop
would pay without the thread and without reusing the replicated text), alternating round by round so
machine noise hits both alike. Prints the median and p99 of each and the inline/threaded ratio,
plus the file size. Writes go to ``--dir`` (a real disk gives real fsync times; tmpfs does not).

Then quorum mode's voter file (clerk._voterstore): the time from ``VoterStore.write`` to the
durable record's callback being ready (temp file, fsync, rename, fsync of the directory, and
the thread hand-offs), one write at a time, for registers of 10, 100 and 1000 task rows. A
voter's PROMISE or ACCEPTED waits this long, so a quorum commit costs about this plus a round
trip (the RESERVE_LEAD of clerk._quorum is chosen from it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clerk._store import FORMAT, Store  # noqa: E402
from clerk._voterstore import VoterStore  # noqa: E402


def table(n: int) -> dict:
    rows = {}
    for i in range(n):
        rows[f"task{i}"] = {
            "state": {"count": i * 7, "since": 1_700_000_000 + i, "cursor": f"c{i:08d}"},
            "has_state": True, "slot": 8_500_000_000 + i, "dispatched": 8_500_000_000 + i,
            "running": None, "counts": {"ok": i, "error": 0, "timeout": 0, "skipped": 1,
                                        "refused": 0},
            "last": {"node": "n1@10.0.0.1", "slot": 8_500_000_000 + i, "duration_ms": 1.2,
                     "outcome": "ok", "error": "", "finished": 1.7e12},
            "runs": i, "origin": {"term": 3, "node": "n1@10.0.0.1", "time": 1_700_000_000_000},
            "version": i, "history": [[3, "n1@10.0.0.1", 0]], "conflicts": 0,
            "last_conflict": None, "conflict_seen": {},
        }
    return {"tasks": rows, "node_runs": {"n1@10.0.0.1": n}}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="clerk-bench-store-", dir=args.dir))
    print(f"{args.rounds} rounds per size, files in {base}\n")
    print("| tasks | file KiB | loop, threaded: median / p99 ms | loop, inline: median / p99 ms"
          " | ratio (median) |")
    print("|---:|---:|---:|---:|---:|")
    for n in (10, 100, 1000):
        t = table(n)
        text = json.dumps(t, separators=(",", ":"))
        threaded = Store(base / f"t{n}", "bench@h")
        threaded.open()
        inline = Store(base / f"i{n}", "bench@h")
        inline.open()
        a: list[float] = []
        b: list[float] = []
        size = 0
        for i in range(args.rounds):
            began = time.perf_counter()
            threaded.write(text, float(i))
            a.append((time.perf_counter() - began) * 1000)
            threaded.flush()  # one write at a time, so both sides do the same work
            began = time.perf_counter()
            doc = {"format": FORMAT, "node": "bench@h", "written": time.time(), "table": t}
            data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
            inline._write_file(data)
            b.append((time.perf_counter() - began) * 1000)
            size = len(data)
        threaded.close()
        inline.close()
        print(f"| {n} | {size / 1024:.0f} | {statistics.median(a):.3f} / {pct(a, 0.99):.3f} | "
              f"{statistics.median(b):.3f} / {pct(b, 0.99):.3f} | "
              f"{statistics.median(b) / statistics.median(a):.1f}x |")
    voter_latency(base, args.rounds)
    return 0


def voter_latency(base: Path, rounds: int) -> None:
    """Write-to-callback latency of the voter file, one record at a time."""
    print("\n| voter register rows | file KiB | write until durable: median / p99 ms "
          "| min ms |")
    print("|---:|---:|---:|---:|")
    for n in (10, 100, 1000):
        rows = {f"task{i}": {"reserved": 8_500_000_000 + i, "accepted": [3, 0, "n1@10.0.0.1"],
                             "record": table(1)["tasks"]["task0"]} for i in range(n)}
        store = VoterStore(base / f"v{n}", "bench@h")
        done = threading.Event()
        lat: list[float] = []
        for i in range(rounds):
            record = {"version": 1, "promised": [3, 0, "n1@10.0.0.1"], "rows": rows, "i": i}
            done.clear()
            began = time.perf_counter()
            store.write(record, done.set)
            while not done.is_set():  # the loop's deliver(), polled tightly
                store.deliver()
                time.sleep(0.00005)
            lat.append((time.perf_counter() - began) * 1000)
        size = store.file.stat().st_size
        store.close()
        print(f"| {n} | {size / 1024:.0f} | {statistics.median(lat):.3f} / {pct(lat, 0.99):.3f} "
              f"| {min(lat):.3f} |")


if __name__ == "__main__":
    sys.exit(main())
