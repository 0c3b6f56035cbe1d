#!/usr/bin/env python3
"""What does it cost a child to have the supervisor write (and rotate) its output?

A supervised command writes ``--mb`` MB of 64-byte lines and exits; the time from its start
to the moment all of its output is on disk is measured, three ways, interleaved over
``--rounds`` rounds on the same machine:

* ``direct file``: the child's shell redirects into a file itself (``> file``): the floor;
* ``supervisor file``: ``stdout = file`` in its spec: a pipe, read by the supervisor's
  output thread, written to a file rotated every 10 MiB (the default ``max_bytes``; enough
  ``backups`` to keep it all, so the bytes on disk can be counted);
* ``supervisor file, no rotation``: the same with ``max_bytes`` above the total size.

Prints the median MB/s of each and its ratio to the direct file. Run:
``.venv/bin/python tools/bench_output.py`` (``--mb 200 --rounds 5``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from supervisor import ChildSpec, Event, Supervisor  # noqa: E402

LINE = "x" * 63  # plus the newline: 64 bytes


def writer(mb: int) -> list[str]:
    count = mb * 1024 * 1024 // 64
    return ["sh", "-c", f"yes {LINE} | head -n {count}"]


def total_size(path: str) -> int:
    size = 0
    directory, name = os.path.split(path)
    for entry in os.listdir(directory):
        if entry == name or entry.startswith(name + "."):
            size += os.path.getsize(os.path.join(directory, entry))
    return size


def run_once(spec: ChildSpec, out: str, expected: int) -> float:
    """Seconds from the child's start to all ``expected`` bytes on disk."""
    exited = threading.Event()
    started: list[float] = []

    def on_event(event: Event) -> None:
        if event.kind == "start":
            started.append(time.perf_counter())
        elif event.kind == "exit" and event.child_id == spec.id:
            exited.set()

    sup = Supervisor([spec], on_event=on_event)
    sup.start()
    try:
        if not exited.wait(600):
            raise SystemExit("the writer did not finish within 600 s")
        deadline = time.monotonic() + 60
        while total_size(out) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {total_size(out)} of {expected} bytes reached the disk")
            time.sleep(0.001)
        return time.perf_counter() - started[0]
    finally:
        sup.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    expected = args.mb * 1024 * 1024
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in ("direct file", "supervisor file", "supervisor file, no rotation"):
                out = os.path.join(tmp, "child.out")
                for entry in os.listdir(tmp):
                    os.unlink(os.path.join(tmp, entry))
                argv = writer(args.mb)
                if name == "direct file":
                    spec = ChildSpec(id="w", command=["sh", "-c", f"{argv[2]} > {out}"],
                                     restart="temporary")
                else:
                    max_bytes = 10 * 1024 * 1024 if name == "supervisor file" else 2 * expected
                    spec = ChildSpec(id="w", command=argv, restart="temporary", stdout=out,
                                     max_bytes=max_bytes, backups=args.mb // 10 + 2)
                results.setdefault(name, []).append(run_once(spec, out, expected))
    base = args.mb / statistics.median(results["direct file"])
    print(f"{args.mb} MB of 64-byte lines, median of {args.rounds} rounds "
          f"({os.cpu_count()} CPUs)\n")
    print(f"| {'output':<30} | {'MB/s':>7} | {'vs direct file':>14} |")
    print(f"|{'-' * 32}|{'-' * 8}:|{'-' * 15}:|")
    for name, times in results.items():
        rate = args.mb / statistics.median(times)
        print(f"| {name:<30} | {rate:>7.0f} | {rate / base:>14.2f} |")


if __name__ == "__main__":
    main()
