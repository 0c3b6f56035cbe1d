#!/usr/bin/env python3
"""Quorum mode under random faults in the simulator: the real cores, schedulers and voter
registers (clerk._simquorum), many seeds, one table.

Each seed: ``--nodes`` nodes (the first three are the voters), each with a random wall-clock
offset (up to 5 s), the ledger task every 100 ms, then ``--faults`` random faults (partitions
of any shape, pauses, one-way cuts, crashes, restarts, message loss; delays with jitter that
reorders messages), then the faults stop (heal, resume, restart) and the run goes on until one
manager is agreed. The invariants are checked after every event (see clerk/_simquorum.py):
``twice`` (slots executed twice), ``unreserved`` (EXECUTEs sent without a majority's
reservation), ``regress`` (the majority's committed version went back) and ``lost`` (a voter's
disk holds a ledger counter below its version: updates lost under a higher version) must all
be 0.

Usage::

    python tools/simulate_quorum.py --seeds 1-20 --nodes 5 --faults 12
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clerk._simquorum import (  # noqa: E402
    QuorumChecks,
    apply_fault,
    build,
    end_faults,
    random_faults,
)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def run(seed: int, n: int, faults: int, replicate_dispatches: bool = False
        ) -> dict[str, object]:
    rng = random.Random(seed)
    offsets = [rng.choice((0.0, 0.003, -0.04, 0.25, -1.3, 5.0)) for _ in range(n)]
    net, world = build(n, seed, offsets, 0.0005, rng.choice((0.0005, 0.01)))
    world.replicate_dispatches = replicate_dispatches
    checks = QuorumChecks(net, world)
    net.run_until_true(lambda: len(world.runs) >= 3, limit=15.0)
    names = [f"n{i}" for i in range(n)]
    t0 = net.now
    for gap, op, arg in random_faults(rng, n, faults):
        net.run_for(gap)
        apply_fault(net, names, op, arg)
    net.run_for(1.0)
    end_faults(net, names)
    stop = net.now
    agreed = net.run_until_true(lambda: net.agreed() is not None and len(net.live()) == n,
                                limit=15.0, step=0.01)
    net.run_for(2.0)
    text = " ".join(checks.violations)
    return {"seed": seed, "faults": faults, "sim_s": round(net.now - t0, 1),
            "runs": len(world.runs), "dispatched": len(world.dispatched),
            "committed": len(world.committed),
            "twice": text.count("run twice"), "unreserved": text.count("without a majority"),
            "regress": text.count("went back"), "lost": text.count("updates lost"),
            "agree_ms": None if agreed is None else round((agreed - stop) * 1000, 1),
            "manager": ",".join(m.name for m in net.managers())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1-10", help="N-M or a comma list (1-10)")
    ap.add_argument("--nodes", type=int, default=5, help="nodes, at least 3 (5)")
    ap.add_argument("--faults", type=int, default=12, help="random faults per seed (12)")
    ap.add_argument("--replicate-dispatches", action="store_true",
                    help="replicate the table at each dispatch, as the real runner does "
                         "(SimLedger.replicate_dispatches)")
    args = ap.parse_args()
    if args.nodes < 3:
        ap.error("--nodes must be at least 3 (the first three are the voters)")
    cols = ("seed", "faults", "sim_s", "runs", "dispatched", "committed", "twice",
            "unreserved", "regress", "lost", "agree_ms", "manager")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] * len(cols)) + "|")
    total = {"runs": 0, "twice": 0, "unreserved": 0, "regress": 0, "lost": 0}
    bad = 0
    wall = time.perf_counter()
    for seed in parse_seeds(args.seeds):
        row = run(seed, args.nodes, args.faults, args.replicate_dispatches)
        for k in total:
            total[k] += int(row[k])  # type: ignore[call-overload]
        bad += row["agree_ms"] is None
        print("| " + " | ".join(str(row[c]) for c in cols) + " |", flush=True)
    print(f"\n{len(parse_seeds(args.seeds))} seeds, {args.nodes} nodes (3 voters), "
          f"{args.faults} faults each: {total['runs']} runs, {total['twice']} slots twice, "
          f"{total['unreserved']} unreserved dispatches, {total['regress']} committed "
          f"regressions, {total['lost']} lost updates, {bad} without agreement; "
          f"wall {time.perf_counter() - wall:.1f} s")
    failed = total["twice"] or total["unreserved"] or total["regress"] or total["lost"] or bad
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
