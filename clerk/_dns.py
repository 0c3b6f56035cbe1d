"""Host names of peer addresses, resolved off the node's loop.

A link's address comes from a message (a JOIN's sender, a member list, a relayed WELCOME), and
a host name there used to be looked up with ``socket.gethostbyname`` on the agent's loop, once
per new link: 0.4-17 ms with a resolver that answers, seconds with one that cannot be reached,
during which no heartbeat, dispatch or election timer ran. A flood of forged JOINs naming
distinct host names (``--insecure``, or any member with CURVE on) was a flood of such stalls.
Host names are legitimate node addresses (``name@host``), so they are resolved here instead:

* **IP literals and ``localhost``** are answered at once, on the caller's thread (the common
  case: no thread hop, no system call). ``localhost`` is ``127.0.0.1``.
* **Any other name** is answered from a cache or queued for a worker thread (``WORKERS``);
  :meth:`HostResolver.resolve` returns None meanwhile and the caller asks again (or waits for
  :meth:`HostResolver.answers`, announced by :meth:`HostResolver.fileno` turning readable).
* **Bounded.** At most ``QUEUE_MAX`` names wait for a worker; past ``QUEUE_MAX -
  URGENT_RESERVE`` only *urgent* names (the addresses of live members and seeds) are queued,
  and they go first; any other is refused (``resolve_refused``: not remembered, asked again
  later). The cache holds ``CACHE_MAX`` names, least recently used evicted first (failed
  names before answered ones); a name is looked up at most once per ``CACHE_TTL`` while it
  resolves, and with a backoff from ``RETRY_MIN`` doubling to ``RETRY_MAX`` while it fails
  (``URGENT_RETRY_MAX`` for a member's or seed's name: a seed whose DNS record appears only
  once it is up, as in a Kubernetes headless service, is found within seconds of it).
  So a flood of distinct names costs the loop a dictionary look-up each, and the resolver a
  bounded queue, whatever the system's resolver does.
* **Answers expire** after ``CACHE_TTL``; an expired answer is still served while it is looked
  up again (and kept if that fails: a resolver down does not take known peers away).
* **Asked again for a peer that cannot be reached** (:meth:`HostResolver.recheck`): a
  restarted peer may come back under its name with another IP (a Kubernetes StatefulSet, a
  cloud VM), and its link asks for the name again, before ``CACHE_TTL``, but at most once per
  ``RECHECK_MIN`` s per name (and not before a failed name's retry is due).
* **A failed name is logged once** (at most ``LOG_BURST`` names a minute; the others are
  counted in the next line).

The system's lookup is :func:`system_lookup` (``socket.gethostbyname``: IPv4, as the mailbox
binds), read at each call so a test can replace it in a node's process; unit tests pass a
fake ``lookup`` and ``workers=0`` and run the queue themselves (:meth:`HostResolver.work`).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CACHE_MAX", "CACHE_TTL", "LOCALHOST", "QUEUE_MAX", "RECHECK_MIN", "RETRY_MAX",
           "RETRY_MIN",
           "URGENT_RESERVE", "URGENT_RETRY_MAX", "WORKERS", "HostResolver", "literal",
           "system_lookup", "valid_address"]

log = logging.getLogger("clerk.transport")

LOCALHOST = "127.0.0.1"
#: Worker threads (started at the first name to look up). Two, so that one lookup stuck on an
#: unreachable resolver does not hold every other name; more would only help a flood.
WORKERS = 2
#: Names waiting for a worker; the last URGENT_RESERVE places are for members and seeds.
QUEUE_MAX = 32
URGENT_RESERVE = 8
#: Names remembered (answers and failures).
CACHE_MAX = 1024
#: How long an answer is used before it is looked up again (s; served meanwhile).
CACHE_TTL = 60.0
#: A failed name is looked up again after RETRY_MIN s, doubling up to RETRY_MAX.
RETRY_MIN = 1.0
RETRY_MAX = 60.0
URGENT_RETRY_MAX = 5.0
#: A name answered this long ago (s) may be looked up again for a peer that cannot be
#: reached at its answer (:meth:`HostResolver.recheck`); sooner, the answer is served as is.
RECHECK_MIN = 3.0
#: Failed names logged a minute at most (the rest counted in the next line).
LOG_BURST = 10
LOG_WINDOW = 60.0

_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
#: What a host (a name or an IPv4 address) and port of an address may be: the host part of
#: a node name (clerk._config), then a port.
_ADDRESS = re.compile(r"[A-Za-z0-9_.\-]{1,253}:\d{1,5}")


def system_lookup(host: str) -> str:
    """The system's answer for ``host`` (blocking: only ever called on a worker thread)."""
    return socket.gethostbyname(host)


def literal(host: str) -> str | None:
    """The address ``host`` stands for without a lookup (an IPv4 literal, ``localhost``), or
    None if it is a name to look up."""
    if _IPV4.fullmatch(host):
        return host if all(int(part) <= 255 for part in host.split(".")) else None
    if host.lower() == "localhost":
        return LOCALHOST
    return None


def valid_address(address: str) -> bool:
    """Is ``address`` a ``host:port`` worth connecting to (checked before any lookup, so that
    garbage from a message costs neither a lookup nor a socket)?"""
    if not _ADDRESS.fullmatch(address):
        return False
    return 0 < int(address.rpartition(":")[2]) <= 65535


@dataclass
class _Entry:
    ip: str | None  # the last answer (None: never answered)
    due: float  # when the name may be looked up again
    failures: int = 0  # in a row
    busy: bool = False  # queued or being looked up
    urgent: bool = False  # ever asked for as a member's or a seed's
    logged: bool = False  # its failure was logged
    at: float = 0.0  # when its last answer came in


class HostResolver:
    """Resolves host names off the caller's thread (see the module docstring).

    Only the owner's thread calls :meth:`resolve`, :meth:`answers` and :meth:`close`; the
    workers touch nothing but the queue and the finished answers, under a lock."""

    def __init__(
        self,
        *,
        lookup: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: int = WORKERS,
        stats: Counter[str] | None = None,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._workers = workers
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self._cache: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._urgent: deque[str] = deque()
        self._done: deque[tuple[str, str | None, str]] = deque()  # (host, ip, error)
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._log_at = -LOG_WINDOW
        self._logged = 0
        self._unlogged = 0

    # --- the owner's side ------------------------------------------------------------------

    def resolve(self, host: str, urgent: bool = False) -> str | None:
        """The IPv4 address of ``host`` now, or None: its lookup is under way (or refused, or
        failed and waiting for its retry); ask again, or wait for :meth:`answers`.
        ``urgent``: a live member's or a seed's name, queued ahead of strangers' names."""
        ip = literal(host)
        if ip is not None:
            return ip
        entry = self._cache.get(host)
        if entry is None:
            entry = _Entry(None, 0.0, urgent=urgent)
            if not self._submit(host, entry, urgent):
                return None  # not remembered: asked again next time
            self._remember(host, entry)
            return None
        self._cache.move_to_end(host)
        entry.urgent = entry.urgent or urgent
        if not entry.busy and self._clock() >= entry.due:
            self._submit(host, entry, urgent)  # expired, or its retry is due
        return entry.ip  # (an expired answer is served while it is looked up again)

    def recheck(self, host: str, urgent: bool = False) -> str | None:
        """As :meth:`resolve`, for a peer that cannot be reached at the address ``host`` had:
        an answer older than ``RECHECK_MIN`` s is looked up again now rather than at its
        expiry (a failed name keeps its backoff). The answer in hand is returned meanwhile;
        the new one comes through :meth:`answers`."""
        entry = self._cache.get(host)
        if entry is not None and entry.ip is not None and not entry.failures:
            entry.due = min(entry.due, entry.at + RECHECK_MIN)
        return self.resolve(host, urgent)

    def fileno(self) -> int:
        """A descriptor that turns readable when answers are in (poll it, then call
        :meth:`answers`)."""
        return self._wake()[0].fileno()

    def answers(self) -> list[tuple[str, str]]:
        """Take the finished lookups into the cache; the names that have an address now, with
        it (``(host, ip)``), for links that wait for them."""
        rd, _ = self._wake()
        try:
            while rd.recv(512):
                pass
        except OSError:  # drained (BlockingIOError), or closed
            pass
        with self._cond:
            done = list(self._done)
            self._done.clear()
        now = self._clock()
        out: list[tuple[str, str]] = []
        for host, ip, error in done:
            entry = self._cache.get(host)
            if entry is None:  # evicted while looked up (cannot happen: busy ones are kept)
                entry = _Entry(None, 0.0)
                self._remember(host, entry)
            entry.busy = False
            if ip is not None:
                self.stats["resolve_ok"] += 1
                if entry.failures and entry.logged:
                    log.info("host name %r resolves again: %s", host, ip)
                entry.ip, entry.due, entry.failures, entry.logged = ip, now + CACHE_TTL, 0, False
                entry.at = now
                out.append((host, ip))
                continue
            self.stats["resolve_failed"] += 1
            entry.failures += 1
            cap = URGENT_RETRY_MAX if entry.urgent else RETRY_MAX
            entry.due = now + min(cap, RETRY_MIN * 2 ** min(entry.failures - 1, 16))
            if not entry.logged:
                entry.logged = True
                self._log_failure(host, error, entry.ip, now)
        return out

    def close(self) -> None:
        """Stop the workers (a lookup under way finishes in its thread, its answer unread)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._urgent.clear()
            self._cond.notify_all()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()

    def _submit(self, host: str, entry: _Entry, urgent: bool) -> bool:
        with self._cond:
            if self._closed:
                return False
            waiting = len(self._queue) + len(self._urgent)
            if waiting >= (QUEUE_MAX if urgent else QUEUE_MAX - URGENT_RESERVE):
                self.stats["resolve_refused"] += 1
                return False
            (self._urgent if urgent else self._queue).append(host)
            self._cond.notify()
        entry.busy = True
        self.stats["resolve_queued"] += 1
        self._wake()
        while len(self._threads) < self._workers:
            t = threading.Thread(target=self._work_loop, name=f"clerk-dns-{len(self._threads)}",
                                 daemon=True)
            self._threads.append(t)
            t.start()
        return True

    def _remember(self, host: str, entry: _Entry) -> None:
        cache = self._cache
        cache[host] = entry
        if len(cache) <= CACHE_MAX:
            return
        # Failed names go first (a flood's), then the least recently used answer; never one
        # whose lookup is under way (at most QUEUE_MAX + WORKERS of them).
        victim = next((h for h, e in cache.items() if e.ip is None and not e.busy), None)
        if victim is None:
            victim = next((h for h, e in cache.items() if not e.busy), None)
        if victim is not None:
            del cache[victim]

    def _log_failure(self, host: str, error: str, stale: str | None, now: float) -> None:
        if now - self._log_at >= LOG_WINDOW:
            self._log_at, self._logged = now, 0
        if self._logged >= LOG_BURST:
            self._unlogged += 1
            return
        self._logged += 1
        more = (f" ({self._unlogged} other host name(s) failed meanwhile, not logged)"
                if self._unlogged else "")
        self._unlogged = 0
        keep = f"; still using {stale}" if stale is not None else ""
        log.warning("cannot resolve host name %r: %s (retried with backoff%s)%s",
                    host, error, keep, more)

    def _wake(self) -> tuple[socket.socket, socket.socket]:
        if self._wake_r is None or self._wake_w is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        return self._wake_r, self._wake_w

    # --- the workers' side -----------------------------------------------------------------

    def work(self) -> bool:
        """Look up one queued name on this thread (tests with ``workers=0``); False if none."""
        with self._cond:
            host = self._next()
        if host is None:
            return False
        self._finish(host)
        return True

    def _next(self) -> str | None:
        if self._urgent:
            return self._urgent.popleft()
        if self._queue:
            return self._queue.popleft()
        return None

    def _work_loop(self) -> None:
        while True:
            with self._cond:
                host = self._next()
                while host is None and not self._closed:
                    self._cond.wait()
                    host = self._next()
                if self._closed:
                    return
            assert host is not None
            self._finish(host)

    def _finish(self, host: str) -> None:
        lookup = self._lookup or system_lookup  # (the module's, as it is now: see above)
        ip: str | None = None
        error = ""
        try:
            ip = lookup(host)
        except (OSError, UnicodeError) as exc:  # (a label over 63 characters: UnicodeError)
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # a worker never dies of a lookup
            error = repr(exc)
        with self._cond:
            if self._closed:
                return
            self._done.append((host, ip, error))
            try:
                if self._wake_w is not None:
                    self._wake_w.send(b"x")
            except OSError:  # full: the owner is due to read anyway
                pass

