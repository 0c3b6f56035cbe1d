#!/usr/bin/env python3
"""The member list at 100 / 1,000 / 10,000 tasks and 1 / 10 / 30 members: the bytes of the
WELCOME a joiner gets and of the HEARTBEAT that carries the list to the members, and the loop
time to make and to take them, this tree beside another one.

    .venv/bin/python tools/bench_members.py [--tasks 100 1000 10000] [--members 1 10 30]
        [--before /tmp/base] [--repeat 3]

Each measurement is a child process that imports one tree's ``clerk`` and runs, in process,
the real NodeCore and codec (no sockets): a manager with ``members`` members, each announcing
every task (``clerk._deploy.announce``, each started at its own time, as real nodes do; the
incarnation marks the tree's agent uses), then one more node JOINs:

* ``welcome``: the WELCOME the joiner gets (bytes; ``over``: above the 1 MiB limit, so not
  sent: the joiner never gets in);
* ``list hb``: the HEARTBEAT that carries the changed list to a member (bytes);
* ``manager ms``: the manager's loop for the join: the JOIN handled, the next heartbeat
  round, every distinct message encoded (the real agent encodes each object once);
* ``member ms``: a member's loop for the list: the HEARTBEAT decoded and handled;
* ``joiner ms``: the joiner's loop for the WELCOME: decoded and handled;
* ``fetch``: a tree with digests (``clerk._tasksets``): the bytes of a set asked for by a node
  that does not hold it (once per digest per node; members of one build share one set).

Times are the CPU time of the thread (``time.thread_time``), medians of ``--repeat`` child
runs, the trees interleaved, with the garbage collector emptied before each timed step and
off during it (a collection of the heap of 30 members' 10,000 entries, ~5 ms, lands in
whichever step allocates; the agent schedules its own collections, ``clerk._gcpolicy``).
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
import gc, json, random, sys, time
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
n, members = int(sys.argv[1]), int(sys.argv[2])
import clerk
from clerk._codec import EncodeError, decode, encode
from clerk._core import NodeCore, Received, Send, Start
from clerk._deploy import announce
from clerk._messages import TABLE_MARK, Heartbeat, Join, Peer, Welcome
try:
    from clerk._tasksets import DIGEST_MARK, parts_of, split
except ImportError:
    DIGEST_MARK = None
CLOCK = time.thread_time
MARKS = TABLE_MARK + (DIGEST_MARK or "") + "+b"
defs = [clerk.task("clerk.examples:Tally", name=f"myapp.tasks:Poll{i:05d}", interval=60_000,
                   args={"n": i}) for i in range(n)]

def peer(j):
    return Peer(f"n{j:02d}@10.0.0.{j}", f"10.0.0.{j}:7400", f"{j:012x}{MARKS}", 0)

def enc(msg):
    try:
        return encode(msg)
    except EncodeError:
        return None

ME = peer(1)
m = NodeCore(ME, now=0.0, rng=random.Random(1), tasks=announce(defs, 1000.0))
m.handle(Start(), 0.0)
now = 0.0
for j in range(2, members + 1):
    now += 0.01
    m.handle(Received(Join(peer(j), m.term, announce(defs, 1000.0 + j))), now)
now += 0.2
m.heartbeat_now(now)  # everyone has the list (each member then acknowledges its epoch)
from clerk._messages import Ack
for j in range(2, members + 1):
    m.handle(Received(Ack(peer(j), m.term, 0, m.members.epoch)), now)
# a follower (member 2) that holds the list: it joined and was welcomed
f = NodeCore(peer(2), now=0.0, rng=random.Random(2), seeds=[ME.address],
             tasks=announce(defs, 1002.0))
f.handle(Start(), 0.0)
st = m.status if hasattr(m, "status") else None
w0 = m.handle(Received(Join(peer(2), m.term, announce(defs, 1002.0))), now)
for e in w0:
    if isinstance(e, Send) and isinstance(e.msg, Welcome):
        frames = enc(e.msg)
        if frames is not None:
            f.handle(Received(decode(frames)), now)
# the join measured (the collector off while timed, emptied before: a collection of this
# heap, whichever step it lands in, is ~5 ms; the agent schedules its own, clerk._gcpolicy)
joiner = peer(members + 1)
jtasks = announce(defs, 5000.0)
now += 0.3
gc.collect()
gc.disable()
t0 = CLOCK()
effects = m.handle(Received(Join(joiner, m.term, jtasks)), now)
effects += m.heartbeat_now(now + 0.1)
encoded = {}
for e in effects:
    if isinstance(e, Send) and id(e.msg) not in encoded:
        encoded[id(e.msg)] = enc(e.msg)
manager_ms = (CLOCK() - t0) * 1000
welcome = next(encoded[id(e.msg)] for e in effects
               if isinstance(e, Send) and isinstance(e.msg, Welcome))
hb = next((encoded[id(e.msg)] for e in effects if isinstance(e, Send) and e.to == peer(2).address
           and isinstance(e.msg, Heartbeat) and e.msg.members is not None), None)
hb_msg = next((e.msg for e in effects if isinstance(e, Send) and e.to == peer(2).address
               and isinstance(e.msg, Heartbeat) and e.msg.members is not None), None)
size = lambda fr: None if fr is None else sum(len(x) for x in fr)
out = {"welcome": size(welcome), "hb": size(hb) if hb_msg is not None else None,
       "manager_ms": manager_ms, "member_ms": None, "joiner_ms": None, "fetch": None}
if members < 2:
    out["hb"] = 0  # nobody else to tell
if hb is not None:
    gc.collect()
    t0 = CLOCK()
    f.handle(Received(decode(hb)), now + 0.1)
    out["member_ms"] = (CLOCK() - t0) * 1000
if welcome is not None:
    j = NodeCore(joiner, now=now, rng=random.Random(3), seeds=[ME.address], tasks=jtasks)
    j.handle(Start(), now)
    gc.collect()
    t0 = CLOCK()
    j.handle(Received(decode(welcome)), now)
    out["joiner_ms"] = (CLOCK() - t0) * 1000
if DIGEST_MARK is not None:
    _, base, _ = split(announce(defs, 1.0))
    out["fetch"] = sum(len(json.dumps(list(p))) + 80 for p in parts_of(base))
print(json.dumps(out))
"""


def run(tree: Path, n: int, members: int) -> dict[str, float | None]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    got = subprocess.run([sys.executable, "-c", CHILD, str(n), str(members)], env=env, cwd=tree,
                         capture_output=True, text=True, check=False, timeout=900)
    if got.returncode != 0:
        raise SystemExit(f"child failed in {tree}:\n{got.stderr[-3000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "over"
    if v >= 1 << 20:
        return f"{v / (1 << 20):.2f} MiB"
    if v >= 1024:
        return f"{v / 1024:.0f} KiB"
    return f"{int(v)} B"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--before", type=Path, help="another source tree, beside this one")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trees = [("before", args.before)] if args.before is not None else []
    trees.append(("after", HERE))
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat} interleaved runs")
    print(f"{'tasks':>6} {'members':>7} {'tree':<6} | {'welcome':>9} {'list hb':>9} "
          f"{'manager ms':>10} {'member ms':>9} {'joiner ms':>9} {'fetch':>9}")
    for n in args.tasks:
        for members in args.members:
            runs: dict[str, list[dict[str, float | None]]] = {name: [] for name, _ in trees}
            for _ in range(args.repeat):
                for name, tree in trees:
                    runs[name].append(run(tree, n, members))
            for name, _ in trees:
                rs = runs[name]

                def med(key: str, rs: list[dict[str, float | None]] = rs) -> float | None:
                    vals = [r[key] for r in rs if r[key] is not None]
                    return statistics.median(vals) if vals else None  # type: ignore[arg-type]

                fetch = med("fetch")
                print(f"{n:>6} {members:>7} {name:<6} | {fmt_bytes(med('welcome')):>9} "
                      f"{fmt_bytes(med('hb')) if members > 1 else '-':>9} "
                      f"{fmt_ms(med('manager_ms')):>10} {fmt_ms(med('member_ms')):>9} "
                      f"{fmt_ms(med('joiner_ms')):>9} "
                      f"{fmt_bytes(fetch) if fetch is not None else '-':>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
