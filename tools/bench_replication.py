#!/usr/bin/env python3
"""What replicating the task table costs the manager's loop, at 100 / 1,000 / 10,000 tasks.

    .venv/bin/python tools/bench_replication.py [--members 3 30] [--tasks 100 1000 10000]

After every dispatch and every result the manager packs its table (``pack_table``) and sends
it to every member in a HEARTBEAT (``clerk._runner._replicate``). This measures, with the real
scheduler, packer and codec and no sockets, one such round: bytes of one heartbeat, and the
time the loop is blocked packing and encoding it for every member (``loop stall``), for

* now: a table change sends the table alone once a member has acknowledged the current
  member list (clerk._membership), and the agent encodes one heartbeat for all members;
* before: every member's announced task entries (``clerk._deploy.announce``) rode along, and
  the heartbeat was encoded again for each member (still what a change of the list costs).

Every task has run once (a small state, a ``last`` row). Medians of 5 interleaved rounds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clerk  # noqa: E402
from clerk._codec import MAX_MESSAGE_BYTES, encode  # noqa: E402
from clerk._deploy import announce  # noqa: E402
from clerk._messages import Heartbeat, MemberInfo, Peer  # noqa: E402
from clerk._schedule import Scheduler, pack_table  # noqa: E402

ME = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 0)


def scheduler_with(n: int) -> Scheduler:
    defs = [clerk.task("clerk.examples:Tally", name=f"task{i:05d}", interval=1000)
            for i in range(n)]
    s = Scheduler(defs, random.Random(1))
    wall = time.time()
    s.activate(wall, graceful=False)
    members = {"n2@127.0.0.1": [d.name for d in defs]}
    dispatches, _ = s.tick(wall + 2.0, members)
    for d in dispatches:
        s.on_result(d.task, d.run_id, d.node, "ok", {"count": d.slot % 1000}, 1.5, "",
                    wall + 2.1)
    return s


def round_cost(s: Scheduler, members: int, now: bool) -> tuple[int, float]:
    """(bytes of one heartbeat, ms the loop spends packing the table and encoding one round of
    heartbeats): ``now`` the table alone, encoded once for every member; before, the table
    and the member list, encoded once per member."""
    entries = announce(list(s.defs.values()), time.time())
    infos = tuple(MemberInfo(f"n{i}@127.0.0.1", f"127.0.0.1:{47001 + i}", "5f0c1a2b3c4d", 0,
                             True, entries) for i in range(1, members + 1))
    t0 = time.perf_counter()
    table = pack_table(s.table())
    size = 0
    for _ in range(1 if now else members - 1):
        size = sum(map(len, encode(Heartbeat(ME, 3, 7, 9, None if now else infos, table),
                                   max_bytes=1 << 30)))
    return size, (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[3, 30])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10_000])
    args = ap.parse_args()
    rows = []
    for n in args.tasks:
        s = scheduler_with(n)
        for members in args.members:
            cost: dict[bool, list[tuple[int, float]]] = {False: [], True: []}
            for _ in range(5):  # interleaved: both see the same machine
                for now in (False, True):
                    cost[now].append(round_cost(s, members, now))
            size = {now: runs[0][0] for now, runs in cost.items()}
            stall = {now: statistics.median(r[1] for r in runs) for now, runs in cost.items()}
            over = " (over the 1 MiB message limit)" if size[True] > MAX_MESSAGE_BYTES else ""
            rows.append((n, members, f"{size[False]:,}", f"{size[True]:,}",
                         f"{stall[False]:.2f}", f"{stall[True]:.2f}",
                         f"{stall[False] / stall[True]:.1f}x{over}"))
    head = ("tasks", "members", "bytes before", "bytes now", "stall before ms",
            "stall now ms", "before/now")
    table = [tuple(str(c) for c in r) for r in [head, *rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
