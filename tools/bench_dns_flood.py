#!/usr/bin/env python3
"""The node's loop under a flood of forged JOINs naming distinct host names, with a slow
resolver: this tree (names looked up off the loop, clerk/_dns.py) beside another one (e.g.
main before it, which looked each one up on the loop), interleaved repeat by repeat.

    .venv/bin/python tools/bench_dns_flood.py --before /tmp/dns-before [--names 1000]
        [--delay-ms 1000] [--window 8] [--repeats 3]

(``git archive main | tar -x -C /tmp/dns-before`` makes such a tree.)

Each measurement: a one-node ``--insecure`` cluster whose ``Stamp`` task runs every 100 ms;
a slow resolver in the node's processes (``tools/_bench_dnshook.py``: ``socket.gethostbyname``
of a ``*.flood.test`` name answers after ``--delay-ms``; no name ever reaches the machine's
resolver); then a forged JOIN from each of ``--names`` distinct names (``f<i>.flood.test:9``),
sent at once, and ``--window`` seconds of measuring from the flood's start:

* ``probe max``: the longest round trip of a brief status asked every 50 ms (what a peer
  waits for the loop: the longest turn, seen from outside; ``lost``: probes unanswered in 5 s),
* ``task gap``: the longest gap between the task's runs (100 ms when all is well),
* ``turn max``: the node's own longest busy turn over the window (trees with it: the
  largest ``turn_ms_max_recent`` of the probes' answers, each read starting a new window),
* ``resolved``/``refused``: the node's ``resolve_ok`` and ``resolve_refused`` (trees with it).

``--control`` adds this tree under the same flood from IP addresses (``127.77.x.y:9``: no
lookup at all), which tells what is left of the flood's cost without names.

The node is killed after the window (a tree that looks names up on its loop would take
``names x delay`` to get through the flood). Medians over the repeats, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import clerk  # noqa: E402
from clerk._codec import encode  # noqa: E402
from clerk._messages import Join, Peer  # noqa: E402
from clerk.testing import LocalCluster, wait_until  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from _bench_dnshook import DELAY_ENV  # noqa: E402
from _bench_lateness import source_tree  # noqa: E402

INTERVAL = 100  # ms


def _stamps(log: Path) -> list[float]:
    try:
        return [float(x) for x in log.read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


def measure(source: str | None, names: int, window: float, tmp: Path,
            literal: bool = False) -> dict[str, Any]:
    log = tmp / f"runs-{time.monotonic_ns()}.log"
    task = clerk.task("_bench_dnshook:Stamp", name="stamp", interval=INTERVAL,
                      args={"log": str(log)})
    with LocalCluster(1, tasks=[task], insecure=True, log_level="warning",
                      start=False) as cluster:
        (name,) = cluster.names
        with source_tree(source):
            cluster.start(name)
        cluster.wait_for_manager(timeout=30)
        wait_until(lambda: len(_stamps(log)) >= 5, timeout=30)
        cluster.status(name)  # (a tree with turn_ms_max_recent: a window from here)
        rtts: list[float] = []
        turns: list[float] = []  # each probe's turn_ms_max_recent: the window, in pieces
        lost = [0]
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                got = cluster.views([name], timeout=5, brief=True)[name]
                if got is None:
                    lost[0] += 1
                else:
                    rtts.append((time.perf_counter() - t0) * 1000)
                    turn = got.get("transport", {}).get("turn_ms_max_recent")
                    if turn is not None:
                        turns.append(turn)
                stop.wait(0.05)

        ctx = zmq.Context()
        start = time.time()
        t_start = time.monotonic()
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.linger = 0
            dealer.sndtimeo = 2000
            dealer.connect(f"tcp://{cluster.address(name)}")
            for i in range(names):
                host = f"127.77.{i // 250}.{i % 250 + 1}" if literal else f"f{i}.flood.test"
                p = Peer(f"forged{i}@{host}", f"{host}:9", f"i{i}", -1)
                dealer.send_multipart(encode(Join(p, 0)))
            time.sleep(max(0.0, window - (time.monotonic() - t_start)))
            stop.set()
            prober.join(timeout=10)
            end = time.time()
            after = cluster.views([name], timeout=5)[name] or {}
        finally:
            stop.set()
            ctx.destroy(linger=0)
            cluster.kill(name)
        times = [t for t in _stamps(log) if start <= t <= end]
        edges = [start, *times, end]
        tr = after.get("transport", {})
        return {"probe_max": max(rtts, default=float("nan")), "lost": lost[0],
                "gap": max(b - a for a, b in zip(edges, edges[1:], strict=False)) * 1000,
                "turn": max([*turns, tr.get("turn_ms_max_recent", 0)]) if turns else None,
                "resolved": tr.get("resolve_ok"),
                "refused": tr.get("resolve_refused"), "answered": bool(after)}


def _fmt(values: list[Any]) -> str:
    nums = [v for v in values if isinstance(v, int | float)]
    if not nums:
        return "n/a"
    return f"{statistics.median(nums):.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=str, help="another source tree, beside this one")
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--delay-ms", type=int, default=1000)
    ap.add_argument("--window", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--control", action="store_true",
                    help="also this tree under the same flood from IP addresses (no lookups): "
                    "what the flood costs without names")
    args = ap.parse_args()
    os.environ[DELAY_ENV] = str(args.delay_ms)  # (inherited by the node processes)
    trees: list[tuple[str, str | None]] = [("after", None)]
    if args.before:
        trees.insert(0, ("before", args.before))
    if args.control:
        trees.append(("after, IPs", None))
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as d:
        for rep in range(args.repeats):
            order = trees if rep % 2 == 0 else list(reversed(trees))
            for label, source in order:
                res = measure(source, args.names, args.window, Path(d), label.endswith("IPs"))
                rows[label].append(res)
                print(f"  repeat {rep + 1} {label:>10}: probe max {res['probe_max']:.0f} ms "
                      f"(lost {res['lost']}), task gap {res['gap']:.0f} ms, turn max "
                      f"{res['turn']}, resolved {res['resolved']}, refused {res['refused']}",
                      flush=True)
    print(f"\n{args.names} forged JOINs naming distinct hosts, resolver delay {args.delay_ms} "
          f"ms, {args.window:.0f} s window, median of {args.repeats}:")
    cols = ("probe max ms", "lost", "task gap ms", "turn max ms", "resolved", "refused")
    keys = ("probe_max", "lost", "gap", "turn", "resolved", "refused")
    print(f"{'tree':>10} " + " ".join(f"{c:>13}" for c in cols))
    for label, _ in trees:
        print(f"{label:>10} " + " ".join(f"{_fmt([r[k] for r in rows[label]]):>13}"
                                        for k in keys))
    if args.before:
        b, a = (statistics.median(r["probe_max"] for r in rows[t]) for t, _ in trees[:2])
        gb, ga = (statistics.median(r["gap"] for r in rows[t]) for t, _ in trees[:2])
        print(f"   ratio before/after: probe max {b / a:.1f}x, task gap {gb / ga:.1f}x")


if __name__ == "__main__":
    main()
