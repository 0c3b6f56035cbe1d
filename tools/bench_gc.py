#!/usr/bin/env python3
"""The garbage collector's pauses in a manager's loop at 100 / 1,000 / 10,000 tasks: a
takeover, then a steady state, this tree (with its ``clerk._gcpolicy``) beside another tree.

    .venv/bin/python tools/bench_gc.py [--tasks 1000 10000] [--before /tmp/base]
        [--seconds 10] [--repeats 3]

Each measurement is a child process (a fresh interpreter, as an agent is) that imports one
tree's ``clerk`` and runs, in process (the real Scheduler, NodeCore, row encoder and codec;
``members`` members that acknowledge what they are sent, as in ``tools/bench_replication.py``):

1. *start*: the task definitions are built (an agent has them from its configuration) and
   the replica a follower holds of an old manager's log is made (row texts); then, in a tree
   with ``clerk._gcpolicy``, the policy is installed as the agent's start does.
2. *takeover*: the replica's rows loaded into a new scheduler and activated, in
   ``LOAD_BUDGET`` slices, and the new log filled in ``ENCODE_BUDGET`` steps, as the loop
   does them (with the policy's ``turn`` between steps, as the loop calls it every turn).
3. *steady*: every task runs once per (virtual) second: per run a trigger and its result
   (one step each, as separate turns of the loop), and every 100 ms of runs a replication
   round (one step).

A step's time is the CPU time of the thread (a loaded machine's preemption left out; on an
idle machine the two agree), the loop's stall; every collection is timed by generation
(``gc.callbacks``, same clock). Memory: the process's RSS at the end of the steady state
against its start, and the cyclic garbage a last full collection of everything
(frozen objects included) finds (what freezing kept from the collector).
``--before`` runs the same children from another source tree (e.g. a ``git worktree`` of
main), interleaved repeat by repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, json, random, resource, sys, time
# Only this tree's clerk: an editable install's finder would lend another tree's modules.
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
n, members, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
import clerk
from clerk._codec import encode
from clerk._core import NodeCore, Received, Send, Start
from clerk._messages import Ack, Heartbeat, Join, Peer
from clerk._replica import Replica, RowEncoder
from clerk._replication import ENCODE_BUDGET, LOAD_BUDGET
from clerk._schedule import Scheduler
sys.path.insert(0, sys.argv[4])  # the measuring tree's tools/ (the members' ACKs)
from _bench_acks import ack_heartbeats
try:
    from clerk._gcpolicy import GcPolicy
except ImportError:
    GcPolicy = None
CLOCK = time.thread_time
ME = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 9)

class Timer:
    def __init__(self):
        self.t0 = 0.0
        self.on = False
        self.reset()
        gc.callbacks.append(self.cb)
    def reset(self):
        self.count, self.max, self.total = [0, 0, 0], [0.0, 0.0, 0.0], 0.0
        self.collected = 0
    def cb(self, phase, info):
        if not self.on:
            return
        if phase == "start":
            self.t0 = CLOCK()
            return
        g, ms = info["generation"], (CLOCK() - self.t0) * 1000
        self.count[g] += 1
        self.max[g] = max(self.max[g], ms)
        self.total += ms
        self.collected += info["collected"]

class Manager:
    def __init__(self):
        self.now = 0.0
        self.core = NodeCore(ME, now=0.0, rng=random.Random(1))
        self.core.handle(Start(), 0.0)
        self.peers = {f"127.0.0.1:{47002 + i}": Peer(f"n{i + 2}@127.0.0.1",
                      f"127.0.0.1:{47002 + i}", "i", 0) for i in range(members)}
        for p in self.peers.values():
            self.settle(self.core.handle(Received(Join(p, self.core.term, ())), 0.0))
        self.encoder = RowEncoder()
    def settle(self, effects):
        ack_heartbeats(self.core, self.peers, effects, self.now)
    def round(self, s):
        # one step of the loop: the changed rows into the log, a heartbeat round encoded
        self.now += 0.1
        done = self.encoder.step(s, self.core.table_log, time.perf_counter() + ENCODE_BUDGET)
        effects = self.core.heartbeat_now(self.now)
        seen = set()
        for e in effects:
            if isinstance(e, Send) and id(e.msg) not in seen:
                seen.add(id(e.msg))
                encode(e.msg)
        return effects, done

def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

wall = time.time()
defs = [clerk.task("clerk.examples:Tally", name=f"task{i:05d}", interval=1000)
        for i in range(n)]
names = [d.name for d in defs]
loaded = {"n2@127.0.0.1": frozenset(names)}
# The replica a follower holds: an old manager's log (each task run once), as row texts.
old = Scheduler(defs, random.Random(1))
old.activate(wall, graceful=False)
ds, _ = old.tick(wall + 2.0, loaded)
for d in ds:
    old.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot % 1000}, 1.5, "", wall + 2.1)
m = Manager()
while True:
    effects, done = m.round(old)
    m.settle(effects)
    if done:
        break
rep = Replica()
for delta in m.core.table_log.window(-1, 1 << 40):
    rep.apply(delta)
del old, m, ds, effects, delta
policy = None
if GcPolicy is not None:
    policy = GcPolicy(clock=CLOCK)
    policy.install(0.0)
timer = Timer()
timer.on = True
steps = []
def step(fn, *args):
    t0 = CLOCK()
    out = fn(*args)
    steps.append((CLOCK() - t0) * 1000)
    if policy is not None:
        policy.turn(0.0, lambda: 0.0)
    return out

def summary(label):
    over = sum(1 for x in steps if x > 1.0)
    return {"steps": len(steps), "longest": max(steps), "over_1ms": over,
            "median": statistics.median(steps), "gc_count": list(timer.count),
            "gc_max": list(timer.max), "gc_total": timer.total, "collected": timer.collected}

import statistics
# --- takeover ---
items = rep.items()
fresh = Scheduler(defs, random.Random(3))
at = 0
while at < len(items):
    at = step(fresh.load_rows, items, at, time.perf_counter() + LOAD_BUDGET)
fresh.begin_activation(wall + 5, graceful=False, claim=(2, "n2@127.0.0.1"))
while not step(fresh.activate_step, time.perf_counter() + LOAD_BUDGET):
    pass
m = Manager()
while True:
    effects, done = step(m.round, fresh)
    m.settle(effects)
    if done:
        break
for _ in range(3):
    m.settle(step(m.round, fresh)[0])
out = {"takeover": summary("takeover")}
del items
# --- steady state: every task once per virtual second, a replication round per 100 ms ---
steps.clear()
timer.reset()
rss0 = rss_mib()
per_round = max(1, n // 10)
order = list(names)
random.Random(5).shuffle(order)
t = wall + 10
runs = 0
for r in range(int(seconds * 10)):
    t += 0.1
    for name in order[(r % 10) * per_round:(r % 10 + 1) * per_round]:
        d, _ = step(fresh.trigger, name, t, loaded)
        if d is not None:
            step(fresh.on_result, d.task, d.run_id, d.node, "ok", {"count": d.slot}, 1.0, "",
                 t + 0.01)
            runs += 1
    effects, _ = step(m.round, fresh)
    m.settle(effects)
out["steady"] = summary("steady")
out["steady"]["runs"] = runs
out["rss0"], out["rss1"] = rss0, rss_mib()
timer.on = False
out["policy"] = policy.status() if policy is not None else None
gc.unfreeze()
out["garbage_at_end"] = gc.collect()
print(json.dumps(out))
"""


def run_child(tree: Path, n: int, members: int, seconds: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    got = subprocess.run([sys.executable, "-c", CHILD, str(n), str(members), str(seconds),
                          str(HERE / "tools")],
                         capture_output=True, text=True, env=env, cwd=str(tree), timeout=1200)
    lines = [ln for ln in got.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (got.stderr or got.stdout).strip().splitlines()
        return {"error": tail[-1][-300:] if tail else f"exit {got.returncode}"}
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def _med(runs: list[dict[str, Any]], part: str, key: str, index: int | None = None) -> float:
    vals = []
    for r in runs:
        v = r[part][key] if part else r[key]
        vals.append(v[index] if index is not None else v)
    return statistics.median(vals)


def show(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--before", type=Path, help="another source tree, beside this one")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="virtual seconds of steady state (every task runs once a second)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    trees = [("before", args.before)] if args.before is not None else []
    trees.append(("now", HERE))
    rows = []
    for n in args.tasks:
        got: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
        for _ in range(args.repeats):
            for label, tree in trees:
                r = run_child(tree, n, args.members, args.seconds)
                if "error" in r:
                    print(f"{label} at {n} tasks failed: {r['error']}", file=sys.stderr)
                    return 1
                got[label].append(r)
        for label, _ in trees:
            runs = got[label]
            cells = [f"{n:,}", label]
            for part in ("takeover", "steady"):
                cells += [f"{_med(runs, part, 'longest'):.2f}",
                          f"{_med(runs, part, 'over_1ms'):.0f} / {_med(runs, part, 'steps'):.0f}",
                          f"{_med(runs, part, 'gc_count', 2):.0f}",
                          " / ".join(f"{_med(runs, part, 'gc_max', g):.2f}" for g in range(3))]
            cells += [f"{_med(runs, '', 'rss0'):.0f} -> {_med(runs, '', 'rss1'):.0f}",
                      f"{_med(runs, '', 'garbage_at_end'):.0f}"]
            rows.append(tuple(cells))
    print(f"GC pauses in a manager's loop ({args.members} members; steady: every task once "
          f"per second for {args.seconds:g} s; medians of {args.repeats}; ms of the thread's "
          "CPU time)")
    show(("tasks", "tree", "takeover: longest step", "steps > 1 ms", "full gcs",
          "longest gc, gen 0/1/2", "steady: longest step", "steps > 1 ms", "full gcs",
          "longest gc, gen 0/1/2", "RSS MiB", "garbage at end"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
