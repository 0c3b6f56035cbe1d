#!/usr/bin/env python3
"""How precisely a worker starts a run at its due time, and what the wait costs in CPU.

    .venv/bin/python tools/bench_hold.py [--runs 200] [--ahead-ms 20]

A worker that receives a run ahead of its due time (clerk._lead) waits with
``clerk._worker.hold_until``: a sleep until ``SPIN_MS`` before the due time, then a spin on the
wall clock. This compares, in interleaved rounds in one process (with the worker's 1 ns timer
slack), the spin lengths 0 (a plain sleep), 0.05 ms and ``SPIN_MS``: how late past the due time
the wait returns (median / p90 / p99, µs) and the CPU it costs per run (user + system, µs).
Lateness here is the machine's scheduling latency: on a loaded machine every variant is late by
whatever the CPU queue is; read the medians and the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clerk._worker as worker  # noqa: E402
from clerk._lead import SPIN_MS  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="holds per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ahead-ms", type=float, default=20.0, help="how far ahead a run arrives")
    args = ap.parse_args()
    worker._fine_timer_slack()
    spins = [0.0, 0.05, SPIN_MS]
    late: dict[float, list[float]] = {s: [] for s in spins}
    cpu: dict[float, list[float]] = {s: [] for s in spins}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for spin in spins:
            worker.SPIN_MS = spin  # hold_until reads the module's constant
            c0 = time.process_time()
            for _ in range(args.runs):
                due = time.time() * 1000 + args.ahead_ms
                late[spin].append((worker.hold_until(due) * 1000 - due) * 1000)
            cpu[spin].append((time.process_time() - c0) / args.runs * 1e6)
    worker.SPIN_MS = SPIN_MS
    base = statistics.median(late[0.0])
    print(f"{'spin':>10} | {'late median us':>14} | {'p90 us':>8} | {'p99 us':>8} | "
          f"{'CPU per run us':>14} | median vs plain sleep")
    for spin in spins:
        med = statistics.median(late[spin])
        print(f"{spin:>7.2f} ms | {med:>14.1f} | {pct(late[spin], 90):>8.1f} | "
              f"{pct(late[spin], 99):>8.1f} | {statistics.median(cpu[spin]):>14.1f} | "
              f"{med / base if base else float('nan'):.2f}x")
    print(f"({args.rounds} rounds x {args.runs} holds {args.ahead_ms:g} ms ahead; "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
