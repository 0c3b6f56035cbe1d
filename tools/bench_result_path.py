#!/usr/bin/env python3
"""A remote run's result path in process, this tree against another, in interleaved turns.

    .venv/bin/python tools/bench_result_path.py --against ../main [--repeats 7] [--runs 20000]

What each process does with one run's result once the task returned (a Stamp run's state,
``{"dir": ...}``), split by the role that pays it:

* **worker**: the DONE written (``clerk._worker.done_body``, in the form this tree's agent
  reads) and sent over a Unix socket pair;
* **follower**: the agent's ``Executor._on_link`` (read, decode, the run's checks, ``_reply``:
  the Result), then ``ResultRouting._send_result``'s remote path (``Outbox.add``, ``encode``);
  later the RESULT_ACK decoded and ``Outbox.ack``;
* **manager**: the RESULT decoded, its ACK held (``PendingAcks.hold``), stamped and released
  eight results at a time as a heartbeat round would, each RESULT_ACK made and encoded.

The scheduler's part on the manager (``Running.on_result``) and the sockets' I/O threads are
left out: the same in both trees, and not this path's. CPU per role (``time.thread_time``,
which a loaded machine's scheduling moves far less than a cluster's CPU per run), each tree in
its own process per repeat (the order alternating); the table gives the medians in µs per run,
their ratio, and the median of each repeat's ratio (its two runs ran back to back: the load
moves less between them than across the whole run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from collections import OrderedDict
from types import MethodType, SimpleNamespace
from clerk import _worker
from clerk._codec import decode, encode
from clerk._executor import Executor
from clerk._messages import Execute, Peer, ResultAck
from clerk._outbox import Outbox
from clerk._resultacks import PendingAcks
from clerk._runqueue import Job, RunQueue
from clerk._workerlink import DONE, Reader, pack

clock = time.thread_time
MGR = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d+b", 0)
ME = Peer("n2@127.0.0.1", "127.0.0.1:47002", "6a7b8c9d0e1f+b", 0)
STATE = {"dir": "/tmp/bench-stamps-k2j4h5"}
state_json = _worker._STATE_DUMP(STATE)
outbox, acks, sent = Outbox(), PendingAcks(), []


def send_result(result, reply_to):  # ResultRouting._send_result, a remote manager
    outbox.add(result, 1.0)
    sent.append(encode(result))


a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.setblocking(False)
reader = Reader(a)
worker = SimpleNamespace(wid=0, identity=a, pid=4242, job=None)
ex = SimpleNamespace(workers={0: worker}, executed=0, queue=RunQueue(), _now=time.monotonic,
                     _ended=OrderedDict(), me=lambda: (ME, 3), send_result=send_result,
                     malformed=0, _malformed_quiet_until=-1e300, _on_stale=None)
ex._pump = lambda now: None
for name in ("_reply", "_refuse_stale", "_on_done", "_malformed"):
    if hasattr(Executor, name):
        setattr(ex, name, MethodType(getattr(Executor, name), ex))
n = int(sys.argv[2])
spent = {"worker": 0.0, "follower": 0.0, "manager": 0.0}
for k in range(n):
    run = f"a1b2-17/{k}/n1@127.0.0.1~1234.0badf00d"
    msg = Execute(MGR, 3, "t0001", run, 17345678 + k, STATE, 5000, False, 1764770000000,
                  1764770005000)
    worker.job = Job(msg, MGR.address, 1.0, 6.0, 1.0, 1.0)
    reply = {"run": run, "outcome": "ok", "state": STATE, "duration_ms": 0.0123 + k * 1e-9,
             "error": ""}
    t0 = clock()
    b.sendall(pack(DONE, _worker.done_body(reply, state_json)))
    t1 = clock()
    Executor._on_link(ex, reader)
    t2 = clock()
    result = decode(sent.pop())
    acks.hold(result.sender.address, result.task, result.run_id, 1.0)
    out = []
    if k % 8 == 7:
        acks.stamp("log", k)
        out = [encode(ResultAck(MGR, 3, h.task, h.run_id)) for h in acks.release("log", k, 1.0)]
    t3 = clock()
    for frames in out:
        outbox.ack(decode(frames).run_id)
    t4 = clock()
    spent["worker"] += t1 - t0
    spent["follower"] += t2 - t1 + t4 - t3
    spent["manager"] += t3 - t2
assert ex.executed == n and not outbox.pending() and worker.job is None
print(json.dumps({k: v / n * 1e6 for k, v in spent.items()}))
"""

ROLES = ("worker", "follower", "manager")


def _one(tree: Path, runs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(runs)], check=True,
                         capture_output=True, text=True, cwd=tree)
    got: dict[str, float] = json.loads(out.stdout)
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="another checkout (e.g. ../main)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20000, help="runs per measurement")
    args = ap.parse_args()
    here, there = Path(__file__).resolve().parent.parent, Path(args.against).resolve()
    got: dict[str, list[dict[str, float]]] = {"this tree": [], "against": []}
    for rep in range(args.repeats):
        pair = (("this tree", here), ("against", there))
        for label, tree in pair if rep % 2 == 0 else pair[::-1]:
            got[label].append(_one(tree, args.runs))
    print(f"a remote run's result path: medians of {args.repeats} interleaved repeats of "
          f"{args.runs} runs, µs of CPU per run")
    print(f"{'role':<10} | {'against':>8} | {'this tree':>9} | ratio | median of the "
          f"repeats' ratios (each repeat's two runs back to back)")
    med: dict[str, dict[str, float]] = {
        label: {r: statistics.median(x[r] for x in rows) for r in ROLES}
        for label, rows in got.items()}
    pairs = list(zip(got["this tree"], got["against"], strict=True))
    for role in (*ROLES, "all"):
        if role == "all":
            b, a = (sum(med[t].values()) for t in ("against", "this tree"))
            ratios = [sum(x.values()) / sum(y.values()) for x, y in pairs]
        else:
            b, a = med["against"][role], med["this tree"][role]
            ratios = [x[role] / y[role] for x, y in pairs]
        print(f"{role:<10} | {b:8.2f} | {a:9.2f} | {a / b:.2f}x | "
              f"{statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
