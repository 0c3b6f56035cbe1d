#!/usr/bin/env python3
"""The cost of CURVE: round-trip latency and new-connection time, with and without, in one run.

::

    .venv/bin/python tools/bench_curve.py --rounds 2000 --connects 200

Round trip: a DEALER sends a clerk STATUS-sized frame set to a ROUTER, which answers on the
same connection (DEALER -> ROUTER -> DEALER), with the transport's socket options (LINGER 0,
IMMEDIATE, MAXMSGSIZE) and, for CURVE, the transport's keys and a ZAP handler on the server's
thread admitting the cluster key. New connection: a fresh DEALER connects and sends one message;
timed until the ROUTER has received it (TCP connect + ZMTP handshake, + CURVE + ZAP). The two
modes alternate round by round so that machine noise hits both alike. Prints median, p99 and
the CURVE/plain ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402
from zmq.utils import z85  # noqa: E402

from clerk._codec import MAX_MESSAGE_BYTES, encode  # noqa: E402
from clerk._messages import Peer, Status  # noqa: E402
from clerk._security import CurveKeys, keys_from_cookie  # noqa: E402
from clerk.testing import free_ports  # noqa: E402


class Server:
    """A ROUTER echo server (and ZAP handler when secure) on its own thread."""

    def __init__(self, ctx: zmq.Context, port: int, keys: CurveKeys | None) -> None:
        self.keys = keys
        self.router = ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.maxmsgsize = MAX_MESSAGE_BYTES
        self.zap: zmq.Socket | None = None
        if keys is not None:
            self.zap = ctx.socket(zmq.REP)
            self.zap.linger = 0
            self.zap.bind("inproc://zeromq.zap.01")
            self.router.curve_server = True
            self.router.curve_secretkey = keys.secret
            self.router.curve_publickey = keys.public
            self.router.zap_domain = b"clerk"
        self.router.bind(f"tcp://127.0.0.1:{port}")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        if self.zap is not None:
            poller.register(self.zap, zmq.POLLIN)
        pub = z85.decode(self.keys.public) if self.keys else b""
        while not self.stop.is_set():
            for sock, _ in poller.poll(50):
                if sock is self.zap:
                    f = self.zap.recv_multipart()
                    ok = len(f) >= 7 and f[5] == b"CURVE" and f[6] == pub
                    self.zap.send_multipart([f[0], f[1], b"200" if ok else b"400", b"", b"",
                                             b""])
                else:
                    frames = self.router.recv_multipart()
                    self.router.send_multipart(frames)  # echo back to the sender

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.router.close(0)
        if self.zap is not None:
            self.zap.close(0)


def client(ctx: zmq.Context, port: int, keys: CurveKeys | None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.immediate = True
    sock.maxmsgsize = MAX_MESSAGE_BYTES
    if keys is not None:
        sock.curve_serverkey = keys.public
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--connects", type=int, default=200)
    args = ap.parse_args(argv)
    keys = keys_from_cookie(b"bench-cookie")
    frames = encode(Status(Peer("bench@x", "127.0.0.1:1", "i", 0), 0))
    modes = {"plain": None, "curve": keys}
    ports = dict(zip(modes, free_ports(2), strict=True))
    ctxs = {m: zmq.Context() for m in modes}  # one ZAP endpoint per context
    servers = {m: Server(ctxs[m], ports[m], k) for m, k in modes.items()}
    rtt: dict[str, list[float]] = {m: [] for m in modes}
    conn: dict[str, list[float]] = {m: [] for m in modes}
    try:
        socks = {m: client(ctxs[m], ports[m], k) for m, k in modes.items()}
        for m in modes:  # warm up, and wait until connected
            socks[m].send_multipart(frames)
            socks[m].recv_multipart()
        for _ in range(args.rounds):
            for m in modes:
                t0 = time.perf_counter()
                socks[m].send_multipart(frames)
                socks[m].recv_multipart()
                rtt[m].append(time.perf_counter() - t0)
        for s in socks.values():
            s.close(0)
        for _ in range(args.connects):
            for m, k in modes.items():
                t0 = time.perf_counter()
                s = client(ctxs[m], ports[m], k)
                s.send_multipart(frames)  # IMMEDIATE: blocks until the handshake is done
                s.recv_multipart()  # the echo proves the server got it
                conn[m].append(time.perf_counter() - t0)
                s.close(0)
    finally:
        for srv in servers.values():
            srv.close()
        for c in ctxs.values():
            c.term()
    print("| measure | plain median | plain p99 | CURVE median | CURVE p99 | ratio (median) |")
    print("|---|---|---|---|---|---|")
    for label, data in (("round trip", rtt), ("new connection + first reply", conn)):
        p, c = data["plain"], data["curve"]
        print(f"| {label} | {statistics.median(p) * 1e6:.0f} us | {pct(p, 0.99) * 1e6:.0f} us "
              f"| {statistics.median(c) * 1e6:.0f} us | {pct(c, 0.99) * 1e6:.0f} us "
              f"| {statistics.median(c) / statistics.median(p):.2f}x |")
    print(f"({args.rounds} round trips, {args.connects} connections per mode, interleaved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
