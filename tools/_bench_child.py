"""The supervised child of ``tools/bench_supervisor.py``.

On start it writes one line ``"<pid> <CLOCK_MONOTONIC ns>\\n"`` to the FIFO named by its
argument, then blocks until it is killed. CLOCK_MONOTONIC is system-wide on Linux, so the
benchmark can subtract the time it sent SIGKILL to the previous child from this stamp.

Run as a program (``python _bench_child.py FIFO``: what supervisord and our ``command`` children
run) or called as ``_bench_child:main`` (our Python-callable children). It imports only what
the interpreter has already loaded, so its own cost is negligible next to process start-up.
"""

import os
import sys
import time


def main(fifo: str) -> None:
    """Report this process as running, then block forever."""
    stamp = time.monotonic_ns()
    # A write of fewer than PIPE_BUF bytes to a FIFO is atomic; the bench keeps the FIFO open,
    # so opening it for writing does not block.
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, f"{os.getpid()} {stamp}\n".encode())
    finally:
        os.close(fd)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
