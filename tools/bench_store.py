#!/usr/bin/env python3
"""The data directory's cost per write: main's whole-table rewrite vs the journal of changes.

::

    .venv/bin/python tools/bench_store.py --rounds 100 --dir /tmp

For task tables of 100, 1,000 and 10,000 tasks (rows as the replicated table holds them,
~600 bytes each), ``--changed`` rows (20: 400 runs/s at 20 writes/s) change between two
writes. Side by side, alternating write by write so machine noise hits both alike:

* **main**: the write path of the build before the journal, reproduced here: the loop takes
  a snapshot of the rows (``items()``), the writer thread joins every row's text into the
  table (``table_text``), frames it and replaces ``tasks.json`` durably (temp file, fsync,
  rename, fsync of the directory).
* **journal**: ``Store.write_changes`` with the changed rows (what ``persist`` hands over),
  appended with one fdatasync; compaction (a snapshot in a thread of its own) when the
  journal outgrows the snapshot, its cost counted in the write that started it.

Per write: the loop's time (hand-over), the wall time until durable (the kill -9 loss window
is at most this plus the write interval), the process CPU (every thread), bytes written and
fsync/fdatasync calls (medians; the journal's mean CPU, bytes and syncs count its
compactions too). Writes go
to ``--dir`` (a real disk gives real fsync times; tmpfs does not).

Then quorum mode's voter file (clerk._voterstore): the time from ``VoterStore.write`` to the
durable record's callback being ready (temp file, fsync, rename, fsync of the directory, and
the thread hand-offs), one write at a time, for registers of 10, 100 and 1000 task rows. A
voter's PROMISE or ACCEPTED waits this long, so a quorum commit costs about this plus a round
trip (the RESERVE_LEAD of clerk._quorum is chosen from it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clerk._durable import replace_durably  # noqa: E402
from clerk._replica import DUMP, ReplicaLog, split_table, table_text  # noqa: E402
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


def _main_write(file: Path, items: list[tuple[str, str | None]]) -> int:
    """Main's writer thread, one write: join the rows, frame, replace durably."""
    text = table_text(items, yield_gil=True)
    doc = {"format": FORMAT, "node": "bench@h", "written": time.time()}
    head = json.dumps(doc, separators=(",", ":"))
    data = f'{head[:-1]},"table":{text}}}'.encode()
    replace_durably(file, data, file.with_name(".tasks.json.bench.tmp"))
    return len(data)


def _collect(out: list[int], file: Path, items: list[tuple[str, str | None]]) -> None:
    out.append(_main_write(file, items))


def per_write(base: Path, n: int, rounds: int, changed: int) -> str:
    rows = split_table(table(n))
    texts = {k: DUMP(v) for k, v in rows.items()}
    log = ReplicaLog("bench")
    for k, t in texts.items():
        log.put(k, t)
    log.mark_complete()
    (base / f"m{n}").mkdir()
    old_file = base / f"m{n}" / "tasks.json"
    store = Store(base / f"j{n}", "bench@h")
    store.open()
    store.write_rows(log.track(), 0.0)
    store.flush()
    b0, s0, c0 = store.bytes_written, store.syncs, store.snapshots
    keys = [k for k in texts if k.startswith("t:")]
    m_loop: list[float] = []
    m_wall: list[float] = []
    m_cpu: list[float] = []
    m_bytes = 0
    j_loop: list[float] = []
    j_wall: list[float] = []
    j_cpu: list[float] = []
    old_rounds = min(rounds, max(10, rounds * 1000 // max(n, 1000)))
    for i in range(rounds):
        for k in keys[(i * changed) % len(keys):][:changed]:
            row = json.loads(log._text[k] or "{}")
            row["version"] = row.get("version", 0) + 1
            log.put(k, DUMP(row))
        # journal: what persist does
        c = time.process_time()
        began = time.perf_counter()
        store.write_changes(log.take_changes(), float(i))
        j_loop.append((time.perf_counter() - began) * 1000)
        store.flush()
        j_wall.append((time.perf_counter() - began) * 1000)
        if store._compactor is not None:  # its CPU in this write's, not main's next one
            store._compactor.join()
        j_cpu.append((time.process_time() - c) * 1000)
        if i >= old_rounds:
            continue
        # main: the loop's snapshot of the rows, then the writer thread's whole write
        c = time.process_time()
        began = time.perf_counter()
        items = log.items()
        m_loop.append((time.perf_counter() - began) * 1000)
        done: list[int] = []
        th = threading.Thread(target=_collect, args=(done, old_file, items))
        th.start()
        th.join()
        m_wall.append((time.perf_counter() - began) * 1000)
        m_cpu.append((time.process_time() - c) * 1000)
        m_bytes += done[0]
    j_bytes = store.bytes_written - b0
    j_syncs = store.syncs - s0
    compactions = store.snapshots - c0
    store.close()
    med = statistics.median
    return (f"| {n:,} | {old_file.stat().st_size / 1024:,.0f} | {med(m_loop):.3f} / "
            f"{med(j_loop):.3f} | {med(m_wall):.2f} / {med(j_wall):.2f} | "
            f"{med(m_cpu):.2f} / {med(j_cpu):.2f} ({statistics.fmean(j_cpu):.2f}) | "
            f"{m_bytes / old_rounds / 1024:,.1f} / "
            f"{j_bytes / rounds / 1024:,.1f} | 2 / {j_syncs / rounds:.2f} | "
            f"{compactions} in {rounds} | {old_rounds} / {rounds} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=100, help="writes per size (journal side)")
    ap.add_argument("--changed", type=int, default=20, help="rows changed per write")
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--no-voter", action="store_true", help="skip the voter file's table")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="clerk-bench-store-", dir=args.dir))
    print(f"{args.rounds} writes per size ({args.changed} rows changed per write; main: "
          f"fewer at 10,000 tasks, see the last column), files in {base}\n")
    print("| tasks | table KiB | loop ms: main / journal | wall ms: main / journal | "
          "CPU ms: main / journal (mean, compactions in) | KiB written: main / journal | "
          "syncs: main / journal | "
          "compactions | writes: main / journal |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        print(per_write(base, n, args.rounds, args.changed), flush=True)
    if not args.no_voter:
        voter_latency(base, args.rounds)
    shutil.rmtree(base, ignore_errors=True)
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
