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
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clerk._store import FORMAT, Store  # noqa: E402


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
