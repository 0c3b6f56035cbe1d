"""Task module of ``tools/bench_dns_flood.py``, imported by the benchmarked node's processes
(its agent loads it with the config): a task that stamps its runs, and a slow resolver.

With ``CLERK_BENCH_DNS_DELAY_MS`` set, ``socket.gethostbyname`` of a name under
``.flood.test`` answers ``127.77.0.1`` (loopback; the flood names port 9, where nothing
listens) only after that many ms (a resolver that takes seconds: ``RES_OPTIONS=timeout:2``
against a server that does not answer), in whichever tree the node
runs: Clerk before ``clerk._dns`` looked names up with ``socket.gethostbyname`` on its loop,
and ``clerk._dns.system_lookup`` calls it on a worker thread. The answer is an address (not
a failure) because the old tree handed a name it could not resolve to ZeroMQ, whose own
lookup (in C) would then ask the machine's real resolver: these names never leave the node.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import clerk

DELAY_ENV = "CLERK_BENCH_DNS_DELAY_MS"
SUFFIX = ".flood.test"


class Stamp(clerk.Task):
    """Appends each run's start time to ``args['log']`` (not fsynced: the gaps time the node,
    not the disk)."""

    def init(self, args: Any) -> Any:
        return {"log": args["log"]}

    def execute(self, state: Any) -> Any:
        with open(state["log"], "a") as fh:
            fh.write(f"{time.time():.6f}\n")
        return state


def _install(delay: float) -> None:
    real = socket.gethostbyname

    def slow(host: str) -> str:
        if host.endswith(SUFFIX):
            time.sleep(delay)
            return "127.77.0.1"
        return real(host)

    socket.gethostbyname = slow


if os.environ.get(DELAY_ENV):
    _install(float(os.environ[DELAY_ENV]) / 1000)
