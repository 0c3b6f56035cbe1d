#!/usr/bin/env python3
"""What the codec costs per message, side by side with plain ``json.dumps`` / ``json.loads``.

    .venv/bin/python tools/bench_codec.py

``encode`` checks what the receiver checks (what encodes must decode) in the same pass that
turns the dataclass into JSON types; ``decode`` is strict. The floor is ``json.dumps`` of the
same body (as a dict already built) and ``json.loads`` of it. Medians of interleaved repeats.

Then the same for the frames around a message: one 3-frame message sent and received over
``inproc``, with pyzmq's ``send_multipart``/``recv_multipart`` and with ``clerk._frames``
(what the node's loop, executor and workers use), CPU time per message.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq  # noqa: E402

from clerk._codec import decode, encode  # noqa: E402
from clerk._frames import NOBLOCK, recv_frames, send_frames  # noqa: E402
from clerk._messages import Execute, Heartbeat, MemberInfo, Message, Peer, Result  # noqa: E402
from clerk._replica import ReplicaLog  # noqa: E402

P = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d", 0)


def messages() -> dict[str, Message]:
    members = tuple(MemberInfo(f"n{i}@127.0.0.1", f"127.0.0.1:{47000 + i}", "5f0c1a2b3c4d", 0,
                               True, tuple(f"task{j}" for j in range(200))) for i in range(3))
    log = ReplicaLog("5f0c1a2b3c4d.3.1")
    log.put_table({"tasks": {f"task{j}": {"slot": j, "state": {"n": j}} for j in range(200)}})
    table = log.delta(-1)
    return {
        "EXECUTE (no-op)": Execute(P, 3, "noop1", "r-abcdef0123", 17345678, None, 5000),
        "RESULT (no-op)": Result(P, 3, "noop1", "r-abcdef0123", 17345678, "ok", None, 0.02),
        "HEARTBEAT (3 members x 200 tasks, table delta)": Heartbeat(P, 3, 10, 2, members, table),
    }


def per_call(fn: Callable[[], object], n: int) -> float:
    return timeit.timeit(fn, number=n) / n * 1e6


def main() -> int:
    rows = []
    for label, msg in messages().items():
        frames = encode(msg)
        body = json.loads(frames[2])
        n = 100 if "HEARTBEAT" in label else 2000
        runs: dict[str, list[float]] = {"encode": [], "dumps": [], "decode": [], "loads": []}
        for _ in range(9):
            runs["encode"].append(per_call(lambda m=msg: encode(m), n))
            runs["dumps"].append(per_call(lambda b=body: json.dumps(
                b, separators=(",", ":"), ensure_ascii=False).encode(), n))
            runs["decode"].append(per_call(lambda f=frames: decode(f), n))
            runs["loads"].append(per_call(lambda f=frames: json.loads(f[2]), n))
        med = {k: statistics.median(v) for k, v in runs.items()}
        rows.append((label, f"{len(frames[2])} B", f"{med['encode']:.1f}", f"{med['dumps']:.1f}",
                     f"{med['encode'] / med['dumps']:.1f}x", f"{med['decode']:.1f}",
                     f"{med['loads']:.1f}", f"{med['decode'] / med['loads']:.1f}x"))
    head = ("message", "body", "encode µs", "json.dumps µs", "ratio", "decode µs",
            "json.loads µs", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    pyzmq, ours = frames_cost()
    print(f"\none 3-frame message sent and received (inproc, CPU per message): pyzmq "
          f"send_multipart/recv_multipart {pyzmq:.1f} µs, clerk._frames {ours:.1f} µs "
          f"({ours / pyzmq:.2f}x)")
    return 0


def frames_cost(n: int = 5000) -> tuple[float, float]:
    """Medians of interleaved repeats (``time.thread_time``, µs per message)."""
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.bind("inproc://bench-frames")
    dealer.connect("inproc://bench-frames")
    frames = encode(messages()["EXECUTE (no-op)"])

    def wrapped() -> None:
        dealer.send_multipart(frames, zmq.NOBLOCK)
        router.recv_multipart(zmq.NOBLOCK)

    def direct() -> None:
        send_frames(dealer, frames, NOBLOCK)
        recv_frames(router, NOBLOCK)

    def cpu(fn: Callable[[], None]) -> float:
        began = time.thread_time()
        for _ in range(n):
            fn()
        return (time.thread_time() - began) / n * 1e6

    runs: dict[str, list[float]] = {"pyzmq": [], "ours": []}
    try:
        for _ in range(9):
            runs["pyzmq"].append(cpu(wrapped))
            runs["ours"].append(cpu(direct))
    finally:
        router.close(linger=0)
        dealer.close(linger=0)
        ctx.term()
    return statistics.median(runs["pyzmq"]), statistics.median(runs["ours"])


if __name__ == "__main__":
    sys.exit(main())
