#!/usr/bin/env python3
"""What replicating the task table costs: heartbeat bytes and loop stalls at 100 / 1,000 /
10,000 tasks, and the manager's CPU at 1 / 10 / 30 members.

    .venv/bin/python tools/bench_replication.py [--tasks 100 1000 10000] [--members 10]
    .venv/bin/python tools/bench_replication.py --cpu --before /tmp/base [--sizes 1 10 30]
        [--task-interval 200]

**Table part** (in process: the real NodeCore, Scheduler, row encoder and codec, no
sockets; each member acknowledges what it was sent, as a live member does; the agent's
collector policy, ``clerk._gcpolicy``, installed as an agent installs it, unless
``--no-gc-policy``). A *round* is
what the manager's loop does after a burst of changes (``Replication._replicate``): here 20
tasks each dispatched and finished (~200 runs/s at the 100 ms heartbeat). Per round:

* before: the whole table packed (``pack_table``) and one HEARTBEAT carrying it, encoded once
  for every member (the agent encodes an object once per batch): what every member got after
  every change;
* now: the changed rows encoded into the table log (``RowEncoder``, its time budget) and a
  heartbeat round with each member's delta (clerk._replica).

``bytes/member`` is one member's heartbeat bytes in a round; ``stall`` the loop's time for the
round (median, and max over the rounds), as CPU time of the loop's thread (``STEP_CLOCK``).
Then, ``now`` only: a member's side of a takeover (its replica fed the whole log; the rows
it OFFERs a fellow member taking over, by where the new manager's table stands,
clerk._replica.offer_keys), a member joining the table (rounds until it holds it all, its largest
message), a takeover filling a new log (``fill`` steps and the longest one), a takeover
loading its replica's rows and activating, each in slices (against each in one step, as
before), and a follower brought up to its replica for a status, a ``show`` or an OFFER (the
rows changed since the last time, against the whole table parsed and loaded, as before).
The one-step activation here is this tree's code; ``main``'s is slower (it sized each state
by encoding it twice): run this tool from both trees for that comparison.

**CPU part** (``--cpu``): ``LocalCluster`` clusters of 1 / 10 / 30 real nodes with one small
task every 200 ms (``--task-interval``; ``0``: no task at all, the cost of heartbeats alone);
the manager's whole process tree (node, agent, workers) and its agent (the loop) alone, in %
of one core over 10 s, once settled, and what that is per member beyond the first (the
growth). A second table says where it goes: the agent's loop thread and ZeroMQ's I/O thread
(per-thread CPU from ``/proc/<pid>/task``), the agent's wake-ups (context switches of all its
threads), per member per second the ZeroMQ messages the manager sends and receives
(``clerk status``) and the TCP data segments on its connections (``ss -ti``: messages and
ZeroMQ PINGs/PONGs alike), and the median follower's whole tree. ``--before PATH`` runs the
same clusters from another source tree (e.g. ``git archive main | tar -x -C PATH``),
interleaved with this one so both see the same machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bench_acks import ack_heartbeats  # noqa: E402

import clerk  # noqa: E402
from clerk._codec import MAX_MESSAGE_BYTES, encode  # noqa: E402
from clerk._core import NodeCore, Received, Send, Start  # noqa: E402
from clerk._gcpolicy import GcPolicy  # noqa: E402
from clerk._messages import Heartbeat, Join, Offer, Peer  # noqa: E402
from clerk._offerjob import offer_job  # noqa: E402
from clerk._record import unpack_table  # noqa: E402
from clerk._replica import Replica, RowEncoder, offer_test  # noqa: E402
from clerk._replication import ENCODE_BUDGET, LOAD_BUDGET  # noqa: E402
from clerk._schedule import Scheduler, pack_table  # noqa: E402

ME = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 9)
#: The members' incarnation: they read rows' histories as patches (``+r``, clerk._histdelta)
#: and rows after a HEARTBEAT's body (``+j``, clerk._codectail), as every node of this build
#: does (a tree without them ignores the marks).
MEMBER_MARKS = "i+r+j"
CHANGES = 20  # tasks run per round
#: A step's cost: the CPU time of this thread. Wall time on a shared, loaded machine adds
#: whatever the OS gives other processes meanwhile (tens of ms at a load of 30 on 2 cores);
#: on an idle machine the two agree.
STEP_CLOCK = time.thread_time
ROUNDS = 30


def scheduler_with(n: int, wall: float) -> Scheduler:
    """``n`` tasks, each run once (a small state, a ``last`` row, its history)."""
    defs = [clerk.task("clerk.examples:Tally", name=f"task{i:05d}", interval=1000)
            for i in range(n)]
    s = Scheduler(defs, random.Random(1))
    s.activate(wall, graceful=False)
    members = {"n2@127.0.0.1": [d.name for d in defs]}
    dispatches, _ = s.tick(wall + 2.0, members)
    for d in dispatches:
        s.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot % 1000}, 1.5, "",
                    wall + 2.1)
    return s


def churn(s: Scheduler, rng: random.Random, wall: float) -> None:
    """CHANGES tasks dispatched and finished: the rows a burst of results changes."""
    members = {"n2@127.0.0.1": list(s.defs)}
    for name in rng.sample(sorted(s.defs), min(CHANGES, len(s.defs))):
        d, _ = s.trigger(name, wall, members)
        if d is not None:
            s.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot}, 1.0, "", wall)


class Manager:
    """A manager core with ``members`` members that acknowledge what they are sent."""

    def __init__(self, members: int) -> None:
        self.now = 0.0
        self.core = NodeCore(ME, now=0.0, rng=random.Random(1))
        self.core.handle(Start(), 0.0)
        self.peers = {f"127.0.0.1:{47002 + i}": Peer(f"n{i + 2}@127.0.0.1",
                                                     f"127.0.0.1:{47002 + i}", MEMBER_MARKS, 0)
                      for i in range(members)}
        for p in self.peers.values():
            self.settle(self.core.handle(Received(Join(p, self.core.term, ())), 0.0))
        self.encoder = RowEncoder()

    def settle(self, effects: list[Any]) -> dict[str, int]:
        """Encode the sends (each object once, as the agent does), let each member ACK;
        the bytes each member got."""
        encoded: dict[int, int] = {}
        got: dict[str, int] = {}
        for e in effects:
            if not isinstance(e, Send) or e.to not in self.peers:
                continue
            size = encoded.get(id(e.msg))
            if size is None:
                size = encoded[id(e.msg)] = sum(map(len, encode(e.msg)))
            got[e.to] = got.get(e.to, 0) + size
        ack_heartbeats(self.core, self.peers, effects, self.now)
        return got

    def round(self, s: Scheduler, budget: float = ENCODE_BUDGET) -> tuple[float, int, bool]:
        """One replication step: (ms, largest bytes to a member, all rows encoded)."""
        self.now += 0.1
        t0 = STEP_CLOCK()
        done = self.encoder.step(s, self.core.table_log, time.perf_counter() + budget)
        effects = self.core.heartbeat_now(self.now)
        encoded: dict[int, list[bytes]] = {}
        for e in effects:  # each object once, as the agent does
            if isinstance(e, Send) and id(e.msg) not in encoded:
                encoded[id(e.msg)] = encode(e.msg)
        ms = (STEP_CLOCK() - t0) * 1000
        del encoded
        got = self.settle(effects)
        return ms, max(got.values(), default=0), done


def before_round(s: Scheduler) -> tuple[float, int]:
    t0 = STEP_CLOCK()
    beat = Heartbeat(ME, 3, 7, 9, None, None)
    table = pack_table(s.table())
    # The old HEARTBEAT carried the packed table in its ``state`` field: the same strings in
    # a JSON object, encoded once (sized here as JSON: the old codec did the same work).
    size = sum(map(len, encode(beat))) + len(json.dumps(table, separators=(",", ":")))
    return (STEP_CLOCK() - t0) * 1000, size


def table_part(tasks: list[int], members: int) -> None:
    rows = []
    extra = []
    takeover: list[tuple[str, ...]] = []
    follow: list[tuple[str, ...]] = []
    offers: list[tuple[str, ...]] = []
    for n in tasks:
        wall = time.time()
        s = scheduler_with(n, wall)
        m = Manager(members)
        fill = []
        while True:  # the first table: a takeover fills its new log in budgeted steps
            ms, _, done = m.round(s)
            fill.append(ms)
            if done:
                break
        for _ in range(3):
            m.round(s)
        rng = random.Random(2)
        before: list[tuple[float, int]] = []
        now: list[tuple[float, int]] = []
        for r in range(ROUNDS):  # interleaved: both see the same machine
            churn(s, rng, wall + 3 + r)
            now.append(m.round(s)[:2])
            before.append(before_round(s))
        b_ms = [x[0] for x in before]
        n_ms = [x[0] for x in now]
        b_bytes = statistics.median(x[1] for x in before)
        n_bytes = statistics.median(x[1] for x in now)
        over = " (over 1 MiB: cannot be sent)" if b_bytes > MAX_MESSAGE_BYTES else ""
        rows.append((f"{n:,}", f"{b_bytes:,.0f}{over}", f"{n_bytes:,.0f}",
                     f"{b_bytes / n_bytes:,.0f}x",
                     f"{statistics.median(b_ms):.2f} / {max(b_ms):.2f}",
                     f"{statistics.median(n_ms):.3f} / {max(n_ms):.3f}",
                     f"{statistics.median(b_ms) / statistics.median(n_ms):,.0f}x"))
        # A joiner: rounds until it holds the table, its largest message.
        joiner = Peer("late@127.0.0.1", "127.0.0.1:46999", "j", 0)
        m.peers[joiner.address] = joiner
        got = m.settle(m.core.handle(Received(Join(joiner, m.core.term, ())), m.now))
        biggest = got.get(joiner.address, 0)
        join_rounds, join_ms = 0, []
        while m.core.members.get(joiner.name).acked_table < m.core.table_log.seq:
            join_rounds += 1
            m.now += 0.1
            t0 = STEP_CLOCK()
            effects = m.core.heartbeat_now(m.now)
            seen: set[int] = set()
            for e in effects:
                if isinstance(e, Send) and id(e.msg) not in seen:
                    seen.add(id(e.msg))
                    encode(e.msg)
            join_ms.append((STEP_CLOCK() - t0) * 1000)
            got = m.settle(effects)
            biggest = max(biggest, got.get(joiner.address, 0))
        extra.append((f"{n:,}", str(len(fill)), f"{max(fill):.2f}", f"{sum(fill):.1f}",
                      str(join_rounds), f"{biggest:,}", f"{max(join_ms, default=0):.2f}"))
        got = takeover_load(s, m, wall)
        takeover.append(got[0])
        follow.append(got[1])
        offers.append(offer_part(s, m, wall))
    print(f"Heartbeat bytes per member and loop stall per round ({CHANGES} tasks run per "
          f"round, {members} members, {ROUNDS} rounds; stall: median / max ms)")
    show(("tasks", "bytes before", "bytes now", "ratio", "stall before", "stall now",
          "ratio"), rows)
    print()
    print("Now: a takeover's fill of the new log, and a joiner's transfer")
    show(("tasks", "fill steps", "longest step ms", "fill total ms", "join rounds after "
          "WELCOME", "largest message B", "longest join round ms"), extra)
    print()
    print("A takeover in LOAD_BUDGET slices: the load of the replica's rows "
          "(Scheduler.load_rows) and the activation (Scheduler.activate_step), against each "
          "in one step (before); the longest step is the loop's longest stall")
    show(("tasks", "load: steps / longest / total ms", "load in one step (before) ms",
          "activate: steps / longest / total ms", "activate in one step (before) ms"),
         takeover)
    print()
    print(f"A follower's status, show or OFFER after a round ({CHANGES} tasks run): its "
          "scheduler brought up to the replica (Scheduler.follow_rows, the rows changed) "
          "against the whole table parsed and loaded (before)")
    show(("tasks", "rows loaded now", "before ms", "now ms", "ratio"), follow)
    print()
    print(f"A member at a takeover: its replica fed the whole log (ms), and its OFFER "
          f"(clerk._offerjob: rows / total ms / longest step ms, parts encoded) to a fellow "
          f"member taking over when the new manager's table stands where its own does, when "
          f"it stands a round ({CHANGES} tasks run) behind, every row (a position not "
          f"announced), and every row from a follower that never loaded a row of its replica")
    show(("tasks", "replica fed ms", "OFFER: same replica", "OFFER: a round behind",
          "OFFER: every row", "every row, never loaded"), offers)


class GcTime:
    """The interpreter's full (generation 2) collections, timed: a 10,000-task table keeps
    millions of objects alive, and a full collection that lands in a step makes it ~100 ms
    whatever the step does (the step's own work is the rest)."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._t0 = STEP_CLOCK()
        else:
            self.ms += (STEP_CLOCK() - self._t0) * 1000

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def _longest(steps: list[tuple[float, float]]) -> str:
    """The longest step, and the longest without a full collection in it if that differs."""
    top = max(t for t, _ in steps)
    own = max(t - g for t, g in steps)
    return f"{top:.2f}" if own >= top - 0.01 else f"{top:.2f} ({own:.2f} without gc)"


def takeover_load(s: Scheduler, m: Manager, wall: float) -> tuple[tuple[str, ...],
                                                                 tuple[str, ...]]:
    """A follower's replica of the manager's log loaded by a new manager: in slices (now) and
    as the whole parsed table in one step (before), then activated: in slices (now) and in one
    step (before). Then a follower brought up to its replica again after a round of changes
    (a status, a ``show``, an OFFER): the rows changed (now) against the whole table (before).
    """
    log = m.core.table_log
    rep = Replica()
    for d in log.window(-1, 1 << 40):
        rep.apply(d)
    defs = list(s.defs.values())
    items = rep.items()
    fresh = Scheduler(defs, random.Random(3))
    gct = GcTime()
    steps: list[tuple[float, float]] = []
    at = 0
    while at < len(items):
        g0, t0 = gct.ms, STEP_CLOCK()
        at = fresh.load_rows(items, at, time.perf_counter() + LOAD_BUDGET)
        steps.append(((STEP_CLOCK() - t0) * 1000, gct.ms - g0))
    once = Scheduler(defs, random.Random(3))
    t0 = STEP_CLOCK()
    once.load(rep.table())
    whole = (STEP_CLOCK() - t0) * 1000
    claim = (2, "n2@127.0.0.1")
    t0 = STEP_CLOCK()
    once.activate(wall + 5, graceful=False, claim=claim)
    act_once = (STEP_CLOCK() - t0) * 1000
    fresh.begin_activation(wall + 5, graceful=False, claim=claim)
    act: list[tuple[float, float]] = []
    while True:
        g0, t0 = gct.ms, STEP_CLOCK()
        done = fresh.activate_step(time.perf_counter() + LOAD_BUDGET)
        act.append(((STEP_CLOCK() - t0) * 1000, gct.ms - g0))
        if done:
            break
    gct.close()
    n = f"{len(s.defs):,}"
    takeover = (n, f"{len(steps)} / {_longest(steps)} / {sum(t for t, _ in steps):.1f}",
                f"{whole:.1f}", f"{len(act)} / {_longest(act)} / {sum(t for t, _ in act):.1f}",
                f"{act_once:.1f}")
    # A follower (its scheduler brought up to the replica once), after a round of changes.
    follower = Scheduler(defs, random.Random(4))
    seen: dict[str, str | None] = {}
    follower.follow_rows(rep.items(), seen)
    churn(s, random.Random(5), wall + 40)
    m.round(s, budget=1.0)
    for d in log.window(rep.seq, 1 << 40):
        rep.apply(d)
    t0 = STEP_CLOCK()
    loaded = follower.follow_rows(rep.items(), seen)
    now_ms = (STEP_CLOCK() - t0) * 1000
    t0 = STEP_CLOCK()
    Scheduler(defs, random.Random(4)).load(rep.table())
    before_ms = (STEP_CLOCK() - t0) * 1000
    follow = (n, str(loaded), f"{before_ms:.1f}", f"{now_ms:.2f}",
              f"{before_ms / max(now_ms, 1e-6):,.0f}x")
    return takeover, follow


def offer_part(s: Scheduler, m: Manager, wall: float) -> tuple[str, ...]:
    """A member's side of a takeover: its replica fed the whole log (every delta, as a joiner
    gets it), then the rows it OFFERs a fellow member taking over (``Replication._offer``):
    with the same replica (the common case), and with a new manager one round behind (its
    replica caught up a round earlier). Against the cost of offering every row."""
    log = m.core.table_log
    rep = Replica()
    t0 = STEP_CLOCK()
    for d in log.window(-1, 1 << 40):
        rep.apply(d)
    apply_ms = (STEP_CLOCK() - t0) * 1000
    n = f"{len(s.defs):,}"
    defs = list(s.defs.values())
    follower = Scheduler(defs, random.Random(4))
    seen: dict[str, str | None] = {}
    follower.follow_rows(rep.items(), seen)
    behind = rep.position()

    def offer(at: Any, sched: Scheduler, seen: dict[str, str | None]) -> str:
        """rows / total ms / longest step ms of the OFFER (clerk._offerjob: in slices, a
        part sent per step, each encoded as it leaves)."""
        sent: list[Any] = []
        job = None
        steps: list[float] = []
        while True:
            t0 = STEP_CLOCK()
            if job is None:
                job = offer_job("m", sched, rep.texts(), offer_test(rep, at), seen,
                                sent.append)
            done = job.step(LOAD_BUDGET)
            for part in sent:
                encode(Offer(ME, 3, part))
            steps.append((STEP_CLOCK() - t0) * 1000)
            counted.append(sum(len(unpack_table(p)["tasks"]) for p in sent))  # (not timed)
            sent.clear()
            if done:
                break
        return f"{sum(counted):,} / {sum(steps):.1f} / {max(steps):.2f}"

    churn(s, random.Random(6), wall + 50)
    m.round(s, budget=1.0)
    for d in log.window(rep.seq, 1 << 40):
        rep.apply(d)
    follower.follow_rows(rep.items(), seen)
    counted: list[int] = []
    same = offer(rep.position(), follower, seen)
    counted = []
    lag = offer(behind, follower, seen)
    counted = []
    every = offer(None, follower, seen)
    counted = []
    first = offer(None, Scheduler(defs, random.Random(4)), {})
    return (n, f"{apply_ms:.1f}", same, lag, every, first)


def show(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# --- the CPU part ---------------------------------------------------------------------------

CPU_CHILD = r"""
import json, os, statistics, subprocess, sys, time
import psutil
import clerk
from clerk.testing import LocalCluster

size, window, every = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
tasks = [clerk.task("clerk.examples:Tally", name="tick", interval=every)] if every else []
HZ = os.sysconf("SC_CLK_TCK")

def threads(pid):
    # {tid: (name, cpu s, context switches)} from /proc: per thread, which psutil does not name
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                sw = sum(int(ln.split()[1]) for ln in fh if "ctxt_switches" in ln)
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(f[11]) + int(f[12])) / HZ, sw)
    return out

def segments(conns):
    # data segments in + out (ss -ti) on these (local, remote) TCP endpoints: ZeroMQ frames
    # on the wire, application messages and ZMTP PINGs/PONGs alike
    want = {(f"{c.laddr.ip}:{c.laddr.port}", f"{c.raddr.ip}:{c.raddr.port}") for c in conns
            if c.raddr}
    text = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True,
                          text=True).stdout
    total, key = 0, None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            parts = line.split()
            key = (parts[2], parts[3]) if len(parts) >= 4 else None
            continue
        if key in want:
            for part in line.split():
                if part.startswith(("data_segs_in:", "data_segs_out:")):
                    total += int(part.split(":")[1])
    return total

with LocalCluster(size, tasks, data_dir=False, log_level="warning") as c:
    deadline = time.monotonic() + 180
    manager = None
    while time.monotonic() < deadline:
        try:
            manager = c.agreed()
            if manager is not None:
                st = c.status(manager[0])
                if sum(1 for m in st.get("members", []) if m.get("alive")) >= size:
                    break
        except Exception:
            pass
        time.sleep(0.5)
    else:
        print(json.dumps({"error": f"cluster did not form ({manager})"}))
        sys.exit(1)
    name = manager[0]
    time.sleep(3.0)  # settled: every member has the table
    procs = [psutil.Process(p) for p in c.pids(name)]
    followers = {n: [psutil.Process(p) for p in c.pids(n)] for n in c.names if n != name}
    port = c.ports[name]
    # The agent (the node's loop) is the process that listens on the node's port.
    agent = [p for p in procs if any(k.laddr and k.laddr.port == port and k.status == "LISTEN"
                                     for k in p.net_connections(kind="tcp"))]
    def cpu(ps):
        total = 0.0
        for p in ps:
            try:
                total += sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
        return total
    def sample():
        th = threads(agent[0].pid) if agent else {}
        tr = c.status(name).get("transport", {})
        conns = agent[0].net_connections(kind="tcp") if agent else []
        return (cpu(procs), cpu(agent), {n: cpu(ps) for n, ps in followers.items()}, th,
                tr, segments(conns), time.monotonic())
    t0, a0, f0, th0, tr0, s0, w0 = sample()
    time.sleep(window)
    t1, a1, f1, th1, tr1, s1, w1 = sample()
    span = w1 - w0
    def pct(a, b):
        return 100 * (b - a) / span
    groups = {"loop": 0.0, "io": 0.0, "other": 0.0}
    switches = 0
    for tid, (tname, cpu1, sw1) in th1.items():
        tname0, cpu0, sw0 = th0.get(tid, (tname, 0.0, 0))
        group = ("loop" if agent and tid == agent[0].pid else
                 "io" if tname.startswith("ZMQbg/IO") else "other")
        groups[group] += cpu1 - cpu0
        switches += sw1 - sw0
    others = max(1, size - 1)
    def per(key):
        return (tr1.get(key, 0) - tr0.get(key, 0)) / span / others
    print(json.dumps({"tree": pct(t0, t1),
                      "agent": pct(a0, a1) if agent else None,
                      "loop": 100 * groups["loop"] / span if agent else None,
                      "io": 100 * groups["io"] / span if agent else None,
                      "wakeups": switches / span if agent else None,
                      "follower": statistics.median(pct(f0[n], f1[n]) for n in f1)
                      if f1 else None,
                      "sent": per("messages_sent") if size > 1 else None,
                      "received": per("messages_received") if size > 1 else None,
                      "segments": (s1 - s0) / span / others if size > 1 else None,
                      "processes": len(procs)}))
"""


def cpu_once(tree: Path | None, size: int, window: float, every: int) -> dict[str, Any]:
    env = dict(os.environ)
    cwd = None
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        cwd = str(tree)
    out = subprocess.run([sys.executable, "-c", CPU_CHILD, str(size), str(window), str(every)],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()
        return {"error": tail[-1][-200:] if tail else f"exit {out.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _med(runs: list[dict[str, Any]], key: str) -> str:
    value = _median(runs, key)
    if value is None:
        errs = [r.get("error") for r in runs if r.get("error")]
        return f"failed: {errs[0]!r}" if errs else "-"
    return f"{value:.2f}"


def _ratio(g: dict[str, list[dict[str, Any]]], key: str) -> str:
    b, n = _median(g["before"], key), _median(g["now"], key)
    return f"{n / b:.2f}x" if b and n is not None else "-"


#: The second table's columns: keys of the child's JSON line.
DETAIL = ("loop", "io", "wakeups", "sent", "received", "segments", "follower")


def cpu_part(sizes: list[int], before: Path | None, window: float, repeats: int,
             every: int) -> None:
    rows = []
    got: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for size in sizes:
        got[size] = {"before": [], "now": []}
        for _ in range(repeats):
            if before is not None:
                got[size]["before"].append(cpu_once(before, size, window, every))
            got[size]["now"].append(cpu_once(None, size, window, every))
        g = got[size]
        rows.append((str(size), _med(g["before"], "agent"), _med(g["now"], "agent"),
                     _ratio(g, "agent"), _med(g["before"], "tree"), _med(g["now"], "tree"),
                     _ratio(g, "tree")))
    # Growth per member: the slope from the smallest cluster to each larger one.
    first = sizes[0]
    for size in sizes[1:]:
        cells = []
        for which, key in (("before", "agent"), ("now", "agent"), ("", ""),
                           ("before", "tree"), ("now", "tree"), ("", "")):
            if not which:
                b, n = cells[-2:]
                cells.append(f"{float(n) / float(b):.2f}x" if "-" not in (b, n)
                             and float(b) > 0 else "-")
                continue
            lo, hi = _median(got[first][which], key), _median(got[size][which], key)
            cells.append("-" if lo is None or hi is None else
                         f"{(hi - lo) / (size - first):.3f}")
        rows.append((f"per member {first}->{size}", *cells))
    load = f"one small task (clerk.examples:Tally) every {every} ms" if every else "no task"
    print(f"Manager CPU, % of one core over {window:.0f} s ({load}; median of {repeats})")
    show(("members", "agent before", "agent now", "now/before", "tree before", "tree now",
          "now/before"), rows)
    print()
    print("Where the manager's agent spends it, before -> now: its loop thread and ZeroMQ's "
          "I/O thread (% of a core), its wake-ups/s (context switches of all its threads); "
          "per member per second, the ZeroMQ messages it sends and receives and the data "
          "segments on its TCP connections (messages and ZMTP PINGs/PONGs alike); the median "
          "follower's whole tree (% of a core)")
    detail = []
    for size in sizes:
        g = got[size]
        detail.append((str(size), *(f"{_med(g['before'], k)} -> {_med(g['now'], k)}"
                                    if before is not None else _med(g["now"], k)
                                    for k in DETAIL)))
    show(("members", *DETAIL), detail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--cpu", action="store_true", help="the CPU part (real clusters)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--before", type=Path, help="source tree to compare the CPU part with")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--task-interval", type=int, default=200,
                    help="the CPU part's task interval in ms (0: no task, heartbeats alone)")
    ap.add_argument("--no-gc-policy", action="store_true",
                    help="the table part without the agent's collector policy")
    args = ap.parse_args()
    if args.cpu:
        cpu_part(args.sizes, args.before, args.window, args.repeats, args.task_interval)
    else:
        if not args.no_gc_policy:
            # The agent process's collector policy (clerk._gcpolicy, set up by
            # clerk._agentmain): without it a full collection (~100 ms at 10,000 tasks) lands
            # in whichever step runs then, which no node does.
            GcPolicy(clock=STEP_CLOCK).install(0.0)
        table_part(args.tasks, args.members)
    return 0


if __name__ == "__main__":
    sys.exit(main())
