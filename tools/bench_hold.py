#!/usr/bin/env python3
"""How precisely a worker starts a run at its due time, and what the wait costs in CPU.

    .venv/bin/python tools/bench_hold.py [--runs 200] [--rounds 3] [--ahead-ms 20]

A worker that receives a run ahead of its due time (clerk._lead) waits with
``clerk._worker.hold_until``: a sleep until ``SPIN_MS`` before the due time, then a spin on the
wall clock (``SPIN_MS`` is 0: it sleeps to the due time, then reads the clock). This compares,
in interleaved rounds in one process (with the worker's 1 ns timer slack), ways to wait:

* ``sleep, spin S ms``: ``hold_until`` with ``SPIN_MS = S`` (0 and 0.05 ms); S = 0 is a plain
  sleep to the due time, then a check of the wall clock (never early, late by the wake-up);
* ``select, spin S ms``: one ``select`` on a socket (as a worker could wait on its link, so
  that a message from the agent would end the wait) for the same time, then the same spin.
  (``poll``/``epoll`` take whole milliseconds in Python: not precise enough for this.)

For each: how late past the due time the wait returns (median / p90 / p99, µs), the CPU the
wait itself costs (``time.thread_time`` around it: the system call, the wake-up, the spin;
median µs), and the CPU of the worker's own path of a no-op run right after the wait (its RUN
decoded, ``current_run`` set up, the task called, the DONE written: ``clerk._worker``'s
``_run_request`` and ``done_body``, no socket) against the same path run again at once: what
running cold after a wake-up costs. Lateness is the machine's scheduling latency: on a loaded
machine every variant is late by whatever the CPU queue is; read the medians and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS.parent), str(TOOLS)]

import clerk._worker as worker  # noqa: E402
from clerk._lead import SPIN_MS  # noqa: E402

#: A no-op run's RUN body as the agent writes it (due now: no hold inside the measured path).
TARGET = "_bench_tasks:Noop"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _run_body(seq: int) -> bytes:
    due = int(time.time() * 1000)
    return json.dumps([f"5f0c1a2b3c4d-{seq}", 17345678 + seq, 3, None, False, due,
                       due + 5000, "noop1", TARGET, "n2@127.0.0.1", "UTC", 60_000],
                      separators=(", ", ": ")).encode()


def select_hold(sock: socket.socket, spin_ms: float) -> Callable[[float], float]:
    """A hold that waits in ``select`` on ``sock`` (which never becomes readable here) until
    ``spin_ms`` before the due time, then spins, as ``hold_until`` does after its sleep."""
    def hold(due_ms: float) -> float:
        due = due_ms / 1000
        now = time.time()
        rest = due - now - spin_ms / 1000
        if rest > 0:
            select.select([sock], [], [], rest)
            now = time.time()
        while now < due:
            now = time.time()
        return now
    return hold


def sleep_hold(spin_ms: float) -> Callable[[float], float]:
    """``clerk._worker.hold_until`` with ``SPIN_MS = spin_ms`` (it reads the module's name)."""
    def hold(due_ms: float) -> float:
        worker.SPIN_MS = spin_ms
        return worker.hold_until(due_ms)
    return hold


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="holds per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ahead-ms", type=float, default=20.0, help="how far ahead a run arrives")
    args = ap.parse_args()
    worker._fine_timer_slack()
    ours, theirs = socket.socketpair()
    spins = sorted({0.0, 0.05, SPIN_MS})
    variants: dict[str, Callable[[float], float]] = {}
    for spin in spins:
        variants[f"sleep, spin {spin:g} ms"] = sleep_hold(spin)
    for spin in spins:
        variants[f"select, spin {spin:g} ms"] = select_hold(ours, spin)
    late: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    cold: dict[str, list[float]] = {k: [] for k in variants}
    hot: list[float] = []
    cache: dict[str, Any] = {}
    seq = 0
    for _ in range(20):  # the task's import and the first allocations
        worker.done_body(*worker._run_request(_run_body(seq), cache)[:2])
    load0 = os.getloadavg()[0]
    clock = time.thread_time_ns
    for _ in range(args.rounds):
        for name, hold in variants.items():
            for _ in range(args.runs):
                seq += 1
                body = _run_body(seq)
                due = time.time() * 1000 + args.ahead_ms
                c0 = clock()
                woke = hold(due)
                c1 = clock()
                reply, state_json, _ = worker._run_request(body, cache)
                worker.done_body(reply, state_json)
                c2 = clock()
                reply, state_json, _ = worker._run_request(body, cache)
                worker.done_body(reply, state_json)
                c3 = clock()
                late[name].append((woke * 1000 - due) * 1000)
                cpu[name].append((c1 - c0) / 1e3)
                cold[name].append((c2 - c1) / 1e3)
                hot.append((c3 - c2) / 1e3)
    worker.SPIN_MS = SPIN_MS
    ours.close()
    theirs.close()
    hot_med = statistics.median(hot)
    print(f"{'wait':<22} | {'late median us':>14} | {'p90 us':>7} | {'p99 us':>7} | "
          f"{'min us':>6} | {'wait CPU us':>11} | {'run after it, CPU us':>20}")
    for name in variants:
        lat = late[name]
        print(f"{name:<22} | {statistics.median(lat):>14.1f} | {pct(lat, 90):>7.1f} | "
              f"{pct(lat, 99):>7.1f} | {min(lat):>6.1f} | {statistics.median(cpu[name]):>11.1f} "
              f"| {statistics.median(cold[name]):>20.1f}")
    print(f"(the same run's path at once again, hot: {hot_med:.1f} us CPU; {args.rounds} rounds "
          f"x {args.runs} holds {args.ahead_ms:g} ms ahead; CPU medians of time.thread_time; "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
