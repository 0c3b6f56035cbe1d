"""The transport's link bookkeeping (:mod:`clerk._transport`): what the poll produces, one
link's sockets and queue, and which links to a host name to look up again.

**Relinking.** ZeroMQ reconnects to the address it was given, for ever: a link to
``node-2.svc:5555`` stays on the IP the name had when the link was opened. A peer restarted
under the same name with another IP (a Kubernetes StatefulSet behind a headless service, most
cloud VMs) was never reached again through that link (a seed's, or a member's). So a link
whose host is a name (not an IP literal) and whose DEALER has not been connected for
``RELINK_AFTER`` s (its monitor said disconnected, or it never connected since it was opened)
asks the resolver again (:meth:`clerk._dns.HostResolver.recheck`: urgent for members and seeds,
at most once per ``RECHECK_MIN`` s per name, a failed name with its backoff). When the answer
differs from the IP the link is connected to, the transport moves the link's sockets to the
new IP (``relinked``): its DEALER disconnects from the old endpoint and connects to the new
one, its REQ is made anew (a request on its way is asked again by the protocol, as after any
lost answer). Messages queued for the peer stay in the link's queue, in order, and go once the
new connection is up; those that waited over ``PENDING_TTL`` are dropped, as for any peer not
reached, and the protocol resends what matters (heartbeats, JOINs, hand-overs). Healthy links
are never looked up again (a TTL's new answer is only used by links that need it).
:class:`Relinker` decides; it opens no socket and never blocks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from clerk._dns import HostResolver, literal
from clerk._security import CurveKeys
from clerk._sockopts import tune

__all__ = ["RELINK_AFTER", "RELINK_CHECK", "Inbound", "Link", "Relinker", "endpoint_ip",
           "monitor_event", "secure"]

#: A link to a name not connected for this long (s) has its name looked up again.
RELINK_AFTER = 2.0
#: How often (s) the links that are down are looked at (only while some are).
RELINK_CHECK = 1.0


def monitor_event(frames: list[bytes]) -> int | None:
    """The event id of one socket-monitor message (frame 1: a 16-bit event id and a 32-bit
    value, native byte order; frame 2: the endpoint), None for a malformed one. Parsed here
    rather than with ``zmq.utils.monitor``, whose import pulls in ``zmq.asyncio`` and so
    ``asyncio`` (~5 MiB in every node process that never uses it)."""
    if len(frames) != 2 or len(frames[0]) != 6:
        return None
    return int.from_bytes(frames[0][:2], sys.byteorder)


@dataclass
class Inbound:
    """Something the poll produced: a message (``frames``), or a peer going down."""

    kind: str  # "message" | "down" | "up"
    frames: list[bytes] = field(default_factory=list)
    rid: bytes | None = None  # ROUTER routing id (None: a reply on our REQ)
    via_req: bool = False  # came from a REQ socket: answer with reply()
    address: str = ""  # for replies on our REQ and for "down"


@dataclass
class Link:
    """Outgoing sockets to one peer address."""

    address: str
    dealer: zmq.Socket
    dealer_mon: zmq.Socket
    req: zmq.Socket | None = None
    req_mon: zmq.Socket | None = None
    req_busy: bool = False
    req_watched: bool = False  # the REQ and its monitor are in the poller (see the docstring)
    pending: list[tuple[float, bool, list[bytes]]] = field(default_factory=list)
    connected: bool = False
    endpoint: str | None = None  # tcp://IP:port once the host is resolved (and connected to)


def secure(sock: zmq.Socket, max_bytes: int, keys: CurveKeys | None) -> None:
    """The options of a link's socket (DEALER or REQ), CURVE with ``keys``."""
    sock.linger = 0
    sock.immediate = True
    sock.maxmsgsize = max_bytes
    sock.sndhwm = 1000
    tune(sock)
    if keys is not None:
        sock.curve_serverkey = keys.public
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret


def endpoint_ip(endpoint: str) -> str:
    """The IP of ``tcp://IP:port``."""
    return endpoint.removeprefix("tcp://").rpartition(":")[0]


class Relinker:
    """Which links to host names are down, since when, and which of them to move to their
    name's new address (see the module docstring). The transport reports its DEALERs'
    connections (:meth:`down`, :meth:`up`), asks :meth:`check` while :meth:`due`, and hands
    it the resolver's answers (:meth:`answered`); both return ``(address, new IP)`` pairs of
    links to move."""

    def __init__(self, resolver: HostResolver) -> None:
        self.resolver = resolver
        self._down: dict[str, float] = {}  # address (its host a name) -> down since
        self._next = 0.0

    def down(self, address: str, now: float) -> None:
        """The link to ``address`` is not connected (as of ``now``, unless it already was)."""
        if address not in self._down and literal(address.rpartition(":")[0]) is None:
            self._down[address] = now

    def up(self, address: str) -> None:
        """The link to ``address`` is connected (or closed): nothing to look up."""
        self._down.pop(address, None)

    def is_down(self, address: str) -> bool:
        return address in self._down

    def due(self, now: float) -> bool:
        """Is there a link down to look at (at most every ``RELINK_CHECK`` s)?"""
        return bool(self._down) and now >= self._next

    def check(self, now: float, endpoint: Callable[[str], str | None],
              pinned: Callable[[str], bool]) -> list[tuple[str, str]]:
        """Ask again for the names of the links down for ``RELINK_AFTER`` s; the links whose
        name has another address in hand already. ``endpoint``: a link's endpoint (None: no
        link, or not connected to anything yet: then the transport's own wait for the answer
        holds); ``pinned``: a member's or a seed's (an urgent lookup)."""
        self._next = now + RELINK_CHECK
        moves: list[tuple[str, str]] = []
        for address, since in list(self._down.items()):
            current = endpoint(address)
            if current is None:
                self._down.pop(address)
                continue
            if now - since < RELINK_AFTER:
                continue
            ip = self.resolver.recheck(address.rpartition(":")[0], urgent=pinned(address))
            if ip is not None and ip != endpoint_ip(current):
                moves.append((address, ip))
        return moves

    def answered(self, host: str, ip: str,
                 endpoint: Callable[[str], str | None]) -> list[tuple[str, str]]:
        """The links down to ``host`` (for ``RELINK_AFTER`` s or not) connected to another
        IP than its answer ``ip``."""
        moves: list[tuple[str, str]] = []
        for address in self._down:
            if address.rpartition(":")[0] != host:
                continue
            current = endpoint(address)
            if current is not None and endpoint_ip(current) != ip:
                moves.append((address, ip))
        return moves
