#!/usr/bin/env python3
"""The loop's longest steps at 100 / 1,000 / 10,000 tasks and 1 / 10 / 30 members: a
per-step stall histogram of everything a manager's (and a follower's) loop does with the
task table, this tree beside another one.

    .venv/bin/python tools/bench_stalls.py [--tasks 100 1000 10000] [--members 1 10 30]
        [--before /tmp/base] [--repeats 1]

Each measurement is a child process (a fresh interpreter, as an agent is; the garbage
collector's policy installed as the agent's start does, in a tree that has
``clerk._gcpolicy``) that imports one tree's ``clerk`` and runs, in process, the real
Scheduler, NodeCore, row encoder, codec and rolling-deploy resolution (no sockets; the
members acknowledge what they are sent, ``tools/_bench_acks.py``), one loop step at a time:

* ``deploy join`` / ``deploy leave``: a member joins (then leaves) a cluster where every
  member announces every task (``clerk._deploy.announce``; each started at its own time):
  what the manager's loop does per step to schedule what the live members have loaded
  (a tree with ``clerk._deploy.Resolver``: its slices, then the scheduler adopting the tasks
  that changed in chunks; before it: ``resolve``, the loaded sets and ``update_defs`` in one
  step). The resolver is warmed first (as every node keeps it current).
* ``load`` / ``activate`` / ``fill``: a takeover: the replica's rows taken (as the tree's
  ``Replication._load_step`` takes them, in the first slice), loaded
  (``Scheduler.load_rows``) and activated (``activate_step``) in ``LOAD_BUDGET`` slices,
  and the new log filled in ``ENCODE_BUDGET`` steps with a heartbeat round each.
* ``round``: steady state, every task once per virtual second, a replication round every
  100 ms of runs (so a tenth of the table changed per round: ~1,000 rows at 10,000 tasks):
  the changed rows encoded into the log and the heartbeats encoded (each object once); in a
  tree whose manager sends in a step of its own once a step spent its whole encoding budget
  (``Replication._send_next``), that is two steps, as there.
* ``trigger`` / ``result``: the same steady state's per-run steps.
* ``offer`` / ``offer fellow``: a follower whose scheduler never loaded a row of its
  replica (the table has not changed hands since it joined) starts following a new manager:
  its OFFER (``Replication._offer``), to a manager from elsewhere (every row with a state)
  and to a fellow member whose replica stands where its own does (only what it may lack),
  with the encoding of each part sent (a tree with ``clerk._offerjob``: its slices, a part
  per turn; before it: the replica followed, the rows chosen and packed, and every part
  encoded in one step).
* ``join``: a node that announces every task joins: its JOIN decoded from the bytes and
  handled by the manager's core (its set cut from its entries and digested, the WELCOME).
* ``status``: a whole status of the manager after the steady state: its task rows (a tree
  with ``clerk._statusrows``: in ``STATUS_SLICE`` slices, with the reply's first message;
  before it: ``Scheduler.status`` and the reply's split in one step), without the agent's
  own keys.
* ``follower fill`` / ``follower``: a member's side of each ``fill`` step (table chunks of up
  to ``TABLE_CHUNK_CHARS``) and of each steady round: its HEARTBEAT decoded from the bytes
  and its delta applied to its replica.

A step's time is the CPU time of the loop's thread (``time.thread_time``: a loaded machine's
preemption left out). Reported per kind of step: how many, the median, the 99th percentile,
the longest, and how many took over 1 ms (and over 5 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, json, math, random, sys, time
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
n, members, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
import clerk
from clerk._codec import decode, encode
from clerk._core import NodeCore, Received, Send, Start
from clerk._messages import Heartbeat, Join, Peer
from clerk._replica import Replica, RowEncoder
from clerk._replication import ENCODE_BUDGET, LOAD_BUDGET
from clerk._schedule import Scheduler
from clerk._deploy import announce, resolve
try:
    from clerk._deploy import Resolver
except ImportError:
    Resolver = None
sys.path.insert(0, sys.argv[4])  # the measuring tree's tools/ (the members' ACKs)
from _bench_acks import ack_heartbeats
try:
    from clerk._gcpolicy import GcPolicy
except ImportError:
    GcPolicy = None
CLOCK = time.thread_time
ME = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 9)

class Manager:
    def __init__(self):
        self.now = 0.0
        self.core = NodeCore(ME, now=0.0, rng=random.Random(1))
        self.core.handle(Start(), 0.0)
        self.peers = {f"127.0.0.1:{47002 + i}": Peer(f"n{i + 2}@127.0.0.1",
                      f"127.0.0.1:{47002 + i}", "i+r", 0) for i in range(max(1, members - 1))}
        for p in self.peers.values():
            ack_heartbeats(self.core, self.peers,
                           self.core.handle(Received(Join(p, self.core.term, ())), 0.0), 0.0)
        self.encoder = RowEncoder()
        self.frames = None
    def round(self, s):
        done = self.encode(s)
        return self.send(), done
    def encode(self, s):
        return self.encoder.step(s, self.core.table_log, time.perf_counter() + ENCODE_BUDGET)
    def send(self):
        self.now += 0.1
        effects = self.core.heartbeat_now(self.now)
        seen = {}
        for e in effects:
            if isinstance(e, Send) and id(e.msg) not in seen:
                seen[id(e.msg)] = encode(e.msg)
        first = next(iter(self.peers))
        self.frames = next((seen[id(e.msg)] for e in effects if isinstance(e, Send)
                            and e.to == first and isinstance(e.msg, Heartbeat)), None)
        return effects

wall = time.time()
defs = [clerk.task("clerk.examples:Tally", name=f"task{i:05d}", interval=1000)
        for i in range(n)]
names = [d.name for d in defs]
loaded = {"n2@127.0.0.1": frozenset(names)}
old = Scheduler(defs, random.Random(1))
old.activate(wall, graceful=False)
ds, _ = old.tick(wall + 2.0, loaded)
for d in ds:
    old.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot % 1000}, 1.5, "", wall + 2.1)
m = Manager()
while True:
    effects, done = m.round(old)
    ack_heartbeats(m.core, m.peers, effects, m.now)
    if done:
        break
rep = Replica()
for delta in m.core.table_log.window(-1, 1 << 40):
    rep.apply(delta)
entries = {f"n{j:02d}@h": announce(defs, 1000.0 + j) for j in range(members)}
del old, m, ds, effects, delta
policy = None
if GcPolicy is not None:
    policy = GcPolicy(clock=CLOCK)
    policy.install(0.0)
steps = {}
def step(kind, fn, *args):
    t0 = CLOCK()
    out = fn(*args)
    steps.setdefault(kind, []).append((CLOCK() - t0) * 1000)
    if policy is not None:
        policy.turn(0.0, lambda: 0.0)
    return out
try:  # a tree whose manager sends a round in a step of its own after a full encoding budget
    from clerk._replication import Replication
    SEND_APART = hasattr(Replication, "_send_next")
except ImportError:
    SEND_APART = False
def replicate(kind, s):
    # a replication step as the tree's manager does it: (effects, done)
    if not SEND_APART:
        return step(kind, m.round, s)
    t0 = CLOCK()
    done = m.encode(s)
    effects = m.send() if done else None
    steps.setdefault(kind, []).append((CLOCK() - t0) * 1000)
    if policy is not None:
        policy.turn(0.0, lambda: 0.0)
    if not done:
        effects = step(kind, m.send)
    return effects, done

# --- takeover ---
take = getattr(rep, "rows", rep.items)  # the rows as the tree's _load_step takes them,
fresh = Scheduler(defs, random.Random(3))  # in its first slice (its budget counts it)
items = None
at = 0
def load_slice():
    global items
    deadline = time.perf_counter() + LOAD_BUDGET
    if items is None:
        items = take()
    return fresh.load_rows(items, at, deadline)
while items is None or at < len(items):
    at = step("load", load_slice)
fresh.begin_activation(wall + 5, graceful=False, claim=(2, "n2@127.0.0.1"))
while not step("activate", fresh.activate_step, time.perf_counter() + LOAD_BUDGET):
    pass
m = Manager()
filling = Replica()
def follow_fill(frames):
    msg = decode(frames)
    if msg.table is not None:
        filling.apply(msg.table)
while True:
    effects, done = replicate("fill", fresh)
    if m.frames is not None:
        step("follower fill", follow_fill, m.frames)
    ack_heartbeats(m.core, m.peers, effects, m.now)
    if done:
        break
del items, filling

# --- a follower's OFFER at a manager change: its scheduler never loaded a replica row ---
from clerk._messages import Offer
try:
    from clerk._offerjob import offer_job
    from clerk._replica import offer_test
except ImportError:
    offer_job = None
def offer(kind, at):
    follower = Scheduler(defs, random.Random(4))
    seen = {}
    sent = []
    if offer_job is not None:  # in slices, a part per turn (each encoded as it leaves)
        job = None
        while True:
            t0 = CLOCK()
            if job is None:  # (the rows taken at the change: in its first step)
                job = offer_job("m", follower, rep.texts(), offer_test(rep, at), seen,
                                lambda part: sent.append(Offer(ME, 3, part)))
            done = job.step(LOAD_BUDGET)
            while sent:
                encode(sent.pop())
            steps.setdefault(kind, []).append((CLOCK() - t0) * 1000)
            if policy is not None:
                policy.turn(0.0, lambda: 0.0)
            if done:
                break
        return
    from clerk._replica import offer_keys, row_key
    from clerk._replication import offer_parts
    def once():  # Replication._offer before: the replica followed, the rows chosen, packed
        follower.follow_rows(rep.items(), seen)
        newer = offer_keys(rep, at)
        rows = {name: rec.to_json() for name, rec in follower.records.items()
                if rec.has_state and (newer is None or name in follower.kept_own
                                      or seen.get(key := row_key(name)) is None
                                      or key in newer)}
        for row in rows.values():
            row["running"] = None
        for part in offer_parts(rows):
            encode(Offer(ME, 3, part))
    step(kind, once)
offer("offer", None)  # a manager from elsewhere (or an older build's): every row
offer("offer fellow", rep.position())  # a fellow member with the same replica

# --- rolling deploys: a member joins, then leaves ---
def resolve_once(live):
    res = resolve(defs, live)
    sets = {node: frozenset(ns) for node, ns in res.loaded.items()}
    fresh.update_defs(res.defs, wall + 6)
    return sets

def resolver_slices(kind, r, live):
    r.update(live)
    while not step(kind, r.step, time.perf_counter() + LOAD_BUDGET):
        pass
    changed = r.take_changed()
    todo = [*sorted(x for x in changed if x not in fresh.defs),
            *(x for x in changed if x in fresh.defs)]
    for i in range(0, len(todo), 64):
        step(kind, fresh.update_defs, r.defs, wall + 6, todo[i:i + 64])

joined = dict(entries)
joined["zz@h"] = announce(defs, 5000.0)
if Resolver is not None:
    r = Resolver(defs)
    r.update(entries)
    r.step(math.inf)
    r.take_changed()
    resolver_slices("deploy join", r, joined)
    resolver_slices("deploy leave", r, entries)
else:
    step("deploy join", resolve_once, joined)
    step("deploy leave", resolve_once, entries)

# --- steady state ---
per_round = max(1, n // 10)
order = list(names)
random.Random(5).shuffle(order)
t = wall + 10
follower = Replica()
for delta in m.core.table_log.window(-1, 1 << 40):
    follower.apply(delta)
def follow(frames):
    msg = decode(frames)
    if msg.table is not None:
        follower.apply(msg.table)
for r_ in range(int(seconds * 10)):
    t += 0.1
    for name in order[(r_ % 10) * per_round:(r_ % 10 + 1) * per_round]:
        d, _ = step("trigger", fresh.trigger, name, t, loaded)
        if d is not None:
            step("result", fresh.on_result, d.task, d.run_id, d.node, "ok", {"count": d.slot},
                 1.0, "", t + 0.01)
    effects, _ = replicate("round", fresh)
    if m.frames is not None:
        step("follower", follow, m.frames)
    ack_heartbeats(m.core, m.peers, effects, m.now)

# --- a whole status of the manager: its task rows and the reply's first message ---
from clerk._statusparts import StatusParts
try:
    from clerk._statusjob import STATUS_SLICE, Slice
    from clerk._statusparts import LOOP_PART_BYTES
    from clerk._statusrows import StatusRows
    try:
        from clerk._statusjob import release
    except ImportError:
        release = None
except ImportError:
    StatusRows = None
if StatusRows is not None:
    class _Stub:
        overruns, unavailable, expired = {}, {}, 0
        def wall(self): return t
        def pending(self): return 0
        def __len__(self): return 0
    class Rows(StatusRows):
        def __init__(self, sched):
            stub = _Stub()
            self.agent = type("H", (), {"clock": stub})()
            self.scheduler, self.nodes_guard, self.defs = sched, stub, dict(sched.defs)
            self._variants, self._activate, self.stale = {}, None, 0
            self.outbox, self._acks, self.executor, self.store = stub, stub, None, None
        def _follow_steps(self, sl): return iter(())
        def _resolve(self, wall, deadline=0.0, adopt=True): return True
        def quorum_status(self): return None
    rows_ = Rows(fresh)
    parts = StatusParts(lambda: 0.0, budget=LOOP_PART_BYTES)
    def job(sl):
        st = {"node": ME.name, "members": []}
        yield from rows_.status_steps(st, sl)
        yield
        body = yield from parts.first_steps(st, sl)
        if release is not None:
            yield from release(st.pop("tasks", []), sl)
        return body
    sl = Slice()
    gen = job(sl)
    def status_slice():
        sl.start(STATUS_SLICE)
        try:
            next(gen)
        except StopIteration:
            return True
        return False
    while not step("status", status_slice):
        pass
else:
    parts = StatusParts(lambda: 0.0)
    step("status", lambda: parts.first({"node": ME.name, "members": [],
                                        "tasks": fresh.status(t)}))
# --- last (its new members change the list every heartbeat carries): a JOIN of a node
# that announces every task, on the manager: decoded and handled ---
from clerk._core import Received as _Received
for j in range(3):
    joiner = Peer(f"j{j}@127.0.0.1", f"127.0.0.1:{46900 + j}", f"j{j}+d+t", 0)
    frames = encode(Join(joiner, m.core.term, tuple(announce(defs, 7000.0 + j))))
    step("join", lambda: m.core.handle(_Received(decode(frames)), m.now))

print(json.dumps(steps))
"""

KINDS = ("deploy join", "deploy leave", "load", "activate", "fill", "follower fill", "round",
         "trigger", "result", "follower", "status", "offer", "offer fellow", "join")


def run_child(tree: Path, n: int, members: int, seconds: float) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    got = subprocess.run([sys.executable, "-c", CHILD, str(n), str(members), str(seconds),
                          str(HERE / "tools")],
                         capture_output=True, text=True, env=env, cwd=str(tree), timeout=1800)
    lines = [ln for ln in got.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (got.stderr or got.stdout).strip().splitlines()
        raise SystemExit(f"{tree} at {n} tasks, {members} members: "
                         f"{tail[-1][-300:] if tail else got.returncode}")
    out: dict[str, list[float]] = json.loads(lines[-1])
    return out


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    over1 = sum(1 for v in s if v > 1.0)
    over5 = sum(1 for v in s if v > 5.0)
    return (f"{len(s)}: {statistics.median(s):.2f} / {p99:.2f} / {s[-1]:.2f}"
            f" ({over1} > 1, {over5} > 5)")


def show(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--before", type=Path, help="another source tree, beside this one")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="virtual seconds of steady state (every task runs once a second)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    args = ap.parse_args()
    trees = [("before", args.before)] if args.before is not None else []
    trees.append(("now", HERE))
    rows = []
    for n in args.tasks:
        for members in args.members:
            got: dict[str, dict[str, list[float]]] = {label: {} for label, _ in trees}
            for _ in range(args.repeats):  # interleaved: both trees see the same machine
                for label, tree in trees:
                    for kind, values in run_child(tree, n, members, args.seconds).items():
                        got[label].setdefault(kind, []).extend(values)
            for label, _ in trees:
                rows.append((f"{n:,}", str(members), label,
                             *(summary(got[label].get(k, [])) for k in args.kinds)))
    print(f"Loop steps by kind (ms of the thread's CPU time; steps: median / p99 / longest "
          f"(how many over 1 ms, over 5 ms); {args.repeats} repeat(s) pooled)")
    show(("tasks", "members", "tree", *args.kinds), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
