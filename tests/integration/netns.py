"""Real network partitions for tests and tools: one Linux network namespace per node.

Needs root and ``ip netns`` (iproute2); :func:`available` says whether this host has them, and
why not. Layout (every name starts with the prefix, every address is in its /24)::

    root namespace:  bridge <prefix>-br (10.202.0.1/24), spare bridge <prefix>-b2 (no address)
    per node i:      namespace <prefix>-n<i>, veth <prefix>-v<i> (root side, on a bridge)
                     <-> eth0 (inside, 10.202.0.<10+i>/24), and lo up

Faults are link-level, as on a real LAN (``tc netem`` is not needed, nor iptables):

* :meth:`Lab.cut` sets a node's root-side veth down: it can reach nobody, nobody reaches it;
  TCP connections stay open on both ends, as in a switch failure.
* :meth:`Lab.split` moves some nodes' veths to the spare bridge: two sides that each still
  work (a 2|3 split).
* :meth:`Lab.heal` puts every veth back on the main bridge and up.

:class:`NetnsCluster` is :class:`clerk.testing.LocalCluster` with each node in its own
namespace at its own address (port 7400 everywhere). Everything created is deleted on exit,
also after a failure; :func:`cleanup` removes leftovers of a killed run by prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clerk.testing import LocalCluster

__all__ = ["PREFIX", "SUBNET", "Lab", "NetnsCluster", "available", "cleanup"]

PREFIX = "clk-rt"
SUBNET = "10.202.0"
PORT = 7400


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=10)


def available() -> str:
    """"" if network namespaces can be used here, else the reason they cannot."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{PREFIX}-probe"
    try:
        _ip("netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"ip netns add failed: {getattr(exc, 'stderr', '') or exc}".strip()
    _ip("netns", "del", probe, check=False)
    return ""


def cleanup(prefix: str = PREFIX) -> None:
    """Delete every namespace and link whose name starts with ``prefix``."""
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix + "-"):
            _ip("netns", "del", name, check=False)
    out = _ip("-o", "link", "show", check=False).stdout
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            link = parts[1].strip().split("@")[0]
            if link.startswith(prefix + "-"):
                _ip("link", "del", link, check=False)


class Lab:
    """``n`` namespaces on a bridge (see the module docstring). Use as a context manager."""

    def __init__(self, n: int, prefix: str = PREFIX, subnet: str = SUBNET) -> None:
        self.n, self.prefix, self.subnet = n, prefix, subnet
        self.bridge, self.spare = f"{prefix}-br", f"{prefix}-b2"

    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def veth(self, i: int) -> str:
        return f"{self.prefix}-v{i}"

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{10 + i}"

    def __enter__(self) -> Lab:
        cleanup(self.prefix)
        try:
            for br in (self.bridge, self.spare):
                _ip("link", "add", br, "type", "bridge")
                _ip("link", "set", br, "up")
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            for i in range(1, self.n + 1):
                ns, veth = self.ns(i), self.veth(i)
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            cleanup(self.prefix)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        cleanup(self.prefix)

    def cut(self, nodes: Iterable[int]) -> None:
        for i in nodes:
            _ip("link", "set", self.veth(i), "down")

    def split(self, side: Iterable[int]) -> None:
        for i in side:
            _ip("link", "set", self.veth(i), "master", self.spare)

    def heal(self) -> None:
        for i in range(1, self.n + 1):
            _ip("link", "set", self.veth(i), "master", self.bridge)
            _ip("link", "set", self.veth(i), "up")


class NetnsCluster(LocalCluster):
    """A :class:`LocalCluster` whose node ``i`` (1-based) runs in namespace ``lab.ns(i)`` at
    ``lab.ip(i):7400``. Status requests go from the root namespace through the bridge."""

    def __init__(self, lab: Lab, tasks: Sequence[Any] = (), **kw: Any) -> None:
        super().__init__(lab.n, tasks, **kw)
        self.lab = lab
        self.names = [f"n{i}@{lab.ip(i)}" for i in range(1, lab.n + 1)]
        self.ports = dict.fromkeys(self.names, PORT)
        self.priorities = self.priorities[:lab.n]

    def index(self, name: str) -> int:
        return self.names.index(name) + 1

    def address(self, name: str) -> str:
        return f"{self.lab.ip(self.index(name))}:{PORT}"

    def _argv(self, name: str, config: Path) -> list[str]:
        return ["ip", "netns", "exec", self.lab.ns(self.index(name)),
                *super()._argv(name, config)]
