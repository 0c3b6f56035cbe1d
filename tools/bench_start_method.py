#!/usr/bin/env python3
"""How long does it take to start a child process, per start method?

Measures, for each method, the time from asking for a child to the child's own code
running (it writes one byte to a FIFO the parent is waiting on), over N starts, and
prints median and p99 in milliseconds. Run: ``.venv/bin/python tools/bench_start_method.py``
(``-n 100`` for more starts, ``--threads 4`` to start idle threads first, like a ZeroMQ
node has).

The child runs ``pathlib.Path(fifo).write_text("x")``. The supervisor uses the
"supervisor: python child" and "supervisor: command" rows; the others are the
alternatives it was chosen against (see README, "supervisor").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The child's code: a stdlib function, so every method pays the same import cost and the
# target pickles by reference (as a user's "module:function" would).
PING = pathlib.Path.write_text


class Fifo:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "fifo")
        os.mkfifo(self.path)
        self.r = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # no HUP between runs

    def wait(self) -> None:
        select.select([self.r], [], [], 30)
        os.read(self.r, 64)


def timed(fifo: Fifo, start, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        handle = start()
        fifo.wait()
        out.append((time.perf_counter() - t0) * 1000)
        handle()
    return out


def methods(fifo: Fifo):
    from supervisor._spawn import spawn
    from supervisor._spec import ChildSpec

    def fork():
        pid = os.fork()
        if pid == 0:
            PING(pathlib.Path(fifo.path), "x")
            os._exit(0)
        return lambda: os.waitpid(pid, 0)

    def mp(name):
        ctx = multiprocessing.get_context(name)

        def start():
            p = ctx.Process(target=PING, args=(pathlib.Path(fifo.path), "x"))
            p.start()
            return p.join

        return start

    def python_c():
        code = f"import pathlib;pathlib.Path({fifo.path!r}).write_text('x')"
        return subprocess.Popen([sys.executable, "-c", code]).wait

    def sup_python():
        s = spawn(ChildSpec(id="b", start=PING, args=(pathlib.Path(fifo.path), "x")))
        return lambda: (s.proc.wait(), s.pidfd >= 0 and os.close(s.pidfd))

    shell = f"printf x > {fifo.path}"

    def sup_command():
        s = spawn(ChildSpec(id="c", command=["sh", "-c", shell]))
        return lambda: (s.proc.wait(), s.pidfd >= 0 and os.close(s.pidfd))

    def plain_command():
        return subprocess.Popen(["sh", "-c", shell]).wait

    return [
        ("os.fork (unsafe with threads)", fork),
        ("multiprocessing fork", mp("fork")),
        ("multiprocessing forkserver", mp("forkserver")),
        ("multiprocessing spawn", mp("spawn")),
        ("subprocess python -c", python_c),
        ("supervisor: python child", sup_python),
        ("plain subprocess sh -c", plain_command),
        ("supervisor: command (sh -c)", sup_command),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="starts per method (default 50)")
    parser.add_argument("--threads", type=int, default=0, help="idle threads to run first")
    args = parser.parse_args()
    stop = threading.Event()
    for _ in range(args.threads):
        threading.Thread(target=stop.wait, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Fifo(tmp)
        print(f"child start latency, {args.n} starts each, {os.cpu_count()} CPUs, "
              f"Python {sys.version.split()[0]}, {args.threads} extra threads")
        print(f"{'method':32} {'median ms':>10} {'p99 ms':>10}")
        for name, start in methods(fifo):
            timed(fifo, start, 3)  # warm-up (forkserver start, page cache)
            samples = sorted(timed(fifo, start, args.n))
            p99 = samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))]
            print(f"{name:32} {statistics.median(samples):10.1f} {p99:10.1f}")
    stop.set()


if __name__ == "__main__":
    main()
