"""The network of ``tools/chaos.py``: one namespace per node, two bridges, veth pairs.

Rules:

* Everything it creates is named with the ``clk-ch-`` prefix and lives only in namespaces it
  creates: node ``i`` (1-based) runs in namespace ``clk-ch-n<i>`` with address ``10.203.0.<i>/24``
  on ``clk-ch-p<i>``; its peer ``clk-ch-v<i>`` sits in namespace ``clk-ch-br`` on bridge
  ``clk-ch-br0``. No address is ever added to the root namespace.
* A partition never needs ``tc`` or ``iptables``: **cut** sets a node's bridge-side veth down
  (the node is alone; packets to it vanish, as in a real partition, no RST); **split** moves
  veths to a second bridge ``clk-ch-br1`` (the moved nodes still reach each other, so a 2|3
  split keeps both sides internally connected); **heal** puts every veth back up on
  ``clk-ch-br0``. A node's own address stays reachable inside its namespace (loopback), which
  is how the status probes keep watching a cut-off node.
* :func:`cleanup` removes every ``clk-ch-`` namespace and link, first SIGKILLing the processes
  still inside those namespaces (leftovers of a previous crashed run included); it never
  touches anything without the prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

__all__ = ["PREFIX", "Net", "address", "cleanup", "namespace", "unavailable"]

PREFIX = "clk-ch-"
BRIDGE_NS = f"{PREFIX}br"
MAIN_BRIDGE = f"{PREFIX}br0"
SIDE_BRIDGE = f"{PREFIX}br1"
SUBNET = "10.203.0"


def namespace(i: int) -> str:
    return f"{PREFIX}n{i}"


def address(i: int) -> str:
    return f"{SUBNET}.{i}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why the chaos network cannot be built here (None when it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, bridges)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        # What the run needs inside a namespace: a bridge and a veth pair.
        for what in (["link", "add", f"{PREFIX}pbr", "type", "bridge"],
                     ["link", "add", f"{PREFIX}pa", "type", "veth", "peer", "name",
                      f"{PREFIX}pb"]):
            made = _ip("-n", probe, *what, check=False)
            if made.returncode != 0:
                return f"`ip {' '.join(what)}` failed: {made.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _our_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(PREFIX)]


def cleanup() -> list[str]:
    """Remove every ``clk-ch-`` namespace and root-namespace link; return what was removed."""
    removed: list[str] = []
    for ns in _our_namespaces():
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", ns, check=False)
        removed.append(f"namespace {ns}" + (f" ({len(pids)} processes killed)" if pids else ""))
    links = _ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                _ip("link", "del", name, check=False)
                removed.append(f"link {name}")
    return removed


class Net:
    """The namespaces and links of ``n`` nodes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cut_nodes: set[int] = set()
        self.moved_nodes: set[int] = set()

    def create(self) -> None:
        _ip("netns", "add", BRIDGE_NS)
        for bridge in (MAIN_BRIDGE, SIDE_BRIDGE):
            _ip("-n", BRIDGE_NS, "link", "add", bridge, "type", "bridge")
            _ip("-n", BRIDGE_NS, "link", "set", bridge, "up")
        for i in range(1, self.n + 1):
            ns, host, peer = namespace(i), f"{PREFIX}v{i}", f"{PREFIX}p{i}"
            _ip("netns", "add", ns)
            # Create the pair inside the bridge namespace: no link ever lands in the root one.
            _ip("-n", BRIDGE_NS, "link", "add", host, "type", "veth", "peer", "name", peer,
                "netns", ns)
            _ip("-n", BRIDGE_NS, "link", "set", host, "master", MAIN_BRIDGE, "up")
            _ip("-n", ns, "addr", "add", f"{address(i)}/24", "dev", peer)
            _ip("-n", ns, "link", "set", peer, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, i: int) -> None:
        """Node ``i`` alone: its bridge-side veth down."""
        _ip("-n", BRIDGE_NS, "link", "set", f"{PREFIX}v{i}", "down")
        self.cut_nodes.add(i)

    def move(self, i: int) -> None:
        """Node ``i`` to the second bridge (with the other moved nodes)."""
        _ip("-n", BRIDGE_NS, "link", "set", f"{PREFIX}v{i}", "master", SIDE_BRIDGE)
        self.moved_nodes.add(i)

    def heal(self) -> None:
        """Every veth up, on the main bridge."""
        for i in sorted(self.moved_nodes):
            _ip("-n", BRIDGE_NS, "link", "set", f"{PREFIX}v{i}", "master", MAIN_BRIDGE)
        for i in sorted(self.cut_nodes):
            _ip("-n", BRIDGE_NS, "link", "set", f"{PREFIX}v{i}", "up")
        self.cut_nodes.clear()
        self.moved_nodes.clear()
