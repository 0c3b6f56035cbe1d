"""The node's ZeroMQ shell: one ROUTER mailbox, DEALER and REQ sockets to peers, monitors.

Only the agent's loop thread touches these sockets (one loop, one poller per process).

* **ROUTER** bound at ``tcp://host:port``: every inbound message. A frame list that starts
  with an empty delimiter came from a REQ socket and must be answered through the ROUTER
  (``reply``); anything else came from a DEALER.
* **DEALER** per peer address, created on first use: everything but elections.
* **REQ** per peer address: ELECTION, answered by OK (Lazy Pirate: a REQ still waiting for an
  answer when the next request is due is closed and recreated, since a REQ cannot send twice).
* A **monitor** per outgoing socket turns a closed connection into a ``down`` event at once
  (the crashed-process fast path) and a completed one into a flush of messages queued while
  the connection was being set up (sockets use ``IMMEDIATE`` so nothing queues for a dead
  peer; the shell keeps a short, expiring queue instead).
* **Polled only while in use.** ``zmq_poll`` costs ~0.85 µs per socket per call, and the
  manager's loop polls a few hundred times a second (every acknowledgement wakes it): with a
  REQ and two monitors per peer that was O(members) per wake-up, O(members²) per second. A
  DEALER's monitor (the crash fast path) is always polled; a REQ and its monitor only from a
  ``request`` until its answer came (or the request was replaced), since nothing else can
  arrive on them. Their monitor events meanwhile wait in its queue and are read in order
  when the REQ is next watched or stops being watched. A monitor is polled through its
  ``ZMQ_FD`` (a plain file descriptor: one ``pollfd`` for the kernel, no ZeroMQ call per
  poll), which is sound because the monitor is read until ``EAGAIN`` once at its creation
  (before its socket connects: nothing to lose) and after every readiness: only a read that
  found its pipe empty makes ZeroMQ signal the descriptor for the next event (without the
  first read, a DEALER's monitor never signalled, and a crash was only seen by silence).
* With CURVE, a **ZAP** handler on the same loop admits only clients with the cluster key
  (:mod:`clerk._zap`).

``LINGER 0`` everywhere (but the DEALERs of a node that left gracefully: ``FINAL_LINGER_MS``,
so its last messages still go); ``MAXMSGSIZE`` makes ZeroMQ drop (and disconnect) oversized
input.

**Recovery after a heal**: every TCP socket is tuned by :func:`clerk._sockopts.tune`
(user timeout, ZeroMQ heartbeats, connect and handshake timeouts, keepalive; the reasons are
there).

**Bounded sockets.** Addresses come from messages (a JOIN's sender, a stale claim's holder), and
without CURVE anyone can write any address there. Links to addresses the agent has not
*pinned* (live members, seeds) are capped at ``MAX_UNPINNED_LINKS`` and all links at
``MAX_LINKS``; the least recently used one is closed to make room (``links_evicted``). A REQ
socket is only opened for addresses that get elections (``connect`` or ``request``), so a link
opened to answer a stranger costs one DEALER. Opening links to unpinned addresses is also
rate-limited (``NEW_LINK_RATE`` a second, bursts of ``NEW_LINK_BURST``; ``send_to_stranger_
dropped``): a flood of forged senders must not keep the loop busy opening and closing sockets
while tasks are due. A real joiner that loses its WELCOME this way retries its JOIN.

**Host names** in addresses are resolved off the loop (:mod:`clerk._dns`): a link to a name
not resolved yet is opened without a connection, its messages wait in its queue as for a
peer not connected yet, and it connects once the answer is in (``ZeroMQ`` is only ever given
IP addresses, so its own I/O thread never blocks on a lookup either). IP literals and
``localhost`` connect at once. An address that is not ``host:port`` is refused before any
lookup (``bad_address``). A link to a name whose peer is not reached follows the name to a
new IP (``relinked``, :mod:`clerk._links`).

The links' life cycle (open, connect, relink, evict, their monitors) is
:class:`clerk._linktable.LinkTable`'s; this module sends, queues and polls.
"""

from __future__ import annotations

import logging
import select
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from clerk._codec import MAX_MESSAGE_BYTES
from clerk._config import resolve_host
from clerk._dns import HostResolver
from clerk._frames import NOBLOCK, readable, recv_frames, send_frames, wait_readable
from clerk._links import Inbound, Link, Relinker
from clerk._linktable import MAX_LINKS, MAX_UNPINNED_LINKS, LinkTable
from clerk._security import CurveKeys
from clerk._sockopts import tune
from clerk._zap import ZAP_ENDPOINT, answer_zap

__all__ = ["FINAL_LINGER_MS", "MAX_LINKS", "MAX_UNPINNED_LINKS", "Inbound", "Transport",
           "resolve_host", "tune"]

log = logging.getLogger("clerk.transport")

PENDING_MAX = 64
NEW_LINK_RATE = 50.0
DRAIN_MESSAGES = 1000
#: Inbound queue per connection, in messages. With MAXMSGSIZE this bounds what one peer can
#: make a node hold (a flood of 1 MB frames: 1000 x 1 MB, and then ZeroMQ stops reading that
#: peer's connection: back-pressure on the flooder only). Protocol traffic needs far less.
RCVHWM = 1000
DRAIN_BYTES = 4 << 20
NEW_LINK_BURST = 100.0
#: On a graceful stop, how long the last messages queued on the DEALERs may still take to
#: leave (ms). The agent hands its last RESULT, ACKs or hand-over to ZeroMQ just before it
#: closes; with LINGER 0 ZeroMQ dropped what its I/O thread had not written yet, and a full
#: stop lost a run's result now and then. Bounded: a peer that is gone costs this much once.
FINAL_LINGER_MS = 200
PENDING_TTL = 1.0

class Transport:
    """Sockets of one node. ``poll`` returns inbound traffic; ``send``/``request``/``reply``
    send. Counters in ``stats`` feed ``clerk status``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        keys: CurveKeys | None,
        max_bytes: int = MAX_MESSAGE_BYTES,
        resolver: HostResolver | None = None,
    ) -> None:
        """``resolver``: host names' lookups (tests pass one with a fake lookup); its
        counters become the transport's (``resolve_*`` in ``stats``)."""
        self.keys = keys
        self.max_bytes = max_bytes
        self.stats: Counter[str] = Counter()
        self.resolver = resolver if resolver is not None else HostResolver()
        self.resolver.stats = self.stats
        self.router_ready = False  # poll(router=False) saw messages in the mailbox
        self.ctx = zmq.Context()
        self._tokens = NEW_LINK_BURST  # token bucket for links to unpinned addresses
        self._tokens_at = 0.0
        self.poller = zmq.Poller()
        self.table = LinkTable(self.ctx, self.poller, self.stats, self.resolver, keys=keys,
                               max_bytes=max_bytes, flush=self._flush,
                               add_reader=self.add_reader)
        self._links = self.table.links  # (the same dict: tests look links up in it)
        self._readers: dict[Any, Callable[[], None]] = {}
        #: The readers that are plain descriptors (a worker's link, the wake-up pipe), also
        #: in a poll set of their own: ``poll_readers`` asks the kernel about them alone.
        self._fd_poll = select.poll()
        self.zap: zmq.Socket | None = None
        if keys is not None:
            self.zap = self.ctx.socket(zmq.REP)
            self.zap.linger = 0
            self.zap.bind(ZAP_ENDPOINT)
            self.poller.register(self.zap, zmq.POLLIN)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.maxmsgsize = max_bytes
        self.router.rcvhwm = RCVHWM
        self.router.sndhwm = 10_000
        tune(self.router, ping=False)
        if keys is not None:
            self.router.curve_server = True
            self.router.curve_secretkey = keys.secret
            self.router.curve_publickey = keys.public
            self.router.zap_domain = b"clerk"
        try:
            self.router.bind(f"tcp://{resolve_host(host)}:{port}")
        except Exception:
            self.close()
            raise
        self.poller.register(self.router, zmq.POLLIN)

    # --- outgoing ----------------------------------------------------------------------------

    @property
    def pinned(self) -> set[str]:
        """Addresses whose links are never evicted for strangers (live members, seeds)."""
        return self.table.pinned

    @pinned.setter
    def pinned(self, addresses: set[str]) -> None:
        self.table.pinned = addresses

    @property
    def relinker(self) -> Relinker:
        return self.table.relinker

    def connect(self, address: str, req: bool = True) -> None:
        """Open the sockets to ``address`` ahead of need (elections must not wait on TCP):
        its DEALER, and its REQ unless not ``req``."""
        link = self.table.link(address)
        if link is not None and req and link.req is None:
            self.table.new_req(link)

    def send(self, address: str, frames: list[bytes], now: float) -> None:
        """Send through the DEALER to ``address``; queued briefly if not connected yet."""
        if address not in self._links and address not in self.pinned:
            self._tokens = min(NEW_LINK_BURST,
                               self._tokens + (now - self._tokens_at) * NEW_LINK_RATE)
            self._tokens_at = now
            if self._tokens < 1.0:
                self.stats["send_to_stranger_dropped"] += 1
                return
            self._tokens -= 1.0
        link = self.table.link(address)
        if link is None:
            return
        if link.pending:
            self._flush(link, now)  # what waits goes first (see _flush)
            if any(not req for _, req, _ in link.pending):
                self._queue(link, False, frames, now)  # behind what still waits
                return
        if not self._try(link.dealer, frames):
            self._queue(link, False, frames, now)

    def request(self, address: str, frames: list[bytes], now: float) -> None:
        """Send a request (ELECTION) through the REQ to ``address``, Lazy Pirate style."""
        link = self.table.link(address)
        if link is None:
            return
        if link.req is None:
            self.table.new_req(link)
        elif link.req_busy:
            self.stats["req_recreated"] += 1
            self.table.new_req(link)
        assert link.req is not None
        self.table.watch_req(link, True, now)
        if self._try(link.req, frames):
            link.req_busy = True
        else:
            self._queue(link, True, frames, now)

    def reply(self, rid: bytes, via_req: bool, frames: list[bytes]) -> None:
        """Answer a message received on the ROUTER (``rid``), REQ-style if it came from one."""
        envelope = [rid, b""] if via_req else [rid]
        try:
            send_frames(self.router, envelope + frames, NOBLOCK)
        except zmq.ZMQError:
            self.stats["reply_dropped"] += 1

    def _try(self, sock: zmq.Socket, frames: list[bytes]) -> bool:
        try:
            send_frames(sock, frames, NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            self.stats["send_error"] += 1
            log.debug("send failed: %s", exc)
            return True  # not retryable
        self.stats["sent"] += 1
        return True

    def _queue(self, link: Link, req: bool, frames: list[bytes], now: float) -> None:
        if len(link.pending) >= PENDING_MAX:
            link.pending.pop(0)
            self.stats["send_dropped"] += 1
        link.pending.append((now, req, frames))

    def _flush(self, link: Link, now: float) -> None:
        """Send what waits for the connection, in order. The DEALER's messages keep their
        order: once one cannot go, the later ones wait behind it; and :meth:`send` queues
        behind them. (ZeroMQ connects in its own thread, so a connection can come up between
        two polls; a message sent then went straight out, ahead of those queued before it: a
        node's first JOIN, without its tasks, reached the manager after its second, issue 11.)
        """
        keep: list[tuple[float, bool, list[bytes]]] = []
        blocked = False  # a DEALER message is kept: the later ones wait behind it
        for queued_at, req, frames in link.pending:
            if now - queued_at > PENDING_TTL:
                self.stats["send_dropped"] += 1
                continue
            if not req and blocked:
                keep.append((queued_at, req, frames))
                continue
            if req:
                if link.req_busy or link.req is None:
                    self.table.new_req(link)
                assert link.req is not None
                self.table.watch_req(link, True, now)
                if self._try(link.req, frames):
                    link.req_busy = True
                    continue
            elif self._try(link.dealer, frames):
                continue
            else:
                blocked = True
            keep.append((queued_at, req, frames))
        link.pending = keep

    def forget(self, address: str) -> None:
        """Close the sockets to a peer that left for good."""
        self.table.forget(address)

    def peers(self) -> list[str]:
        return list(self._links)

    def add_reader(self, sock: Any, callback: Callable[[], None]) -> None:
        """Poll another socket (or fd) of this thread in the same loop; ``callback`` drains it."""
        self._readers[sock] = callback
        self.poller.register(sock, zmq.POLLIN)
        if type(sock) is int:
            self._fd_poll.register(sock, select.POLLIN)

    def remove_reader(self, sock: Any) -> None:
        if self._readers.pop(sock, None) is not None:
            self.poller.unregister(sock)
            if type(sock) is int:
                self._fd_poll.unregister(sock)

    def poll_readers(self) -> bool:
        """Without waiting, call the callbacks of the plain-descriptor readers that have
        input now (one ``poll`` system call, no ZeroMQ socket asked); True if any had.
        The agent's loop asks this between two mailbox messages, right after it handed a run
        to a worker: the worker usually wrote its DONE before the loop got its CPU back (its
        link's wake-up runs it on the loop's core), and its result is then sent without
        waiting for the next poll (clerk._agent.Agent._results_now)."""
        ready = self._fd_poll.poll(0)
        readers = self._readers
        for fd, _ in ready:
            callback = readers.get(fd)
            if callback is not None:
                callback()
        return bool(ready)

    # --- incoming ----------------------------------------------------------------------------

    def mailbox_waiting(self) -> bool:
        """Has the mailbox a message that can be received now (``ZMQ_EVENTS``)?"""
        return readable(self.router)

    def poll(self, timeout_ms: int, now: float, router: bool = True) -> list[Inbound]:
        """Wait up to ``timeout_ms`` for traffic and return everything ready. With
        ``router=False`` the mailbox is not read here: :attr:`router_ready` says whether it
        has messages, and :meth:`receive` reads them as the caller asks for them."""
        out: list[Inbound] = []
        self.router_ready = False
        table = self.table
        table.now = now
        table.check_relinks(now)  # links to names down a while: their names asked again
        for link in list(self._links.values()):
            if link.pending:
                self._flush(link, now)
        ready = dict(self.poller.poll(timeout_ms))
        stats = self.stats
        stats["polls"] += 1  # per run, with the loop's turns: tools/bench_tasks.py (c)
        if not ready:
            stats["polls_empty"] += 1  # a timer woke the loop (or a zero-timeout poll)
        for key in ready:
            if key in self._readers:
                self._readers[key]()
                continue
            sock: zmq.Socket | None = table.fd_mon.get(key) if isinstance(key, int) else key
            if sock is None:
                continue
            if sock is self.router:
                if router:
                    out.extend(self.receive())
                else:
                    self.router_ready = True
            elif sock is self.zap:
                self._answer_zap()
            else:
                address, role = table.by_socket.get(sock, ("", ""))
                if role == "req-data":
                    self._drain_req(sock, address, out, now)
                elif role in ("dealer", "req"):
                    table.drain_monitor(sock, address, role, out, now)
        return out

    def wait(self, seconds: float) -> bool:
        """After a :meth:`poll` that found nothing: block up to ``seconds`` (under a ms) or
        until something polled may have input (True: the next poll says what), see
        :func:`clerk._frames.wait_readable`."""
        return wait_readable([item for item, _ in self.poller.sockets], seconds)

    def receive(self) -> Iterator[Inbound]:
        """The messages waiting in the mailbox, each received from ZeroMQ only when the caller
        asks for the next: a caller that stops (its turn's time is up, see clerk._agent)
        leaves the rest queued in ZeroMQ, in order, for the next turn. Nothing is received
        that the caller does not handle before it stops."""
        # Bounded in messages and in bytes, so that a flood (of 1 MB frames, say) cannot keep
        # the loop from its timers: due tasks and heartbeats get a turn every DRAIN_BYTES.
        size = 0
        stats = self.stats
        router = self.router
        for i in range(DRAIN_MESSAGES):
            # Asked before every receive but the first (the poll said there is one): a drain
            # no longer ends on a raised zmq.Again (clerk._frames.readable).
            if size > DRAIN_BYTES or (i and not readable(router)):
                return
            try:
                frames = recv_frames(router, NOBLOCK)
            except zmq.Again:
                return
            stats["received"] += 1  # ZeroMQ messages (a batch is one: clerk._batch)
            size += sum(len(f) for f in frames)
            rid, rest = frames[0], frames[1:]
            if rest and rest[0] == b"":
                yield Inbound("message", rest[1:], rid, True)
            else:
                yield Inbound("message", rest, rid, False)

    def _drain_req(self, sock: zmq.Socket, address: str, out: list[Inbound],
                   now: float) -> None:
        link = self._links.get(address)
        try:
            frames = recv_frames(sock, NOBLOCK)
        except zmq.ZMQError:
            return
        if link is not None and link.req is sock:
            link.req_busy = False
            if not any(req for _, req, _ in link.pending):
                self.table.watch_req(link, False, now)
        out.append(Inbound("message", frames, None, False, address))

    def _answer_zap(self) -> None:
        assert self.zap is not None and self.keys is not None
        if answer_zap(self.zap, self.keys.public) is False:
            self.stats["auth_rejected"] += 1

    def close(self, linger_ms: int = 0) -> None:
        """Close every socket. ``linger_ms``: how long the DEALERs' last messages may still
        take to leave (a graceful stop: see ``FINAL_LINGER_MS``); 0 drops them."""
        if linger_ms:
            for link in self._links.values():
                link.dealer.linger = linger_ms
                link.dealer.close(linger=linger_ms)
        for address in list(self._links):
            self.forget(address)
        for sock in (getattr(self, "router", None), self.zap):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if self.table.resolver_polled:
            self.remove_reader(self.resolver.fileno())
        self.resolver.close()
        self.ctx.term()

