#!/usr/bin/env python3
"""Where a no-op run's round trip goes, hop by hop, with timestamps in every process.

    .venv/bin/python tools/bench_hops.py                      # 600 runs of this tree
    .venv/bin/python tools/bench_hops.py --against ../main    # and another tree's, at once

Runs tools/bench_tasks.py (a)'s cluster (n1 manager, at DEBUG, runs nothing; n2 runs five
no-op tasks every 100 ms; ``dispatch_lead = 0``; CURVE on; 2 workers) with
``tools/_hoptrace`` on its nodes' ``PYTHONPATH``: each agent and worker process writes
``perf_counter_ns`` timestamps (CLOCK_MONOTONIC: one clock for all processes) at the run
path's functions. Runs are matched across processes by run id (by order where a hop has
none: a poll's return, the worker link's read), and the table gives each hop's median, p25,
p75 and mean in µs, over the runs dispatched in one window after a warm-up. ``--against``: a
second cluster running another tree's Clerk traces in the same window (the two share the
machine's load), in its own table.

The tracer costs ~2-4 µs an event (about 25 per run), in every hop: compare hops and trees,
not the total with bench_tasks' untraced ``rtt_ms``. The table also counts the runs whose
follower handled another mailbox frame (a replication round) in the EXECUTE's turn, and the
median time from the worker's DONE to the follower reading it with and without one, and the
runs whose DONE was read in the EXECUTE's own turn (before its next poll).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS / "_hoptrace"))  # (LocalCluster passes sys.path to the nodes)

import bench_tasks as bt  # noqa: E402

from clerk.testing import wait_until  # noqa: E402

HOPS = ["M tick -> dispatch", "M dispatch -> EXECUTE sent", "wire M -> F (F poll returns)",
        "F poll -> EXECUTE received", "F received -> on_execute", "F on_execute -> submit",
        "F submit -> RUN sent", "IPC F -> worker", "worker run", "IPC worker -> F",
        "F DONE read -> send_result", "F send_result -> RESULT sent",
        "wire F -> M (M poll returns)", "M poll -> RESULT received",
        "M received -> on_result", "TOTAL tick -> on_result"]

Events = dict[str, list[tuple[int, str, str]]]


def read_traces(d: Path) -> Events:
    ev: Events = collections.defaultdict(list)
    for f in d.glob("*.trace"):
        for line in f.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) >= 3:
                ev[parts[0]].append((int(parts[2]), parts[1], parts[3] if len(parts) > 3
                                     else ""))
    for v in ev.values():
        v.sort()
    return ev


def hops(ev: Events, window: tuple[int, int]
         ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-hop µs lists of the runs dispatched within ``window`` (perf_counter_ns), and
    DONE -> read µs by whether another frame shared the turn."""
    def count(p: str, name: str) -> int:
        return sum(1 for e in ev[p] if e[1] == name)

    m = max(ev, key=lambda p: count(p, "dispatch"))
    f = max((p for p in ev if p != m), key=lambda p: count(p, "submit"))

    def by_run(p: str, name: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = collections.defaultdict(list)
        for t, n, x in ev[p]:
            if n == name:
                for r in x.split(","):
                    out[r].append(t)
        return out

    def times(p: str, name: str) -> list[int]:
        return [t for t, n, _ in ev[p] if n == name]

    def after(ts: list[int], t: int) -> int | None:
        i = bisect.bisect_right(ts, t)
        return ts[i] if i < len(ts) else None

    def before(ts: list[int], t: int) -> int | None:
        i = bisect.bisect_left(ts, t)
        return ts[i - 1] if i else None

    w_in: dict[str, int] = {}
    w_outs: list[int] = []
    for p in ev:
        for t, n, x in ev[p]:
            if n == "w_run_in":
                w_in.setdefault(x, t)
            elif n == "w_run_out":
                w_outs.append(t)
    w_outs.sort()
    m_disp, m_send, m_recv, m_res = (by_run(m, n) for n in ("dispatch", "zsend", "zrecv",
                                                            "on_result"))
    f_recv, f_exec, f_sub, f_sres, f_send = (by_run(f, n) for n in (
        "zrecv", "on_execute", "submit", "send_result", "zsend"))
    m_tick, m_poll = times(m, "tick"), times(m, "poll_out")
    f_poll, f_run, f_link = times(f, "poll_out"), times(f, "run_send"), times(f, "link_in")
    out: dict[str, list[float]] = collections.defaultdict(list)
    for r, ds in m_disp.items():
        try:
            t_disp = ds[0]
            if not window[0] <= t_disp <= window[1]:
                continue
            t_ms = m_send[r][0]
            t_fr = f_recv[r][0]
            t_fe, t_fs = f_exec[r][0], f_sub[r][0]
            t_wi = w_in[r]
            t_sr = f_sres[r][0]
            t_fz = next(t for t in f_send[r] if t >= t_sr)
            t_mr = next(t for t in m_recv[r] if t >= t_fz)
            t_res = next(t for t in m_res[r] if t >= t_mr)
        except (KeyError, IndexError, StopIteration):
            continue
        seq = [before(m_tick, t_disp), t_disp, t_ms, before(f_poll, t_fr), t_fr, t_fe, t_fs,
               after(f_run, t_fs), t_wi, after(w_outs, t_wi), None, t_sr, t_fz,
               before(m_poll, t_mr), t_mr, t_res]
        if seq[9] is not None:
            seq[10] = after(f_link, seq[9])
        if any(x is None for x in seq):
            continue
        ts = [int(x) for x in seq if x is not None]
        for name, a, b in zip(HOPS, ts, ts[1:], strict=False):
            out[name].append((b - a) / 1000)
        out[HOPS[-1]].append((ts[-1] - ts[0]) / 1000)
    # A follower frame handled in the EXECUTE's turn (before its next poll) delays the DONE.
    done_wait: dict[str, list[float]] = {"another frame in the turn": [], "alone": []}
    fe = ev[f]
    execs = set(f_exec)
    early = 0
    for i, (t, n, x) in enumerate(fe):
        if n != "zrecv" or x not in execs or not window[0] <= t <= window[1]:
            continue
        shared = False
        for _t, n2, _x in fe[i + 1:]:
            if n2 == "poll_in":  # (a worker's link read before the turn's poll: in its turn)
                break
            if n2 == "link_in":
                early += 1
                break
        for _t, n2, _x in fe[i + 1:]:
            if n2 == "poll_out":
                break
            if n2 == "zrecv":
                shared = True
        w = after(w_outs, t)
        link = after(f_link, w) if w is not None else None
        if w is not None and link is not None:
            done_wait["another frame in the turn" if shared else "alone"].append(
                (link - w) / 1000)
    done_wait["read in the EXECUTE's turn"] = [0.0] * early  # (counted only)
    return out, done_wait


def table(label: str, ev: Events, window: tuple[int, int]) -> str:
    h, done = hops(ev, window)
    lines = [f"{label}: {len(h[HOPS[-1]])} runs matched",
             *([] if h[HOPS[-1]] else [  # say which events are missing (a renamed function)
                 f"  pid {p}: " + ", ".join(f"{n} {c}" for n, c in sorted(
                     collections.Counter(e[1] for e in v).items())) for p, v in ev.items()]),
             f"{'hop':<32} {'median':>8} {'p25':>8} {'p75':>8} {'mean':>8}  (µs)"]
    for name in HOPS:
        v = sorted(h[name])
        if v:
            lines.append(f"{name:<32} {statistics.median(v):8.1f} {v[len(v) // 4]:8.1f} "
                         f"{v[3 * len(v) // 4]:8.1f} {statistics.mean(v):8.1f}")
    early = len(done.pop("read in the EXECUTE's turn"))
    total = sum(len(v) for v in done.values()) or 1
    lines.append(f"F worker DONE read in the EXECUTE's own turn (clerk._agent._results_now): "
                 f"{early} runs ({100 * early / total:.0f} %)")
    for k, v in done.items():
        if v:
            lines.append(f"F EXECUTE turn {k}: {len(v)} runs ({100 * len(v) / total:.0f} %), "
                         f"worker DONE -> read median {statistics.median(v):.0f} µs")
    return "\n".join(lines)


@contextlib.contextmanager
def traced(d: Path) -> Any:
    old = os.environ.get("CLERK_TRACE_DIR")
    os.environ["CLERK_TRACE_DIR"] = str(d)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CLERK_TRACE_DIR", None)
        else:
            os.environ["CLERK_TRACE_DIR"] = old


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=600, help="runs to trace (per tree)")
    ap.add_argument("--against", metavar="DIR", help="also trace the Clerk in DIR, at once")
    ap.add_argument("--keep", metavar="DIR", help="copy the raw traces into DIR/<tree>/")
    args = ap.parse_args()
    if args.runs < 50:
        ap.error(f"--runs {args.runs}: at least 50")
    if args.against is not None:
        args.against = str(Path(args.against).resolve())
        if not (Path(args.against) / "clerk" / "__init__.py").is_file():
            ap.error(f"--against {args.against}: no clerk/__init__.py there")
    # Each cluster's tasks due at other instants than the other's (bench_tasks.spread_tasks).
    sets = bt.spread_tasks(2 if args.against is not None else 1, picky=False)
    with tempfile.TemporaryDirectory(prefix="bench-hops-") as tmp, \
            contextlib.ExitStack() as stack:
        dirs = {"this tree": Path(tmp) / "this"}
        if args.against is not None:
            dirs[f"against {args.against}"] = Path(tmp) / "against"
        clusters = []
        for d, source in zip(dirs.values(), (None, args.against), strict=False):
            d.mkdir()
            with traced(d):
                clusters.append(stack.enter_context(bt._ClusterA(sets[len(clusters)],
                                                                  source)))
        for cl in clusters:  # warm-up
            wait_until(lambda cl=cl: len(cl.rtts()) >= 50, timeout=60, interval=0.2)
        # One window for both trees (the same load): runs dispatched within it.
        seen = [len(cl.rtts()) for cl in clusters]
        window = (time.perf_counter_ns(), 0)
        for cl, n in zip(clusters, seen, strict=False):
            wait_until(lambda cl=cl, n=n: len(cl.rtts()) >= n + args.runs,
                       timeout=args.runs / 10 + 120, interval=0.5)
        window = (window[0], time.perf_counter_ns())
        rtts = [sorted(cl.rtts()[n:]) for cl, n in zip(clusters, seen, strict=False)]
        stack.close()  # the nodes stop: their traces are written at exit
        for (label, d), r in zip(dirs.items(), rtts, strict=False):
            if args.keep is not None:
                shutil.copytree(d, Path(args.keep) / d.name, dirs_exist_ok=True)
            print(table(label, read_traces(d), window))
            print(f"(rtt_ms of the runs in the window, the manager's log lines, tracing "
                  f"included: median {statistics.median(r):.2f} ms)\n")
    print(f"(load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
