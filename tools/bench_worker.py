#!/usr/bin/env python3
"""A task worker's own CPU per no-op run, this tree against another, beside the floor's worker.

    .venv/bin/python tools/bench_worker.py --against /work/main [--repeats 7] [--runs 3000]
        [--gap 0.003] [--lead 0] [--instructions] [--syscalls]

One real worker process (``clerk._worker:main``, started by the tree's own ``supervisor`` with
the executor's ``ChildSpec``: same boot, same arguments, log level ``info``) is fed no-op runs
(``tools/_bench_tasks.py``'s ``Noop``, as ``tools/bench_tasks.py`` (c) runs) over its real link
(a Unix stream socket; the bench plays the agent, writing each RUN as the executor does: the
array of ``RUN_FIELDS``) one at a time, ``--gap`` seconds apart (default 3 ms: a worker's share
of (c)'s 2,000 runs/s on 3 nodes x 2 workers; 0: back to back). Each run is due when it is
sent (``--lead MS``: that far ahead, so the worker holds it, sleeps and spins until then). The
worker's CPU per run is the on-CPU time of all its threads over ``--runs`` runs (after 200 to
warm up; ``/proc/<pid>/task/*/schedstat``, exact where ``psutil``'s ``cpu_times`` moves in
10 ms ticks; ``psutil`` gives the kernel's share and the context switches per run); every
reply must be ``ok``.
The floor's worker (``tools/_bench_floor.py``'s ``CHAIN_WORKER``: a pyzmq DEALER over IPC that
decodes the JSON request and replies) is fed the same way, in the same turns. Medians of
``--repeats`` interleaved repeats (each tree, and the floor, in its own process, the order
alternating) and their ratio.

``--ahead N``: pipelining (tried in 8aae3ad, not adopted: README), this tree's worker against
itself: runs due on a fixed grid ``--gap`` apart, each written into the link ``--lead`` ms
before it is due at the earliest, and either only once the worker answered the run before
(``ahead 0``, as an executor without pipelining) or while it still holds up to ``N`` runs
before it (``ahead N``: after its DONE it reads the next run from its socket's buffer). Also
the reply's time after the run's due time (median and p99 of each repeat; medians of those).
The floor is left out.

``--instructions``: each worker's instructions per run as valgrind's callgrind counts them (the
worker started under valgrind with the same ``main`` call, its link driven back to back: the
difference of a run of 2,500 and one of 500 runs, start-up cancelled out; repeatable on a
shared machine where CPU medians swing by 5-10 %). ``--syscalls``: each worker's system calls
per run, by name (``strace -c -f`` attached over 1,000 runs, paced as the CPU measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
HERE = TOOLS.parent
_HEADER = struct.Struct("!IB")  # the link's header (clerk._workerlink): body length, kind
READY, RUN, DONE = 1, 2, 3
NODE = "n2@127.0.0.1"
TARGET = "_bench_tasks:Noop"
#: What starts a worker under valgrind: the executor's ChildSpec's call, without the boot.
VALGRIND_CLERK = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
                  "from clerk._worker import main; main(sys.argv[3], 0, sys.argv[4], 'info', None)")


def _run_body(seq: int, lead_ms: float, interval_ms: int) -> bytes:
    """A RUN's body as the executor writes it (ints for the times; state None, init on the
    first run, as a Noop's first run gets)."""
    due = int(time.time() * 1000 + lead_ms)
    return json.dumps([f"5f0c1a2b3c4d-{seq}", 17345678 + seq, 3, None, seq == 0, due,
                       due + 5000, "noop1", TARGET, NODE, "UTC", interval_ms],
                      separators=(", ", ": ")).encode()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = sock.recv(n - got)
        if not data:
            raise EOFError("the worker closed its link")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _recv(sock: socket.socket) -> tuple[int, bytes]:
    size, kind = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return kind, _recv_exact(sock, size)


class ClerkWorker:
    """A Clerk worker of ``tree`` on a link this process drives."""

    def __init__(self, tree: Path, valgrind: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-worker-")
        endpoint = f"{self._dir}/workers"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(endpoint)
        self.listener.listen(4)
        self.sup: Any = None
        self.proc: subprocess.Popen[str] | None = None
        if valgrind:
            self.proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, "-c", VALGRIND_CLERK, str(tree), str(TOOLS), endpoint, NODE],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        else:
            from supervisor import ChildSpec, Supervisor  # the tree's own

            self.sup = Supervisor(
                [ChildSpec(id="worker-0", start="clerk._worker:main",
                           args=(endpoint, 0, NODE, "info", None), restart="temporary",
                           shutdown="brutal_kill")],
                strategy="one_for_one", name="bench workers")
            self.sup.start()
        self.listener.settimeout(120)
        self.conn, _ = self.listener.accept()
        kind, body = _recv(self.conn)
        assert kind == READY, kind
        self.pid = int(json.loads(body)["pid"])
        self.seq = 0

    def run(self, lead_ms: float, interval_ms: int) -> bool:
        """One run, start to reply; True if it was ok."""
        self.conn.sendall(_pack(RUN, _run_body(self.seq, lead_ms, interval_ms)))
        self.seq += 1
        kind, body = _recv(self.conn)
        reply = json.loads(body)
        return kind == DONE and (reply[1] if isinstance(reply, list) else reply["outcome"]) == "ok"

    def close(self) -> str:
        """End the worker (its link closed: it exits); valgrind's report, if any."""
        self.conn.close()
        out = ""
        if self.proc is not None:
            _, out = self.proc.communicate(timeout=300)
        if self.sup is not None:
            self.sup.stop()
        self.listener.close()
        os.unlink(f"{self._dir}/workers")
        os.rmdir(self._dir)
        return out


class FloorWorker:
    """``tools/_bench_floor.py``'s chain worker on a ROUTER this process drives."""

    def __init__(self, valgrind: bool = False) -> None:
        import zmq
        from _bench_floor import CHAIN_WORKER

        self._dir = tempfile.mkdtemp(prefix="bench-worker-floor-")
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        ipc = f"ipc://{self._dir}/w"
        self.sock.bind(ipc)
        argv = [sys.executable, "-c", CHAIN_WORKER, ipc]
        if valgrind:
            argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.wid, kind, _ = self.sock.recv_multipart()
        assert kind == b"ready"
        self.pid = self.proc.pid
        self.seq = 0

    def run(self, lead_ms: float, interval_ms: int) -> bool:
        # What the chain's node sends a worker (tools/_bench_floor.py CHAIN_NODE).
        self.sock.send_multipart([self.wid, b"run", json.dumps(
            {"run": f"5f0c1a2b3c4d-{self.seq}", "task": "noop1", "slot": 17345678 + self.seq,
             "term": 3, "state": None}).encode()])
        self.seq += 1
        _, kind, body = self.sock.recv_multipart()
        return kind == b"done" and json.loads(body)["outcome"] == "ok"

    def close(self) -> str:
        self.sock.send_multipart([self.wid, b"quit", b""])
        _, out = self.proc.communicate(timeout=300)
        self.sock.close()
        self.ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)
        return out


def _pack(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body), kind) + body


def _worker(which: str, valgrind: bool = False) -> ClerkWorker | FloorWorker:
    return FloorWorker(valgrind) if which == "floor" else ClerkWorker(Path(which), valgrind)


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` has been on a CPU (``/proc/<pid>/task/*/schedstat``:
    the scheduler's own count, exact where ``cpu_times`` moves in 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:  # a thread that ended meanwhile
            pass
    return total


def child_cpu(which: str, runs: int, gap: float, lead_ms: float) -> dict[str, float]:
    """In a child process: ``runs`` runs of one worker; its CPU µs (on-CPU time of all its
    threads) and context switches per run, the share of its CPU in the kernel (``psutil``'s
    system time over user + system), and how many runs were not ok."""
    import psutil

    w = _worker(which)
    try:
        for _ in range(200):  # warm-up: the task's import, the first allocations
            w.run(0.0, 100)
        proc = psutil.Process(w.pid)
        t0, c0, n0 = proc.cpu_times(), proc.num_ctx_switches(), _on_cpu_ns(w.pid)
        bad = 0
        for _ in range(runs):
            if gap:
                time.sleep(gap)
            bad += not w.run(lead_ms, 100)
        t1, c1, n1 = proc.cpu_times(), proc.num_ctx_switches(), _on_cpu_ns(w.pid)
    finally:
        w.close()
    cpu = (n1 - n0) / 1e3 / runs
    sys_ = (t1.system - t0.system) / max(1e-9, t1.user + t1.system - t0.user - t0.system)
    switches = (c1.voluntary + c1.involuntary - c0.voluntary - c0.involuntary) / runs
    return {"cpu": cpu, "sys": sys_, "switches": switches, "bad": bad}


def child_paced(which: str, runs: int, gap: float, lead_ms: float,
                ahead: int) -> dict[str, float]:
    """In a child process: ``runs`` runs due every ``gap`` s, each sent ``lead_ms`` before
    its due time at the earliest and with at most ``ahead`` runs before it unanswered (see
    the module docstring); the worker's CPU as :func:`child_cpu` reports it, and the
    lateness of its replies (median µs after the due time)."""
    import psutil

    w = _worker(which)
    assert isinstance(w, ClerkWorker)
    try:
        for _ in range(200):
            w.run(0.0, 100)
        proc = psutil.Process(w.pid)
        t0, c0, n0 = proc.cpu_times(), proc.num_ctx_switches(), _on_cpu_ns(w.pid)
        start = int(time.time() * 1000 + 50)  # ms: every due time a whole ms, as RUN has it
        sent, bad, late = 0, 0, []
        for k in range(runs):
            while sent <= min(k + ahead, runs - 1):
                due = (start + round(sent * gap * 1000)) / 1000
                wait = due - lead_ms / 1000 - time.time()
                if wait > 0:
                    time.sleep(wait)
                body = json.dumps([f"5f0c1a2b3c4d-{w.seq}", 17345678 + w.seq, 3, None, False,
                                   int(due * 1000), int(due * 1000) + 5000, "noop1", TARGET,
                                   NODE, "UTC", 100], separators=(", ", ": ")).encode()
                w.conn.sendall(_pack(RUN, body))
                w.seq += 1
                sent += 1
            kind, reply = _recv(w.conn)
            late.append(time.time() - (start + round(k * gap * 1000)) / 1000)
            bad += not (kind == DONE and json.loads(reply)[1] == "ok")
        t1, c1, n1 = proc.cpu_times(), proc.num_ctx_switches(), _on_cpu_ns(w.pid)
    finally:
        w.close()
    sys_ = (t1.system - t0.system) / max(1e-9, t1.user + t1.system - t0.user - t0.system)
    return {"cpu": (n1 - n0) / 1e3 / runs, "sys": sys_,
            "switches": (c1.voluntary + c1.involuntary - c0.voluntary - c0.involuntary) / runs,
            "bad": bad, "late": statistics.median(late) * 1e6,
            "late99": statistics.quantiles(late, n=100)[98] * 1e6}


def child_instructions(which: str, runs: int) -> int:
    """In a child process: the instructions callgrind counted in a worker that did ``runs``
    runs back to back (start-up and exit included)."""
    w = _worker(which, valgrind=True)
    bad = sum(not w.run(0.0, 60_000) for _ in range(runs))
    report = w.close()
    if bad:
        raise SystemExit(f"{bad} runs were not ok")
    m = re.search(r"Collected : (\d+)", report)
    assert m is not None, f"valgrind did not report: {report[-500:]}"
    return int(m.group(1))


def child_syscalls(which: str, runs: int, gap: float, lead_ms: float) -> dict[str, float]:
    """In a child process: the system calls of a worker's threads per run (``strace -c -f``
    attached for ``runs`` runs after the warm-up), by name."""
    w = _worker(which)
    out = f"{w._dir}.strace"
    try:
        for _ in range(200):
            w.run(0.0, 100)
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(w.pid), "-o", out],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # (attached: strace has no signal for it; a second is ample)
        for _ in range(runs):
            if gap:
                time.sleep(gap)
            w.run(lead_ms, 100)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        with open(out) as f:
            table = f.read()
    finally:
        w.close()
        if os.path.exists(out):
            os.unlink(out)
    counts = {}
    for line in table.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1)) / runs
    return counts


def _in_child(which: str, *args: str) -> Any:
    """Run this script's child mode for ``which`` (a tree's path, or "floor") and return
    what it printed (JSON). The child's sys.path starts with the tree measured."""
    tree = str(HERE) if which == "floor" else which
    out = subprocess.run([sys.executable, __file__, "--child", which, *args], check=True,
                         capture_output=True, text=True, cwd=tree,
                         env={**os.environ, "PYTHONHASHSEED": "0",
                              "PYTHONPATH": os.pathsep.join([tree, str(TOOLS)])})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="another checkout (e.g. /work/main)")
    ap.add_argument("--repeats", type=int, default=7, help="0: instructions only")
    ap.add_argument("--runs", type=int, default=3000, help="runs per measurement")
    ap.add_argument("--gap", type=float, default=0.003, help="seconds between runs (0: back "
                    "to back)")
    ap.add_argument("--lead", type=float, default=0.0, help="ms each run is sent ahead of its "
                    "due time (the worker holds it)")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions per run (valgrind)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count system calls per run (strace -c -f)")
    ap.add_argument("--no-floor", action="store_true", help="leave the floor's worker out")
    ap.add_argument("--ahead", type=int, default=0, help="pipelining: this tree with runs "
                    "kept this many ahead in the link against without (see above)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        which, mode, *rest = args.child
        if mode == "cpu":
            print(json.dumps(child_cpu(which, int(rest[0]), float(rest[1]), float(rest[2]))))
        elif mode == "paced":
            print(json.dumps(child_paced(which, int(rest[0]), float(rest[1]), float(rest[2]),
                                         int(rest[3]))))
        elif mode == "syscalls":
            print(json.dumps(child_syscalls(which, int(rest[0]), float(rest[1]),
                                            float(rest[2]))))
        else:
            print(json.dumps(child_instructions(which, int(rest[0]))))
        return 0
    if args.ahead:
        return _pipelined(args.runs, args.gap, args.lead, args.ahead, args.repeats)
    subjects = {"this tree": str(HERE)}
    if args.against:
        subjects["against"] = str(Path(args.against).resolve())
    if not args.no_floor:
        subjects["floor"] = "floor"
    got: dict[str, list[dict[str, float]]] = {k: [] for k in subjects}
    for rep in range(args.repeats):
        order = list(subjects.items())
        for label, which in order if rep % 2 == 0 else order[::-1]:
            got[label].append(_in_child(which, "cpu", str(args.runs), str(args.gap),
                                        str(args.lead)))
    if args.repeats:
        print(f"a worker's own work per no-op run: {args.runs} runs {args.gap * 1000:g} ms apart, "
              f"due {args.lead:g} ms after sent; medians of {args.repeats} interleaved repeats")
        base = statistics.median(r["cpu"] for r in got["against"]) if "against" in got else None
        print(f"{'':<10} | {'CPU µs/run':>10} | {'sys share':>9} | {'ctx sw/run':>10} | ratio")
        for label, rows in got.items():
            cpu = statistics.median(r["cpu"] for r in rows)
            ratio = f"{cpu / base:.2f}x" if base else ""
            bad = sum(r["bad"] for r in rows)
            print(f"{label:<10} | {cpu:10.1f} | {statistics.median(r['sys'] for r in rows):9.0%} | "
                  f"{statistics.median(r['switches'] for r in rows):10.2f} | {ratio}"
                  + (f"  ({bad:.0f} runs not ok)" if bad else ""))
    if args.instructions:
        counts = {}
        for label, which in subjects.items():
            small = _in_child(which, "instructions", "500")
            large = _in_child(which, "instructions", "2500")
            counts[label] = (large - small) / 2000
        print("instructions per run (callgrind, 2,500 runs less 500): "
              + ", ".join(f"{k} {v:,.0f}" + (f" ({v / counts['against']:.3f}x)"
                                            if "against" in counts and k != "against" else "")
                          for k, v in counts.items()))
    if args.syscalls:
        for label, which in subjects.items():
            calls = _in_child(which, "syscalls", "1000", str(args.gap), str(args.lead))
            print(f"system calls per run, {label} (strace -c -f, 1,000 runs): "
                  f"{sum(calls.values()):.2f}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(calls.items(),
                                                                 key=lambda kv: -kv[1])))
    ok = all(r["bad"] == 0 for rows in got.values() for r in rows)
    return 0 if ok else 1


def _pipelined(runs: int, gap: float, lead: float, ahead: int, repeats: int) -> int:
    """``--ahead``: this tree's worker, runs ``ahead`` in its link against none."""
    got: dict[int, list[dict[str, float]]] = {0: [], ahead: []}
    for rep in range(repeats):
        for n in ((0, ahead) if rep % 2 == 0 else (ahead, 0)):
            got[n].append(_in_child(str(HERE), "paced", str(runs), str(gap), str(lead),
                                    str(n)))
    print(f"a worker's own work per no-op run, pipelined: {runs} runs due {gap * 1000:g} ms "
          f"apart, sent {lead:g} ms ahead at most; medians of {repeats} interleaved repeats")
    print(f"{'':<10} | {'CPU µs/run':>10} | {'sys share':>9} | {'ctx sw/run':>10} | "
          f"{'reply µs':>8} | {'p99 µs':>8} | ratio")
    base = statistics.median(r["cpu"] for r in got[0])
    for n, rows in got.items():
        cpu = statistics.median(r["cpu"] for r in rows)
        print(f"{f'ahead {n}':<10} | {cpu:10.1f} | "
              f"{statistics.median(r['sys'] for r in rows):9.0%} | "
              f"{statistics.median(r['switches'] for r in rows):10.2f} | "
              f"{statistics.median(r['late'] for r in rows):8.0f} | "
              f"{statistics.median(r['late99'] for r in rows):8.0f} | {cpu / base:.2f}x")
    return 0 if all(r["bad"] == 0 for rows in got.values() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
