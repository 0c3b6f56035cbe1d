"""The transport's links, and their life cycle (:mod:`clerk._transport`): opening a link's
DEALER (and its REQ, for elections) to a peer address, connecting it once its host has an IP,
moving it when its name's peer moved (:mod:`clerk._links`), closing the least recently used
ones to make room, and reading their sockets' monitors.

:class:`LinkTable` holds the links (least recently used first), the pinned addresses, and
which poller entry belongs to which link; it never sends a message itself: what a link
queued goes through the transport's ``flush`` (given at construction), which it calls when a
connection comes up. Bounds, rate limits and the reasons for the monitors' polling are in
:mod:`clerk._transport`'s docstring.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq

from clerk._dns import HostResolver, valid_address
from clerk._links import Inbound, Link, Relinker, endpoint_ip, monitor_event, secure
from clerk._security import CurveKeys

__all__ = ["MAX_LINKS", "MAX_UNPINNED_LINKS", "LinkTable"]

log = logging.getLogger("clerk.transport")

MAX_LINKS = 512
MAX_UNPINNED_LINKS = 32
_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class LinkTable:
    """The links of one transport, by peer address. ``flush(link, now)`` sends what a link
    queued (the transport's); ``add_reader(fd, callback)`` polls the resolver's answers."""

    def __init__(
        self,
        ctx: zmq.Context,
        poller: zmq.Poller,
        stats: Counter[str],
        resolver: HostResolver,
        *,
        keys: CurveKeys | None,
        max_bytes: int,
        flush: Callable[[Link, float], None],
        add_reader: Callable[[Any, Callable[[], None]], None],
    ) -> None:
        self.ctx = ctx
        self.poller = poller
        self.stats = stats
        self.resolver = resolver
        self.keys = keys
        self.max_bytes = max_bytes
        self._flush = flush
        self._add_reader = add_reader
        self.resolver_polled = False
        self.relinker = Relinker(resolver)  # links to names whose peer moved
        self.now = 0.0  # the last poll's (when a link is opened: down since then)
        self.links: dict[str, Link] = {}  # least recently used first
        self.pinned: set[str] = set()  # addresses whose links are never evicted for strangers
        self.by_socket: dict[zmq.Socket, tuple[str, str]] = {}
        self._mon_fd: dict[zmq.Socket, int] = {}  # monitors are polled by their ZMQ_FD
        self.fd_mon: dict[int, zmq.Socket] = {}

    def attach(self, link: Link) -> bool:
        """Connect the link's sockets once its host has an address (asked of the resolver: an
        IP literal at once, a name from its cache or later, see :meth:`on_resolved`); False
        if ZeroMQ rejects the endpoint."""
        host, _, port = link.address.rpartition(":")
        ip = self.resolver.resolve(host, urgent=link.address in self.pinned)
        if ip is None:
            if not self.resolver_polled:  # from the first name on: its answers wake the poll
                self.resolver_polled = True
                self._add_reader(self.resolver.fileno(), self.on_resolved)
            return True
        endpoint = f"tcp://{ip}:{port}"
        try:
            link.dealer.connect(endpoint)
            if link.req is not None:
                link.req.connect(endpoint)
        except zmq.ZMQError as exc:
            self.stats["bad_address"] += 1
            log.debug("cannot connect to %r (%s): %s", link.address, endpoint, exc)
            return False
        link.endpoint = endpoint
        if not link.connected:  # its name is asked again if that lasts (clerk._links)
            self.relinker.down(link.address, self.now)
        return True

    def is_pinned(self, address: str) -> bool:
        return address in self.pinned

    def endpoint_of(self, address: str) -> str | None:
        link = self.links.get(address)
        return None if link is None else link.endpoint

    def check_relinks(self, now: float) -> None:
        """Links to names down a while: their names asked again, and moved if they moved."""
        if self.relinker.due(now):
            for address, ip in self.relinker.check(now, self.endpoint_of, self.is_pinned):
                self.relink(address, ip, now)

    def relink(self, address: str, ip: str, now: float) -> None:
        """Move the link to ``address`` (down, its host a name) to its name's new ``ip``
        (what its queue keeps, and why, is in :mod:`clerk._links`)."""
        link = self.links.get(address)
        if link is None or link.endpoint is None or link.connected:
            return
        old = link.endpoint
        new = f"tcp://{ip}:{address.rpartition(':')[2]}"
        try:
            link.dealer.disconnect(old)
        except zmq.ZMQError:  # (not connected to it any more: nothing to undo)
            pass
        try:
            link.dealer.connect(new)
        except zmq.ZMQError as exc:
            self.stats["bad_address"] += 1
            log.debug("cannot connect to %r (%s): %s", address, new, exc)
            self.forget(address)
            return
        link.endpoint = new
        if link.req is not None:
            self.new_req(link)  # connects to link.endpoint
        self.relinker.up(address)
        self.relinker.down(address, now)  # down since now: its next look-up in RELINK_AFTER
        self.stats["relinked"] += 1
        log.info("peer %s moved from %s to %s: relinked", address, endpoint_ip(old), ip)

    def on_resolved(self) -> None:
        """Answers from the resolver: connect the links that wait for them (their queued
        messages go once the connection is up, as for any new link)."""
        for host, ip in self.resolver.answers():
            for link in list(self.links.values()):
                if link.endpoint is None and link.address.rpartition(":")[0] == host:
                    if not self.attach(link):
                        self.forget(link.address)
            for address, new in self.relinker.answered(host, ip, self.endpoint_of):
                self.relink(address, new, self.now)

    def _monitor(self, sock: zmq.Socket, address: str, role: str,
                 watch: bool = True) -> zmq.Socket:
        mon = sock.get_monitor_socket(_MONITORED)
        self.by_socket[mon] = (address, role)
        try:  # empty: arms the FD (see clerk._transport's docstring); not connected yet
            while True:
                mon.recv_multipart(zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        fd = int(mon.getsockopt(zmq.FD))
        self._mon_fd[mon] = fd
        self.fd_mon[fd] = mon
        if watch:
            self.poller.register(fd, zmq.POLLIN)
        return mon

    def _poll_key(self, sock: zmq.Socket) -> Any:
        return self._mon_fd.get(sock, sock)

    def link(self, address: str) -> Link | None:
        """The link to ``address``, opened if need be; None if ZeroMQ rejects the address
        (it comes from a message: without CURVE, anything can be written there)."""
        link = self.links.pop(address, None)
        if link is None:
            if not valid_address(address):
                self.stats["bad_address"] += 1
                log.debug("not an address: %r", address)
                return None
            self._make_room(address)
            dealer = self.ctx.socket(zmq.DEALER)
            secure(dealer, self.max_bytes, self.keys)
            mon = self._monitor(dealer, address, "dealer")
            link = Link(address, dealer, mon)
            if not self.attach(link):
                self.drop_socket(mon)
                self.drop_socket(dealer)
                return None
            self.stats["links_opened"] += 1
        elif link.endpoint is None:
            self.attach(link)  # its name still unresolved: asked again (its retry is due?)
        self.links[address] = link  # most recently used last
        return link

    def _make_room(self, address: str) -> None:
        """Close the least recently used link(s) so that opening one to ``address`` stays
        within ``MAX_UNPINNED_LINKS`` (for an unpinned address) and ``MAX_LINKS``."""
        if address not in self.pinned:
            unpinned = [a for a in self.links if a not in self.pinned]
            for victim in unpinned[:max(0, len(unpinned) - MAX_UNPINNED_LINKS + 1)]:
                self.forget(victim)
                self.stats["links_evicted"] += 1
        while len(self.links) >= MAX_LINKS:
            self.forget(next(iter(self.links)))
            self.stats["links_evicted"] += 1

    def new_req(self, link: Link) -> None:
        """A new REQ for ``link`` (the first, or one to replace a REQ still waiting)."""
        if link.req is not None:
            self.drop_socket(link.req)
            self.drop_socket(link.req_mon)
        req = self.ctx.socket(zmq.REQ)
        secure(req, self.max_bytes, self.keys)
        link.req_mon = self._monitor(req, link.address, "req", watch=False)
        if link.endpoint is not None:  # (otherwise connected with the DEALER: attach)
            req.connect(link.endpoint)
        self.by_socket[req] = (link.address, "req-data")
        link.req = req
        link.req_busy = False
        link.req_watched = False

    def watch_req(self, link: Link, on: bool, now: float) -> None:
        """Put the link's REQ and its monitor in the poller (``on``) or take them out; the
        monitor's queued events are read either way, so none is handled out of order."""
        if link.req is None or link.req_mon is None or link.req_watched == on:
            return
        # No flush from here: watch_req runs inside flush and request(), which send next.
        self.drain_monitor(link.req_mon, link.address, "req", [], now, flush=False)
        for sock in (link.req, link.req_mon):
            if on:
                self.poller.register(self._poll_key(sock), zmq.POLLIN)
            else:
                self.poller.unregister(self._poll_key(sock))
        link.req_watched = on

    def drop_socket(self, sock: zmq.Socket | None) -> None:
        if sock is None:
            return
        try:
            self.poller.unregister(self._poll_key(sock))
        except KeyError:
            pass
        self.by_socket.pop(sock, None)
        fd = self._mon_fd.pop(sock, None)
        if fd is not None:
            self.fd_mon.pop(fd, None)
        if not sock.closed:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            sock.close(linger=0)

    def forget(self, address: str) -> None:
        """Close the sockets to a peer that left for good."""
        link = self.links.pop(address, None)
        self.relinker.up(address)
        if link is None:
            return
        for sock in (link.dealer, link.dealer_mon, link.req, link.req_mon):
            self.drop_socket(sock)

    def drain_monitor(
        self, mon: zmq.Socket, address: str, role: str, out: list[Inbound], now: float,
        flush: bool = True,
    ) -> None:
        """Read a monitor's events: a link up (its queue flushed unless not ``flush``) or
        down (``down`` in ``out``: the crashed-process fast path), a failed handshake."""
        while True:
            try:
                kind = monitor_event(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if kind is None:
                continue
            link = self.links.get(address)
            if kind == zmq.EVENT_DISCONNECTED:
                if link is not None:
                    link.connected = False
                if role == "dealer":  # one event per peer is enough
                    if link is not None and link.endpoint is not None:
                        self.relinker.down(address, now)
                    self.stats["peer_disconnects"] += 1
                    out.append(Inbound("down", address=address))
            elif kind in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                if link is not None:
                    link.connected = True
                    if role == "dealer":
                        self.relinker.up(address)
                    if link.pending and flush:
                        self._flush(link, now)
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and role == "dealer":
                    out.append(Inbound("up", address=address))
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.stats["handshake_failed"] += 1
                log.warning("handshake with %s failed: different cookie, or not a clerk node?",
                            address)
