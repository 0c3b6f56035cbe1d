"""A task module that, imported by a node's processes, gives their host-name lookups
(``clerk._dns.system_lookup``) names of the test's own: ``CLERK_TEST_HOSTS`` is
``name=ip,name=ip``. Any other name under ``.clerk.test`` fails at once (so none of them ever
reaches the machine's resolver), but one that starts with ``slow`` fails only after
``CLERK_TEST_DNS_DELAY_MS`` (a resolver that cannot be reached); every other name goes to the
system as usual. Installed only when ``CLERK_TEST_HOSTS`` is set (by the test, for its
cluster)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import clerk

HOSTS_ENV = "CLERK_TEST_HOSTS"
DELAY_ENV = "CLERK_TEST_DNS_DELAY_MS"
SUFFIX = ".clerk.test"


class Idle(clerk.Task):
    """Does nothing: its module is what the test needs loaded in the agent."""

    def init(self, args: Any) -> Any:
        return {}

    def execute(self, state: Any) -> Any:
        return state


def hosts_env(hosts: dict[str, str]) -> str:
    """The value of ``CLERK_TEST_HOSTS`` for ``hosts`` (names under ``.clerk.test``)."""
    assert all(name.endswith(SUFFIX) for name in hosts), hosts
    return ",".join(f"{name}={ip}" for name, ip in hosts.items())


def fake_lookup(hosts: dict[str, str], real: Callable[[str], str],
                delay: float = 0.0) -> Callable[[str], str]:
    def lookup(host: str) -> str:
        if host in hosts:
            return hosts[host]
        if host.endswith(SUFFIX):
            if host.startswith("slow"):
                time.sleep(delay)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test)")
        return real(host)

    return lookup


def _install(spec: str) -> None:
    from clerk import _dns

    hosts = dict(item.split("=", 1) for item in spec.split(",") if item)
    delay = float(os.environ.get(DELAY_ENV) or 0) / 1000
    _dns.system_lookup = fake_lookup(hosts, _dns.system_lookup, delay)  # type: ignore[assignment]


if os.environ.get(HOSTS_ENV):
    _install(os.environ[HOSTS_ENV])
