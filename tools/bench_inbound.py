#!/usr/bin/env python3
"""A follower's inbound path in process, this tree against another, in interleaved turns.

    .venv/bin/python tools/bench_inbound.py --against ../main [--repeats 7] [--batches 4000]

What a follower does with the batches its manager sends it at a steady rate (3 EXECUTEs and
3 RESULT_ACKs each, as ``tools/bench_tasks.py`` (c) sees them): ``decode_frames``, then each
message fed to its ``NodeCore`` (``handle(Received(msg))``: the term bound, the claim check, the
Deliver effect), the core of a 2-node cluster built as the unit tests build it
(``tests/unit/corenet.py``). No sockets, no executor: the CPU of that part of the path alone
(``time.thread_time``), which a loaded machine's scheduling does not move the way it moves a
cluster's CPU per run. Each repeat runs each tree in its own process (the order alternating);
the table gives the medians in µs per batch and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, struct, sys, time
sys.path.insert(0, sys.argv[1])
from clerk._batch import BATCH_KIND, decode_frames
from clerk._codec import MAGIC, encode
from clerk._core import Received
from clerk._messages import Execute, ResultAck
from tests.unit.corenet import cluster

net, (a, c) = cluster(("a", 9), ("c", 1))
assert c.manager == a.me.name
n = int(sys.argv[2])
batches = []
for b in range(256):
    frames = []
    for i in range(3):
        run = f"a1b2-17/{b}/{i}/n1@127.0.0.1~1234.0badf00d"
        frames.append(encode(Execute(a.me, a.term, f"t{i:04d}", run, 17345678 + b, None, 5000,
                                     due_ms=1764770000000, deadline_ms=1764770000100)))
        frames.append(encode(ResultAck(a.me, a.term, f"t{i:04d}", run)))
    body = b"".join(struct.pack(">BI", len(f[1]), len(f[2])) + f[1] + f[2] for f in frames)
    batches.append([MAGIC, BATCH_KIND, body])
now = net.now
delivered = 0
t0 = time.thread_time()
for k in range(n):
    for msg in decode_frames(batches[k & 255]):
        delivered += len(c.handle(Received(msg), now))
spent = time.thread_time() - t0
assert delivered == 6 * n, delivered
print(json.dumps(spent / n * 1e6))
"""


def _one(tree: Path, batches: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(batches)], check=True,
                         capture_output=True, text=True, cwd=tree)
    return float(json.loads(out.stdout))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="another checkout (e.g. ../main)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", type=int, default=4000, help="batches per measurement")
    args = ap.parse_args()
    here, there = Path(__file__).resolve().parent.parent, Path(args.against).resolve()
    got: dict[str, list[float]] = {"this tree": [], "against": []}
    for rep in range(args.repeats):
        pair = (("this tree", here), ("against", there))
        for label, tree in pair if rep % 2 == 0 else pair[::-1]:
            got[label].append(_one(tree, args.batches))
    a, b = statistics.median(got["this tree"]), statistics.median(got["against"])
    print(f"follower inbound, a batch of 3 EXECUTE + 3 RESULT_ACK (decode, core): "
          f"medians of {args.repeats} interleaved repeats, µs of CPU per batch")
    print(f"{'against':<10} | {b:8.2f}")
    print(f"{'this tree':<10} | {a:8.2f} | {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
