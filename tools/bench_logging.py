#!/usr/bin/env python3
"""The cost of forwarding log records to the host (clerk._logging), in one run, side by side.

::

    .venv/bin/python tools/bench_logging.py --records 20000 --rounds 3

A child process (like an agent or a task worker) logs ``--records`` INFO records with the node's
context filter, in two modes that alternate round by round so that machine noise hits both
alike:

* ``stderr``: the child formats each record itself and writes it to a file (what a node
  without a host sink does, and what the agent did before records were forwarded);
* ``forward``: the child sends each record to a ``LogSink`` in this process, which hands it to
  this process's ``logging`` (a handler formatting it into a file, like ``clerk.node``'s).

Reported per mode: the child's cost per ``log.info`` call (what the agent's loop pays), the
time until the host has handled every record, records that fell back to the child's stderr
(the sink was too slow for ``SEND_TIMEOUT_S``), and the forward/stderr ratio.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clerk._logging import LogSink, TextFormatter, configure_child_logging  # noqa: E402

CHILD = """
import logging, sys, time
from clerk._logging import configure_child_logging, run_context
mode, n, sink = sys.argv[1], int(sys.argv[2]), sys.argv[3]
configure_child_logging("bench@127.0.0.1", "info", sink if mode == "forward" else None)
log = logging.getLogger("clerk.bench")
run_context("task", 1, "run-1")
t0 = time.perf_counter()
for i in range(n):
    log.info("record %d of a run: task=%s slot=%d", i, "task", 1)
dt = time.perf_counter() - t0
fallback = sum(getattr(h, "undelivered", 0) for h in logging.getLogger().handlers)
print(f"{dt} {fallback}", file=sys.__stdout__, flush=True)
"""


class Count(logging.Handler):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.n = 0
        self.out = open(path, "w")  # noqa: SIM115
        self.setFormatter(TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(self.format(record) + "\n")
        self.n += 1


def one(mode: str, n: int, tmp: str) -> tuple[float, float, int]:
    sink = LogSink() if mode == "forward" else None
    host = Count(os.path.join(tmp, "host.log"))
    logger = logging.getLogger("clerk.bench")
    logger.addHandler(host)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        t0 = time.perf_counter()
        with open(os.path.join(tmp, "child.err"), "w") as err:
            proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(n),
                                   sink.endpoint if sink else "-"], stdout=subprocess.PIPE,
                                  stderr=err, text=True, env=env, check=True)
        child_s, fallback = proc.stdout.split()
        if sink is not None:
            deadline = time.monotonic() + 60
            while host.n + int(fallback) < n and time.monotonic() < deadline:
                time.sleep(0.001)
        total = time.perf_counter() - t0
        return float(child_s) / n * 1e6, total, int(fallback)
    finally:
        logger.removeHandler(host)
        host.out.close()
        if sink is not None:
            sink.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    configure_child_logging("-", "warning", None)  # this process: quiet
    results: dict[str, list[tuple[float, float, int]]] = {"stderr": [], "forward": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mode in ("stderr", "forward"):
                results[mode].append(one(mode, args.records, tmp))
    print(f"{args.records} records x {args.rounds} rounds (medians)")
    print(f"{'mode':<8} {'child us/record':>16} {'all handled s':>14} {'records/s':>10} "
          f"{'fell back':>10}")
    med = {}
    for mode, rows in results.items():
        us = statistics.median(r[0] for r in rows)
        total = statistics.median(r[1] for r in rows)
        back = max(r[2] for r in rows)
        med[mode] = (us, total)
        print(f"{mode:<8} {us:>16.1f} {total:>14.2f} {args.records / total:>10.0f} {back:>10}")
    print(f"forward/stderr: child cost x{med['forward'][0] / med['stderr'][0]:.2f}, "
          f"end to end x{med['forward'][1] / med['stderr'][1]:.2f}")


if __name__ == "__main__":
    main()
