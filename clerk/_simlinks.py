"""The simulated network's cuts and links: partitions, one-way and selective cuts, a link
down and up again, and the heal that ends them all (a part of :class:`clerk._simnet.SimNetwork`,
which delivers or drops each message by them: ``SimNetwork._transmit``).

* ``partition(*groups)`` cuts the network into groups (the nodes not named: one more); a
  message between two groups is lost.
* ``deafen(name)`` is a one-way cut (the node sends, hears nothing); ``cut_where(drop)`` is
  a selective one: it drops every message for which ``drop(src, dst, msg)`` holds (node
  names), to build a directed scenario (e.g. an old manager that hears only the voters'
  ACCEPTED). Both last until ``heal``;
* ``link_down(src, dst)`` cuts one node's link to another (``src``'s DEALER to ``dst``: what
  ``src`` sends ``dst`` waits; the other way is another connection), with a ``PeerDown`` to
  ``src`` unless ``silent`` (a reset connection; silent: one still being set up, or dead
  without a word); ``link_up(src, dst)`` brings it back, and ``src`` gets a ``PeerUp`` for
  ``dst`` after one delay (``handshake``: more), as the real transport reports a DEALER that
  connected again (its socket monitor's handshake, :mod:`clerk._linktable`). What ``src``
  sent meanwhile goes first, if it waited at most ``PENDING_TTL_S`` by then; the rest is
  lost, as the real transport's queue for a peer not connected (``clerk._transport``).
  ``heal(peer_up=True)`` reports the same for every link a cut had cut (between nodes that
  had talked); without it a heal reports nothing, as before.
* ``whole_for()`` is how long the network has been whole (-1 while anything is cut): a link
  that comes up, or a heal, makes it whole from then on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from clerk._core import Event, NodeCore, PeerDown, PeerUp, Send
from clerk._messages import Message
from clerk._simnode import SimNode

__all__ = ["PENDING_TTL_S", "LinkFaults"]

#: A message for a peer whose link is down waits this long (s) for it, then is lost: the real
#: transport's ``PENDING_TTL`` (clerk._transport imports ZeroMQ: not imported here).
PENDING_TTL_S = 1.0


class LinkFaults:
    """Cuts and links of :class:`clerk._simnet.SimNetwork` (mixed into it; its state is the
    network's, see its ``__init__``)."""

    if TYPE_CHECKING:  # the network's (clerk._simnet)
        now: float
        delay: float
        nodes: dict[str, SimNode]
        trace: list[tuple[float, str, str]]
        dropped: int
        whole_since: float
        deaf: set[str]
        cuts: list[Callable[[str, str, Message], bool]]
        down: set[tuple[str, str]]
        _groups: dict[str, int] | None
        _links: dict[str, set[str]]
        _waiting: dict[tuple[str, str], list[tuple[float, NodeCore, Send]]]

        def _schedule(self, at: float, action: Callable[[], None]) -> None: ...
        def _feed(self, node: SimNode, event: Event) -> None: ...
        def _transmit(self, src: SimNode, send: Send) -> None: ...

    def partition(self, *groups: list[str] | tuple[str, ...] | set[str]) -> None:
        """Cut the network into ``groups``; nodes not named form one more group."""
        mapping: dict[str, int] = {}
        for i, group in enumerate(groups):
            for name in group:
                mapping[name] = i
        rest = len(groups)
        self._groups = {n: mapping.get(n, rest) for n in self.nodes}
        self.trace.append((self.now, "*", f"partition {len(groups) + 1}"))

    def deafen(self, name: str) -> None:
        """A one-way cut: ``name`` still sends, but receives nothing until :meth:`heal` (a
        firewall dropping inbound packets, an asymmetric route)."""
        self.deaf.add(name)
        self.trace.append((self.now, name, "deaf"))

    def cut_where(self, drop: Callable[[str, str, Message], bool]) -> None:
        """A selective cut: drop every message ``src -> dst`` for which ``drop(src, dst,
        msg)`` holds (node names), until :meth:`heal`."""
        self.cuts.append(drop)
        self.trace.append((self.now, "*", "cut"))

    def link_down(self, src: str, dst: str, *, silent: bool = False) -> None:
        """Cut ``src``'s link to ``dst`` until :meth:`link_up` (see the module docstring)."""
        self.down.add((src, dst))
        self.trace.append((self.now, src, f"link to {dst} down"))
        if not silent:
            node = self.nodes[src]
            self._schedule(self.now + self.delay, functools.partial(
                self._feed, node, PeerDown(self.nodes[dst].address)))

    def link_up(self, src: str, dst: str, *, handshake: float = 0.0) -> None:
        """Bring ``src``'s link to ``dst`` back (see the module docstring)."""
        if (src, dst) not in self.down:
            return
        self.down.discard((src, dst))
        if self.whole_for() >= 0:  # (whole again from now on)
            self.whole_since = self.now
        self.trace.append((self.now, src, f"link to {dst} up"))
        self._flush(src, dst, self.now + self.delay + handshake)
        self._peer_up(src, dst, self.now + self.delay + handshake)

    def _flush(self, src: str, dst: str, at: float) -> None:
        """What waited for the link ``src -> dst`` leaves at ``at`` (connected), in order, if
        it waited at most ``PENDING_TTL_S`` by then and ``src`` was not restarted."""
        node = self.nodes[src]
        for sent, core, send in self._waiting.pop((src, dst), []):
            if at - sent > PENDING_TTL_S or core is not node.core:
                self.dropped += 1
                continue
            self._schedule(at, functools.partial(self._resend, node, core, send))

    def _resend(self, node: SimNode, core: NodeCore, send: Send) -> None:
        if node.up and node.core is core:  # (else: restarted meanwhile, its queue is gone)
            self._transmit(node, send)

    def _peer_up(self, src: str, dst: str, at: float) -> None:
        node, address = self.nodes[src], self.nodes[dst].address
        incarnation = node.core.me.incarnation

        def up() -> None:
            if node.core.me.incarnation == incarnation:  # (not to a restarted node)
                self._feed(node, PeerUp(address))

        self._schedule(at, up)

    def whole_for(self) -> float:
        """How long the network has been whole (-1 while it is cut into groups)."""
        if self._groups is not None or self.deaf or self.cuts or self.down:
            return -1.0
        return self.now - self.whole_since

    def heal(self, *, peer_up: bool = False) -> None:
        """End every cut and link down; ``peer_up``: see the module docstring."""
        if peer_up:
            for src in sorted(self._links):
                for dst in sorted(self._links[src]):
                    if self._was_cut(src, dst):
                        self._peer_up(src, dst, self.now + self.delay)
        for src, dst in sorted(self.down):
            self._flush(src, dst, self.now + self.delay)
        if self._groups is not None or self.deaf or self.cuts or self.down:
            self.whole_since = self.now
        self._groups = None
        self.deaf.clear()
        self.cuts.clear()
        self.down.clear()
        self.trace.append((self.now, "*", "heal"))

    def _was_cut(self, src: str, dst: str) -> bool:
        g = self._groups
        return (g is not None and g.get(src) != g.get(dst)) or dst in self.deaf or (
            (src, dst) in self.down)
