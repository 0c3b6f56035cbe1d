#!/usr/bin/env python3
"""The clock offset estimate's bias on one machine, where the true offset is exactly 0.

    .venv/bin/python tools/bench_clockskew.py [--nodes 3] [--reads 20] [--offset 0]

Starts a LocalCluster (n1 first, so it manages; the others join it), waits a full estimate
window (clerk._clockskew.WINDOW_S), then reads each follower's status ``clock.offset_ms``
``--reads`` times 0.5 s apart and prints, per follower, the median, min and max, and the
manager's ``member_clocks``. With ``--offset S`` the last node's wall clock is moved S seconds
(the test-only ``CLERK_TEST_CLOCK_OFFSET_S``): its figures are then S plus the bias. The bias
is the smallest one-way delay of a heartbeat in the window plus the stamp's truncation to
whole ms (0.5 ms on average); it is never negative (clerk._clockskew, "One-sided error").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clerk._clockskew import WINDOW_S  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--offset", type=float, default=0.0)
    args = ap.parse_args()
    if args.nodes < 2:
        ap.error(f"--nodes {args.nodes}: at least 2 (a manager and a follower)")
    last = f"n{args.nodes}@127.0.0.1"
    env = {last: {"CLERK_TEST_CLOCK_OFFSET_S": str(args.offset)}} if args.offset else {}
    with LocalCluster(args.nodes, start=False, node_env=env) as c:
        first, *rest = c.names
        c.start(first)
        c.wait_for_manager(timeout=30, names=[first])
        for name in rest:
            c.start(name)
        c.settle()
        wait_until(lambda: all(c.status(n, timeout=2)["clock"]["offset_ms"] is not None
                               for n in rest), timeout=30)
        time.sleep(WINDOW_S + 1)
        seen: dict[str, list[float]] = {n: [] for n in rest}
        for _ in range(args.reads):
            for n in rest:
                seen[n].append(c.status(n, timeout=2)["clock"]["offset_ms"])
            time.sleep(0.5)
        clocks = c.status(first, timeout=2).get("member_clocks")
    for n, v in seen.items():
        print(f"{n}: offset_ms median {statistics.median(v):.3f} min {min(v):.3f} "
              f"max {max(v):.3f} ({len(v)} reads)")
    print(f"{first} member_clocks: {clocks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
