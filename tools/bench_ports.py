#!/usr/bin/env python3
"""How often does a test cluster get a port that is taken before its node binds it?

N worker processes each start M "clusters" at once, the way test processes on one machine
(pytest-xdist, or several helpers' suites) start LocalClusters: pick K ports, wait as long as
a node takes to start (``--startup`` ms) while making outgoing connections, as nodes and
their status requests do (``--conns`` per cluster, each taking an ephemeral source port),
then bind and listen on every picked port as the node would (``SO_REUSEADDR``, as ZeroMQ
does), hold them a moment, and let go. A port that cannot be bound then is a *clash*: a test
that would fail for no reason of its own.

Two pickers, interleaved round by round in one run:

* ``main``: main's ``free_ports`` (bind port 0 on 127.0.0.1, read the port, close: the
  port comes from the kernel's ephemeral range and is free only at that instant);
* ``reserved``: :class:`clerk._ports.PortReservation` (outside the ephemeral range, one
  flock per port across processes, checked bindable while locked, held until the cluster
  closes).

Run: ``.venv/bin/python tools/bench_ports.py`` (``--procs 16 --clusters 25 --ports 4``:
1,600 ports per picker per round; ``--rounds 3``; ~2 minutes).

What to expect on Linux >= 4.6: ``connect()`` takes even source ports first and ``bind(0)``
odd ones, so on a machine whose even ephemeral ports are not used up, main's picker mostly
loses its ports to *another picker* taking the same odd port before the first node bound it
(measured 2 of 4,800 ports here, 16 processes, 500 ms start-up); once connections (or their
TIME_WAITs) fill the even half, connect() moves into the odd one and main's ports are taken
as source ports too. Reserved ports are outside the range and locked: 0 in every run.

``--netns`` runs the whole bench in a private network namespace (``unshare -n``, root;
gone when the bench ends), where ``--range LO-HI`` narrows the ephemeral range and
``--busy N`` holds N connections open for the whole run: a busy machine's state, made
without taking one port from the rest of the machine. Measured: ``--netns --range
40000-40999 --busy 450 --procs 8 --startup 300`` (the even half of a 1,000-port range nearly
used up): main 312 clashes of 2,400 ports (77, 120, 115 a round), reserved 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clerk._ports import PortReservation, ephemeral_range  # noqa: E402

PICKERS = ("main", "reserved")


def main_free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """main's ``clerk.testing.free_ports``, verbatim."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listen_on(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(8)
    except OSError:
        s.close()
        return None
    return s


def worker(args: argparse.Namespace) -> None:
    """One test process: M clusters one after another; prints {"ports": n, "clashes": [...]}."""
    start_at = args.start_at
    time.sleep(max(0.0, start_at - time.time()))  # every worker begins at the same instant
    res = PortReservation() if args.picker == "reserved" else None
    picked = 0
    clashes: list[int] = []
    for _ in range(args.clusters):
        ports = res.take(args.ports) if res is not None else main_free_ports(args.ports)
        picked += len(ports)
        conns = []
        step = args.startup / 1000 / max(1, args.conns)
        for _ in range(args.conns):  # the nodes starting: connections out, one at a time
            c = socket.create_connection(("127.0.0.1", args.sink), timeout=5)
            # closed with a reset: no TIME_WAIT left holding an ephemeral port for a minute
            # (20,000 of them would starve the other processes on the machine)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conns.append(c)
            time.sleep(step)
        listeners = []
        for port in ports:
            s = listen_on(port)
            if s is None:
                clashes.append(port)
            else:
                listeners.append(s)
        time.sleep(args.life / 1000)  # the test runs
        for s in listeners + conns:
            s.close()
        if res is not None:
            res.close()
    print(json.dumps({"ports": picked, "clashes": clashes}), flush=True)


def sink() -> tuple[socket.socket, threading.Event]:
    """A listener that accepts and closes whatever connects (the nodes' peers)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if len(held) > 4096:
                held.pop(0).close()
        for c in held:
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, stop


def one_round(picker: str, args: argparse.Namespace, sink_port: int) -> tuple[int, int, float]:
    start_at = time.time() + 1.0  # time for every interpreter to start
    argv = [sys.executable, os.path.abspath(__file__), "--worker", "--picker", picker,
            "--clusters", str(args.clusters), "--ports", str(args.ports),
            "--conns", str(args.conns), "--startup", str(args.startup),
            "--life", str(args.life), "--sink", str(sink_port), "--start-at", str(start_at)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
             for _ in range(args.procs)]
    ports = clashes = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"a {picker} worker failed with exit code {p.returncode}")
        got = json.loads(out)
        ports += got["ports"]
        clashes += len(got["clashes"])
    return ports, clashes, time.time() - start_at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=16, help="test processes at once (16)")
    ap.add_argument("--clusters", type=int, default=25, help="clusters per process (25)")
    ap.add_argument("--ports", type=int, default=4, help="ports per cluster (4)")
    ap.add_argument("--conns", type=int, default=20,
                    help="outgoing connections per cluster while it starts (20)")
    ap.add_argument("--startup", type=float, default=500,
                    help="ms from pick to bind, a node's start-up (500)")
    ap.add_argument("--life", type=float, default=20, help="ms the ports stay bound (20)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per picker (3)")
    ap.add_argument("--netns", action="store_true",
                    help="run in a private network namespace (unshare -n; needs root)")
    ap.add_argument("--range", metavar="LO-HI",
                    help="with --netns: the namespace's ephemeral port range")
    ap.add_argument("--busy", type=int, default=0,
                    help="with --netns: connections held open for the whole run (0)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--picker", choices=PICKERS, help=argparse.SUPPRESS)
    ap.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if (args.range or args.busy) and not args.netns:
        ap.error("--range and --busy change the network's state: only with --netns")
    if args.netns and not args.inside:
        argv = [a for a in sys.argv[1:]] + ["--inside"]
        raise SystemExit(subprocess.call(
            ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__), *argv]))
    busy: list[socket.socket] = []
    if args.inside:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        if args.range:
            lo_s, _, hi_s = args.range.partition("-")
            with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
                f.write(f"{int(lo_s)} {int(hi_s)}\n")

    lo, hi = ephemeral_range()
    print(f"{args.procs} processes x {args.clusters} clusters x {args.ports} ports at once, "
          f"{args.conns} outgoing connections per cluster over {args.startup:g} ms; "
          f"ephemeral range {lo}-{hi}")
    srv, stop = sink()
    for _ in range(args.busy):
        busy.append(socket.create_connection(("127.0.0.1", srv.getsockname()[1]), timeout=5))
    if busy:
        print(f"{len(busy)} connections held open for the whole run")
    results: dict[str, list[tuple[int, int, float]]] = {p: [] for p in PICKERS}
    try:
        print(f"{'round':>5}  {'picker':<9} {'ports':>6} {'clashes':>8} {'time s':>7}")
        for r in range(args.rounds):
            order = PICKERS if r % 2 == 0 else PICKERS[::-1]
            for picker in order:
                ports, clashes, took = one_round(picker, args, srv.getsockname()[1])
                results[picker].append((ports, clashes, took))
                print(f"{r + 1:>5}  {picker:<9} {ports:>6} {clashes:>8} {took:>7.1f}")
    finally:
        for c in busy:
            c.close()
        stop.set()
        srv.close()
    print()
    print(f"{'picker':<9} {'ports':>7} {'clashes':>8} {'median/round':>13} {'per 1000':>9}")
    per = {}
    for picker in PICKERS:
        rows = results[picker]
        total = sum(p for p, _, _ in rows)
        bad = sum(c for _, c, _ in rows)
        per[picker] = 1000 * bad / total if total else 0.0
        print(f"{picker:<9} {total:>7} {bad:>8} {statistics.median(c for _, c, _ in rows):>13g} "
              f"{per[picker]:>9.2f}")
    if per["reserved"]:
        print(f"ratio main/reserved: {per['main'] / per['reserved']:.1f}x")
    else:
        print("reserved: no clash")


if __name__ == "__main__":
    main()
