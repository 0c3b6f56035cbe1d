"""Imported at start-up by every Python process of a test's nodes (the node, its agent, its
workers: ``tests/integration/test_dns_relink.py`` puts this directory on their PYTHONPATH):
``socket.gethostbyname`` answers names under ``.clerk.test`` from the file named by
``CLERK_TEST_HOSTS_FILE`` (``name=ip`` lines), read at each lookup, so that the test can move
a name to another IP while the nodes run. Such a name not in the file fails at once; no name
of the test's ever reaches the machine's resolver. Both a node's own bind (its name's host)
and ``clerk._dns.system_lookup`` go through it. Installed only when the variable is set."""

from __future__ import annotations

import os
import socket

HOSTS_FILE_ENV = "CLERK_TEST_HOSTS_FILE"
SUFFIX = ".clerk.test"


def _install(path: str) -> None:
    real = socket.gethostbyname

    def lookup(host: str) -> str:
        if not host.endswith(SUFFIX):
            return real(host)
        with open(path) as fh:
            hosts = dict(line.strip().split("=", 1) for line in fh if "=" in line)
        if host in hosts:
            return hosts[host]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test)")

    socket.gethostbyname = lookup


if os.environ.get(HOSTS_FILE_ENV):
    _install(os.environ[HOSTS_FILE_ENV])
