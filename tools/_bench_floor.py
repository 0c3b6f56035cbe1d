"""The floor of tools/bench_tasks.py: what the same hops cost built with plain pyzmq.

Two floors, each a set of long-lived processes so a benchmark can interleave their repeats
with Clerk's:

``Echo``
    one DEALER -> ROUTER (another process) -> DEALER round trip over loopback TCP, plain or
    with CURVE: the cost of one hop and nothing else.
``Chain``
    Clerk's topology without Clerk: this process (the "manager") -> a node process over TCP with
    CURVE -> one of its worker processes over IPC -> back, with ``json`` decoding and
    re-encoding the message at every hop (what any implementation must do at least). The node
    keeps idle workers in a list and queued runs in a deque, as Clerk's executor does.
    Back to back (``trips(n)``) or paced (``trips(n, gap)``): on a VM whose idle vCPUs halt
    (this machine: ``cpuidle`` haltpoll with ``guest_halt_poll_ns=0``) every wake-up of an
    idle thread costs far more than in a hot loop, and Clerk's runs come ~10 ms apart, each
    after the chain's processes went idle: the paced chain is the floor for that.

CPU per run is read per process role (``psutil`` user + system time of each process, and
``time.process_time`` for this one) over a window, divided by the runs in it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import psutil
import zmq

ECHO = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
s.linger = 0
if sys.argv[1] == "curve":
    s.curve_server = True
    s.curve_secretkey = sys.argv[2].encode()
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    frames = s.recv_multipart()
    if frames[1] == b"quit":
        break
    s.send_multipart(frames)
s.close(); ctx.term()
"""

CHAIN_NODE = r"""
import json, sys, zmq
from collections import deque
ctx = zmq.Context()
front = ctx.socket(zmq.ROUTER)
front.linger = 0
front.curve_server = True
front.curve_secretkey = sys.argv[1].encode()
port = front.bind_to_random_port("tcp://127.0.0.1")
back = ctx.socket(zmq.ROUTER)
back.linger = 0
back.bind(sys.argv[2])
print(port, flush=True)
poller = zmq.Poller()
poller.register(front, zmq.POLLIN)
poller.register(back, zmq.POLLIN)
idle, queue, reply_to = [], deque(), {}
running = True
while running:
    for sock, _ in poller.poll():
        if sock is front:
            rid, body = front.recv_multipart()
            if body == b"quit":
                running = False
                break
            msg = json.loads(body)
            reply_to[msg["run"]] = rid
            queue.append(json.dumps({"run": msg["run"], "task": msg["task"],
                                     "slot": msg["slot"], "term": msg["term"],
                                     "state": msg["state"]}).encode())
        else:
            wid, kind, body = back.recv_multipart()
            if kind == b"done":
                d = json.loads(body)
                front.send_multipart([reply_to.pop(d["run"]), json.dumps(
                    {"kind": "result", "run": d["run"], "outcome": d["outcome"],
                     "state": d["state"], "duration_ms": d["duration_ms"]}).encode()])
            idle.append(wid)
        while idle and queue:
            back.send_multipart([idle.pop(), b"run", queue.popleft()])
for wid in idle:
    back.send_multipart([wid, b"quit", b""])
front.close(); back.close(); ctx.term()
"""

CHAIN_WORKER = r"""
import json, sys, time, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
s.connect(sys.argv[1])
s.send_multipart([b"ready", b"{}"])
while True:
    kind, body = s.recv_multipart()
    if kind == b"quit":
        break
    job = json.loads(body)
    t0 = time.perf_counter()
    state = job["state"]  # the no-op task
    s.send_multipart([b"done", json.dumps({"run": job["run"], "outcome": "ok", "state": state,
        "duration_ms": (time.perf_counter() - t0) * 1000}).encode()])
s.close(); ctx.term()
"""

#: About an EXECUTE's size on the wire (sender, term, task, run id, slot, state, timeout).
EXECUTE_LIKE = {"kind": "execute", "sender": {"name": "n1@127.0.0.1",
                                              "address": "tcp://127.0.0.1:47001",
                                              "incarnation": "5f0c1a2b3c4d", "priority": 0},
                "term": 3, "task": "noop1", "slot": 17345678, "state": None,
                "timeout_ms": 5000, "init": False}


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 once it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def _read_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    return int(proc.stdout.readline())


class Echo:
    """A ROUTER echo server in another process and a DEALER here (plain or CURVE)."""

    def __init__(self, curve: bool) -> None:
        server_public, server_secret = zmq.curve_keypair()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ECHO, "curve" if curve else "plain", server_secret.decode()],
            stdout=subprocess.PIPE, text=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        port = _read_port(self.proc)
        if curve:
            public, secret = zmq.curve_keypair()
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = (
                server_public, public, secret)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.trips(200)  # warm-up: the handshake and the first allocations

    def trips(self, n: int) -> list[float]:
        """``n`` sequential round trips of a 200-byte payload, ms each."""
        payload = b"x" * 200
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.sock.send(payload)
            self.sock.recv()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def close(self) -> None:
        try:
            self.sock.send(b"quit")
            self.proc.wait(timeout=5)
        except (zmq.ZMQError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self.ctx.term()


class Chain:
    """Manager (here) -> node over TCP + CURVE -> worker over IPC -> back, JSON at each hop.

    ``nodes`` node processes (each with ``workers`` workers): the manager's DEALER deals the
    runs to them in turn, as Clerk's manager spreads runs over its cluster's nodes."""

    def __init__(self, workers: int = 2, nodes: int = 1) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-chain-")
        server_public, server_secret = zmq.curve_keypair()
        self.nodes: list[subprocess.Popen[str]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        ports = []
        for i in range(nodes):
            ipc = f"ipc://{self._dir}/workers{i}"
            node = subprocess.Popen([sys.executable, "-c", CHAIN_NODE,
                                     server_secret.decode(), ipc],
                                    stdout=subprocess.PIPE, text=True)
            self.nodes.append(node)
            ports.append(_read_port(node))
            self.workers += [subprocess.Popen([sys.executable, "-c", CHAIN_WORKER, ipc])
                             for _ in range(workers)]
        self.node = self.nodes[0]
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        public, secret = zmq.curve_keypair()
        self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = (
            server_public, public, secret)
        for port in ports:
            self.sock.connect(f"tcp://127.0.0.1:{port}")
        self._seq = 0
        self.trips(200 * nodes)  # warm-up (and every worker has said ready)

    def _send(self) -> None:
        self._seq += 1
        self.sock.send(json.dumps({**EXECUTE_LIKE, "run": f"r{self._seq}"}).encode())

    def _recv(self) -> None:
        json.loads(self.sock.recv())

    def trips(self, n: int, gap: float = 0.0) -> list[float]:
        """``n`` sequential no-op runs, ms from sending the request to decoding the result;
        ``gap``: seconds of idleness before each (0: back to back)."""
        out = []
        for _ in range(n):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            self._send()
            self._recv()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def pipelined(self, n: int, inflight: int) -> float:
        """``n`` runs with ``inflight`` outstanding at any time: runs per second."""
        t0 = time.perf_counter()
        for _ in range(min(n, inflight)):
            self._send()
        sent = min(n, inflight)
        for _ in range(n):
            self._recv()
            if sent < n:
                self._send()
                sent += 1
        return n / (time.perf_counter() - t0)

    def paced(self, rate: float, seconds: float) -> tuple[int, list[float]]:
        """Runs sent ``rate`` a second, evenly spaced, for ``seconds``, without waiting for
        their results (as a scheduler dispatches): the results are taken as they come, and
        the last ones waited for (at most 5 s). Returns the runs completed and their round
        trips (ms), for CPU per run at a given rate (``measure_cpu``) beside Clerk's."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        period = 1.0 / rate
        start = time.perf_counter()
        end = start + seconds
        next_send = start
        sent_at: dict[str, float] = {}
        trips: list[float] = []
        while True:
            now = time.perf_counter()
            while next_send <= now and next_send < end:
                self._seq += 1
                run = f"r{self._seq}"
                sent_at[run] = now
                self.sock.send(json.dumps({**EXECUTE_LIKE, "run": run}).encode())
                next_send += period
            if next_send >= end and (not sent_at or now > end + 5.0):
                break
            # whole milliseconds, at least 1 (as a scheduler's tick): a shorter poll spins
            wait_ms = max(1, math.ceil((next_send - now) * 1000)) if next_send < end else 100
            if poller.poll(wait_ms):
                while True:
                    try:
                        body = self.sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t = sent_at.pop(json.loads(body)["run"], None)
                    if t is not None:
                        trips.append((time.perf_counter() - t) * 1000)
        return len(trips), trips

    def roles(self) -> dict[str, Callable[[], float]]:
        """CPU seconds so far, per process role."""
        return {"manager": time.process_time,
                "node": lambda: sum(cpu_of(n.pid) for n in self.nodes),
                "workers": lambda: sum(cpu_of(w.pid) for w in self.workers)}

    def close(self) -> None:
        for _ in self.nodes:
            try:
                self.sock.send(b"quit")  # dealt in turn: one to each node
            except zmq.ZMQError:
                break
        for node in self.nodes:
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        for w in self.workers:
            try:
                w.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        self.sock.close()
        self.ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)


def measure_cpu(roles: dict[str, Callable[[], float]], body: Callable[[], int]
                ) -> tuple[int, dict[str, float]]:
    """Run ``body`` (it returns how many runs it did); CPU µs per run per role over it."""
    before = {k: f() for k, f in roles.items()}
    runs = body()
    after = {k: f() for k, f in roles.items()}
    return runs, {k: (after[k] - before[k]) * 1e6 / max(1, runs) for k in roles}


def fmt_cpu(cpu: dict[str, float]) -> str:
    """``manager 120 + node 200 + workers 90 = 410 µs``."""
    parts = " + ".join(f"{k} {v:.0f}" for k, v in cpu.items())
    return f"{parts} = {sum(cpu.values()):.0f} µs"
