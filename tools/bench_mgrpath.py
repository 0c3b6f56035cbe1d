#!/usr/bin/env python3
"""The manager agent's own work per run, in process, this tree against another, in turns.

    .venv/bin/python tools/bench_mgrpath.py --against /work/main [--repeats 7] [--runs 20000]
        [--instructions | --parts]

``tools/bench_sched.py``'s scheduler (140 no-op tasks every 100 ms on 3 nodes, the default
20 ms lead, each result 1.5 ms after its due time, a fake wall clock jumping from one thing
to do to the next) with what the manager does around it, without sockets: every dispatch's
EXECUTE encoded (``clerk._codec.encode``); every result another node reports decoded from
its RESULT frames (``clerk._codec.decode``, of the body its codec writes) and its RESULT_ACK
held (``clerk._resultacks.PendingAcks``) until both members hold its row, then encoded (a
result of the manager's own executor has neither, as in the node); every ``REPLICATE_GAP_S``
(25 ms) of the fake clock a replication round: the rows the scheduler marked changed encoded
into the table log (``RowEncoder.step``: ``TaskRecord.to_text``, ``ReplicaLog.put``), then
for the two members the delta from where they stand (histories as patches, and the rows
after the body where the tree has that form, as a member of this build reads them) in a
HEARTBEAT, encoded once for members at the same position (as
``clerk._heartbeats.heartbeat_round`` shares it); every 250 ms the journal record of the rows
changed since the last one (``clerk._journal.change_record``). CPU per run (``time.thread_time``),
medians over interleaved repeats (each tree in its own process, the order alternating), and
their ratio; both trees must send the same EXECUTE and RESULT_ACK bytes and end with the
same table log and change sequence (a digest, checked; ``PYTHONHASHSEED=0``: the order rows
are encoded in follows a set's). A loaded machine moves this far less than a cluster's CPU per run
(``tools/bench_tasks.py`` (c)), which at a load of 8-16 swings by 1.5x between repeats.
``--instructions``: the instructions per run of each tree as valgrind's callgrind counts
them (deterministic on a shared machine: the difference of a run of 2,500 and one of 500
runs, start-up cancelled out); CPU medians swing by 5-10 % at such a load. ``--parts``: instead,
each tree's µs of CPU per run by part of the path (the lines between ``# <part>`` and ``# </>``
in the child, timed only in this mode: the measurement above runs the child as it stands),
to choose what to cut; the timers' own cost is in each part, and the harness's digest of each
RESULT_ACK in that part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from _bench_ab import interleaved, print_pair

CHILD = r"""
import hashlib, heapq, inspect, json, random, sys, time
sys.path.insert(0, sys.argv[1])
from clerk._codec import MAGIC, decode, encode
from clerk._journal import change_record
from clerk._messages import Execute, Heartbeat, Peer, Result, ResultAck
from clerk._resultacks import PendingAcks
from clerk._metrics import NodeMetrics
from clerk._replicalog import ReplicaLog, RowEncoder
from clerk._schedule import Scheduler
from clerk._tasks import TaskDef

runs = int(sys.argv[2])
me = Peer("n0@127.0.0.1", "127.0.0.1:47000", "5f0c1a2b3c4d+r", 0)
peers = {f"n{i}@127.0.0.1": Peer(f"n{i}@127.0.0.1", f"127.0.0.1:4700{i}", f"{i}a0c1a2b3c4d+r", 0)
         for i in (1, 2)}
# A follower's RESULT body as its codec writes it, made here by an f-string (a few hundred
# instructions: the follower's encode is not the manager's work), checked against encode.
sender_text = {n: encode(Result(p, 3, "t", "r", 0, "ok"))[2].decode()[10:].split(',"term":')[0]
               for n, p in peers.items()}
def result_body(d, state_text):
    return (f'{{"sender":{sender_text[d.node]},"term":3,"task":"{d.task}",'
            f'"run_id":"{d.run_id}","slot":{d.slot},"outcome":"ok","state":{state_text},'
            f'"duration_ms":0.12,"error":""}}').encode()
acks = PendingAcks()
defs = [TaskDef(name=f"t{i:04d}", target="x:Y", interval=100, timeout=5000) for i in range(140)]
s = Scheduler(defs, random.Random(7), dispatch_lead_ms=20)
members = {f"n{i}@127.0.0.1": frozenset(d.name for d in defs) for i in range(3)}
metrics = NodeMetrics([d.name for d in defs])
log, enc = ReplicaLog("L"), RowEncoder()
# Rows after the HEARTBEAT's body (clerk._codectail) where the tree has them: its members do.
form = {"raw": True} if "raw" in inspect.signature(log.delta).parameters else {}
wall = 1764770000.0
s.activate(wall, False, (3, "n0@127.0.0.1"))
enc.step(s, log, float("inf"))
log.track()
held = {"n1@127.0.0.1": log.seq, "n2@127.0.0.1": log.seq}
next_round = wall + 0.025
next_write = wall + 0.25
pending = []  # (wall s of the result, seq, dispatch)
seq = 0
done = 0
checked = 0
digest = hashlib.sha256()
t0 = time.thread_time()
while done < runs:
    nxt = min(s.next_deadline(wall), next_round, next_write)
    if pending and pending[0][0] <= nxt:
        at, _, d = heapq.heappop(pending)
        wall = max(wall, at)
        state = d.state if not d.init else {"n": 0}
        if d.node == me.name:  # its own executor's result: no frames, no RESULT_ACK
            # <result applied>
            fin = s.on_result(d.task, d.run_id, d.node, "ok", state, 0.12, "", wall)
            # </>
        else:
            body = result_body(d, '{"n":0}' if state == {"n": 0} else json.dumps(state))
            if checked < 3:
                checked += 1
                assert body == encode(Result(peers[d.node], 3, d.task, d.run_id, d.slot, "ok",
                                             state, 0.12, ""))[2], body
            # <RESULT decode>
            msg = decode([MAGIC, b"result", body])
            # </>
            # <result applied>
            fin = s.on_result(msg.task, msg.run_id, msg.sender.name, msg.outcome, msg.state,
                              msg.duration_ms, msg.error, wall, slot=msg.slot)
            # </>
            # <RESULT_ACKs>
            acks.hold(msg.sender.address, msg.task, msg.run_id, wall)
            # </>
        # <result applied>
        metrics.observe_run(fin.task, fin.duration_ms, fin.lateness_ms)
        # </>
        done += 1
        continue
    wall = max(wall, nxt)
    if wall >= next_round:
        next_round = wall + 0.025
        # <rows into the log>
        enc.step(s, log, float("inf"))
        # </>
        # <RESULT_ACKs>
        if acks.waiting_stamp():
            acks.stamp(log.log, log.seq)
        # The RESULT_ACKs whose rows both members acknowledged (in the last round: they
        # acknowledge at once here), as clerk._routing's release_acks sends them.
        for ack in acks.release(log.log, min(held.values()), wall):
            digest.update(encode(ResultAck(me, 3, ack.task, ack.run_id))[2])
        # </>
        # <HEARTBEATs>
        beats = {}  # members at the same position share one (clerk._heartbeats)
        for member, base in held.items():
            if base not in beats:
                beats[base] = log.delta(base, 64 * 1024, 2, **form)
                if beats[base] is not None:
                    encode(Heartbeat(me, 3, 1, 1, None, beats[base]))
            if beats[base] is not None:
                held[member] = beats[base].upto
        # </>
    if wall >= next_write:
        next_write = wall + 0.25
        # <journal records>
        change_record(log.take_changes())
        # </>
    # <scheduler ticks>
    dispatches, finished = s.tick(wall, members)
    # </>
    for d in dispatches:
        seq += 1
        # <EXECUTE encode>
        frames = encode(Execute(me, 3, d.task, d.run_id, d.slot, d.state, d.timeout_ms,
                                d.init, d.due_ms, d.deadline_ms))
        # </>
        digest.update(frames[2])
        heapq.heappush(pending, ((d.due_ms + 1.5) / 1000, seq, d))
cpu = time.thread_time() - t0
for key, text in sorted(log.items()):
    digest.update(f"{key}={text}".encode())
digest.update(f"{log.seq}".encode())
print(json.dumps([cpu / runs * 1e6, digest.hexdigest()]))
"""


def _timed_parts(child: str) -> str:
    """``child`` with each part between a ``# <name>`` and a ``# </>`` line timed
    (``time.thread_time`` before and after: ~0.2 us of the timer in each), the µs of CPU per
    run of each part printed as a JSON object on its second line."""
    out: list[str] = []
    for line in child.splitlines():
        code = line.strip()
        pad = line[:len(line) - len(line.lstrip())]
        if code == "# </>":
            out.append(f"{pad}_parts[_part] = _parts.get(_part, 0.0) + _tt() - _at")
        elif code.startswith("# <") and code.endswith(">"):
            out.append(f"{pad}_part, _at = {code[3:-1]!r}, _tt()")
        elif code.startswith("t0 = time.thread_time()"):
            out += [line, "_tt, _parts = time.thread_time, {}"]
        else:
            out.append(line)
    out.append("print(json.dumps({k: v / runs * 1e6 for k, v in _parts.items()}))")
    return "\n".join(out) + "\n"


def _parts(tree: Path, runs: int, repeats: int) -> dict[str, float]:
    """The median µs of CPU per run of each marked part of the path in ``tree``."""
    got: dict[str, list[float]] = {}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _timed_parts(CHILD), str(tree), str(runs)],
                             check=True, capture_output=True, text=True, cwd=tree,
                             env={**os.environ, "PYTHONHASHSEED": "0"})
        for name, us in json.loads(out.stdout.splitlines()[1]).items():
            got.setdefault(name, []).append(us)
    return {name: statistics.median(v) for name, v in got.items()}


def _one(tree: Path, runs: int) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(runs)], check=True,
                         capture_output=True, text=True, cwd=tree,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    us, digest = json.loads(out.stdout)
    return float(us), str(digest)


def _instructions(tree: Path) -> float:
    def total(runs: int) -> int:
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              sys.executable, "-c", CHILD, str(tree), str(runs)], check=True,
                             capture_output=True, text=True, cwd=tree,
                             env={**os.environ, "PYTHONHASHSEED": "0"})
        m = re.search(r"Collected : (\d+)", out.stderr)
        assert m is not None, "valgrind did not report"
        return int(m.group(1))

    return (total(2500) - total(500)) / 2000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="another checkout (e.g. /work/main)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20000, help="runs per measurement")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions per run (valgrind)")
    ap.add_argument("--parts", action="store_true",
                    help="only time each part of the path in both trees (medians), no ratio")
    args = ap.parse_args()
    here, there = Path(__file__).resolve().parent.parent, Path(args.against).resolve()
    if args.parts:
        mine, theirs = _parts(here, args.runs, args.repeats), _parts(there, args.runs,
                                                                      args.repeats)
        print(f"µs of CPU per run by part, medians of {args.repeats} repeats (each part timed "
              f"by time.thread_time, ~0.2 µs of the timer in each)")
        print(f"{'part':<20} | {'against':>8} | {'this tree':>9}")
        for name in sorted(mine, key=lambda n: -mine[n]):
            print(f"{name:<20} | {theirs.get(name, 0.0):8.2f} | {mine[name]:9.2f}")
        print(f"{'all parts':<20} | {sum(theirs.values()):8.2f} | {sum(mine.values()):9.2f}")
        return 0
    a, b, same = interleaved(_one, here, there, args.repeats, args.runs)
    print(f"manager agent's own work, 140 no-op tasks every 100 ms on 3 nodes (scheduler, "
          f"EXECUTE encode, RESULT decode, RESULT_ACKs, rows into the log, HEARTBEATs to 2 "
          f"members, journal records): "
          f"medians of {args.repeats} interleaved repeats, µs of CPU per run; same EXECUTEs, "
          f"RESULT_ACKs and log: {'yes' if same else 'NO'}")
    print_pair(a, b)
    if args.instructions:
        ib, ia = _instructions(there), _instructions(here)
        print(f"instructions per run: against {ib:,.0f}, this tree {ia:,.0f} ({ia / ib:.3f}x)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
