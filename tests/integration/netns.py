"""Real network partitions for tests and tools: one Linux network namespace per node.

Needs root and ``ip netns`` (iproute2); :func:`available` says whether this host has them, and
why not. Layout (every name starts with the prefix, every address is in its /24)::

    root namespace:  bridge <prefix>-br (<subnet>.1/24), spare bridge <prefix>-b2 (no address)
    per node i:      namespace <prefix>-n<i>, veth <prefix>-v<i> (root side, on a bridge)
                     <-> eth0 (inside, <subnet>.<10+i>/24), and lo up

Several suites may run on one host at once (CI jobs, parallel checkouts): the root namespace is
shared, so each lab's names and /24 are its own. The prefix is ``clk<pid>`` (the pid of the
process that made it) and the subnet a ``10.202.X`` that no interface of the host has yet;
one lab never deletes another's links (it did: every lab was ``clk-rt``, and one suite's clean
start deleted a running suite's bridge, whose next ``ip addr add`` then failed).

Faults are link-level, as on a real LAN (``tc netem`` is not needed, nor iptables):

* :meth:`Lab.cut` sets a node's root-side veth down: it can reach nobody, nobody reaches it;
  TCP connections stay open on both ends, as in a switch failure.
* :meth:`Lab.split` moves some nodes' veths to the spare bridge: two sides that each still
  work (a 2|3 split).
* :meth:`Lab.heal` puts every veth back on the main bridge and up.

:class:`NetnsCluster` is :class:`clerk.testing.LocalCluster` with each node in its own
namespace at its own address (port 7400 everywhere). Everything created is deleted on exit,
also after a failure; :func:`cleanup` removes one lab's leftovers by prefix, and
:func:`cleanup_stale` those of labs whose process is gone (a killed run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clerk.testing import LocalCluster

__all__ = ["PREFIX", "SUBNET", "Lab", "NetnsCluster", "available", "cleanup", "cleanup_stale",
           "free_subnet", "names", "run_prefix"]

PREFIX = "clk-rt"  # the old shared prefix: only leftovers of older runs still have it
SUBNET = "10.202.0"
PORT = 7400
#: A lab's own prefix: ``clk`` and the pid that made it (interface names have 15 characters
#: at most: ``clk4194304-b2`` is 13). The chaos tool's ``clk-ch-`` never matches, and an
#: older checkout's ``clk-rt-`` is left alone (it may be another suite's, running now).
_OWNED = re.compile(r"^(clk-rt|clk(\d+))-")


def run_prefix(pid: int | None = None) -> str:
    """The prefix of the labs of this process (or of ``pid``)."""
    return f"clk{os.getpid() if pid is None else pid}"


def _addresses() -> str:
    return _ip("-o", "addr", "show", check=False).stdout


def free_subnet(base: str = "10.202", start: int | None = None) -> str:
    """A ``base.X`` /24 that no interface of this host is in: tried from a pid-derived ``X``
    (parallel runs start apart), in order, wrapping around."""
    used = _addresses()
    first = (os.getpid() if start is None else start) % 250
    for k in range(250):
        subnet = f"{base}.{(first + k) % 250 + 1}"
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError(f"no free /24 left in {base}.0.0/16")


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
    probe = f"{run_prefix()}-probe"
    try:
        _ip("netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"ip netns add failed: {getattr(exc, 'stderr', '') or exc}".strip()
    _ip("netns", "del", probe, check=False)
    return ""


def names() -> tuple[list[str], list[str]]:
    """(namespaces, links) of the root namespace, by name."""
    namespaces = [line.split()[0] for line in _ip("netns", "list", check=False).stdout
                  .splitlines() if line.split()]
    links = []
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            links.append(parts[1].strip().split("@")[0])
    return namespaces, links


def cleanup(prefix: str = PREFIX, owned: Any = None) -> None:
    """Delete every namespace and link whose name starts with ``prefix`` + ``-`` (or, with
    ``owned``, whose name it accepts)."""
    def mine(name: str) -> bool:
        return bool(owned(name)) if owned is not None else name.startswith(prefix + "-")

    namespaces, links = names()
    for name in namespaces:
        if mine(name):
            _ip("netns", "del", name, check=False)
    for link in links:
        if mine(link):
            _ip("link", "del", link, check=False)


def _stale(name: str) -> bool:
    m = _OWNED.match(name)
    if m is None or m.group(2) is None:  # (clk-rt: an older checkout's lab, maybe running)
        return False
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def cleanup_stale() -> None:
    """Delete the labs of processes that are gone (a run killed before its clean-up), never
    those of a live process: another suite's lab stays up."""
    cleanup(owned=_stale)


class Lab:
    """``n`` namespaces on a bridge (see the module docstring). Use as a context manager."""

    def __init__(self, n: int, prefix: str | None = None, subnet: str | None = None) -> None:
        self.n, self.prefix = n, prefix if prefix is not None else run_prefix()
        self.subnet = subnet  # chosen on entry (free_subnet) unless given
        self.bridge, self.spare = f"{self.prefix}-br", f"{self.prefix}-b2"

    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def veth(self, i: int) -> str:
        return f"{self.prefix}-v{i}"

    def ip(self, i: int) -> str:
        assert self.subnet is not None, "the lab's subnet is chosen when it is entered"
        return f"{self.subnet}.{10 + i}"

    def __enter__(self) -> Lab:
        cleanup_stale()
        cleanup(self.prefix)  # (this process's own earlier lab, if one was left)
        try:
            for br in (self.bridge, self.spare):
                _ip("link", "add", br, "type", "bridge")
                _ip("link", "set", br, "up")
            self._address_bridge()
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

    def _address_bridge(self) -> None:
        """Give the bridge ``<subnet>.1/24``: a free /24 unless one was given. Linux lets two
        interfaces hold one subnet, so a race with another suite picking the same one at the
        same moment is checked after the add (any other interface in it: take the next)."""
        if self.subnet is not None:
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            return
        for attempt in range(250):
            subnet = free_subnet(start=os.getpid() + attempt)
            added = _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge, check=False)
            others = [line for line in _addresses().splitlines()
                      if f" {subnet}." in line and f" {self.bridge} " not in line]
            if added.returncode == 0 and not others:
                self.subnet = subnet
                return
            _ip("addr", "del", f"{subnet}.1/24", "dev", self.bridge, check=False)
        raise RuntimeError("no free /24 for the lab's bridge")

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
