"""A deterministic simulated network that runs the real :class:`~clerk._core.NodeCore`.

Everything (message delay and jitter, loss, crashes, restarts, pauses, partitions) is driven by
one seeded ``random.Random`` and one event queue ordered by ``(time, sequence)``, so the same
seed gives the same trace, event for event. Used by ``tools/simulate.py`` and the property
tests; the cores are the very classes the real node runs, not copies.

Model of the transport, kept close to ZeroMQ over TCP:

* a message arrives after ``delay + uniform(0, jitter)`` seconds unless it is lost (``loss``),
  crosses a partition, or its destination is down. Two messages on one link may overtake each
  other (a stricter network than the real one); with ``fifo = True`` they arrive in the order
  they were sent, as over the one ZeroMQ connection between two real nodes;
* a crashed node's open connections close: every live node that exchanged messages with it
  gets a ``PeerDown`` for its address after one delay (the socket-monitor fast path);
* a paused node receives nothing and runs no timers; what arrived meanwhile is delivered when
  it resumes, in order, at the resume time (like a SIGSTOPped process's socket buffers), and
  then its timers run (``resume(timers_first=True)``: before, as the real loop does when its
  deadlines passed during the pause);
* quorum mode (``voters=``): a voter's ``VoterWrite`` is its *disk*: applied at once (its
  ``then`` sends leave right after), kept across a crash and handed to the restarted core;
* ``crash(name, silent=True)`` models a death nobody is told about (a host that vanishes, a
  cable pulled): no ``PeerDown`` anywhere, only silence; ``inject`` then lets a test hand a
  ``PeerDown`` (or any event) to exactly the nodes it chooses;
* ``add_node(key, as_name=name)`` starts a second node that calls itself ``name`` (a
  duplicate name: another process with the same configuration on another host) under its
  own ``key`` and address; ``link_delay(src, dst, msg)`` adds seconds to a message's delay
  (a link that is slow to come up: connection set-up and handshakes on a loaded machine);
* ``max_bytes``: a HANDOVER or OFFER over it (encoded by the real codec) is dropped, as the
  real node does not send a message over its 1 MiB limit; the cores and the ledger layer cut
  their tables in parts for it (in the real proportion), so a small table in the simulator
  travels in parts as a 10,000-task one does on a real cluster;
* partitions, one-way and selective cuts, a link down and up again, and ``heal``: the rules
  are in :mod:`clerk._simlinks` (:class:`~clerk._simlinks.LinkFaults`, a part of
  :class:`SimNetwork`).

A *layer* (``SimNetwork(layer=factory)``) runs above each node's core, as the real node's task
layer does: it sees every event and effect, may send messages, and has its own deadlines.
:mod:`clerk._simtasks` is the one that runs the real Scheduler with a ledger task and a
simulated data directory. Without a layer nothing changes (the traces of the scenarios in
``tools/simulate.py`` stay what they were).

``observers`` are called after every event a node handles, with the node, the event and the
effects; the property tests use them to check invariants (terms never decrease, no EXECUTE
from a stale claim) at every step rather than only at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from clerk._clockskew import CLOCK_MARK
from clerk._codec import MAX_MESSAGE_BYTES, EncodeError, encode
from clerk._core import (
    Effect,
    Event,
    LeaveRequested,
    ManagerChanged,
    NodeCore,
    PeerDown,
    Received,
    Role,
    Send,
    Start,
    Tick,
    VoterWrite,
)
from clerk._messages import (
    HANDED_MARK,
    HIST_MARK,
    MERGE_MARK,
    PARTS_MARK,
    TABLE_MARK,
    Coordinator,
    Handover,
    Merged,
    Message,
    Offer,
    Peer,
    Result,
    TasksQuery,
    TasksReply,
)
from clerk._replica import HANDOVER_WHOLE_CHARS
from clerk._simlinks import PENDING_TTL_S, LinkFaults
from clerk._simnode import SimLayer, SimNode
from clerk._tasksets import DIGEST_MARK, by_digest, with_entries
from clerk._timings import Timings

__all__ = ["PENDING_TTL_S", "SimLayer", "SimNetwork", "SimNode"]



class SimNetwork(LinkFaults):
    """A simulated cluster. Add nodes, inject faults, run, and inspect agreement."""

    def __init__(
        self,
        seed: int = 0,
        *,
        delay: float = 0.0005,
        jitter: float = 0.0005,
        loss: float = 0.0,
        timings: Timings | None = None,
        layer: Callable[[SimNetwork, SimNode], SimLayer] | None = None,
        voters: tuple[str, ...] = (),
        max_bytes: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        #: A HANDOVER or OFFER (the messages that carry a table) whose encoding (the real
        #: codec) is over this is dropped and counted (``too_big``), as a real node does not
        #: send a message over its limit; the cores cut their tables for it (``part_chars``,
        #: in the real proportion to the 1 MiB limit). None: no limit (as before).
        self.max_bytes = max_bytes
        self.too_big = 0
        #: What was dropped as too big: (message kind, the sender's role then: ``LEAVING``
        #: for a graceful hand-over, ``FOLLOWER`` for a merge's that stepped down).
        self.too_big_kinds: Counter[tuple[str, str]] = Counter()
        self.voters = tuple(voters)
        self.layer_factory = layer
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.timings = timings or Timings()
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self._by_address: dict[str, SimNode] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._links: dict[str, set[str]] = {}
        self._groups: dict[str, int] | None = None
        self.deaf: set[str] = set()  # nodes that receive nothing (one-way cuts) until heal
        #: Selective cuts until heal: a message is dropped if any says so (:meth:`cut_where`).
        self.cuts: list[Callable[[str, str, Message], bool]] = []
        self.down: set[tuple[str, str]] = set()  # links down (src, dst): :meth:`link_down`
        #: What waits for a link that is down: (when sent, the sender's core, the send).
        self._waiting: dict[tuple[str, str], list[tuple[float, NodeCore, Send]]] = {}
        #: Per-link order, as the real transport keeps it (see the module docstring).
        self.fifo = False
        self._link_last: dict[tuple[str, str], float] = {}
        self.whole_since = 0.0  # when the network was last healed (or built)
        self.sent: Counter[str] = Counter()
        self.dropped = 0
        self.trace: list[tuple[float, str, str]] = []
        #: Nodes of an older build (no ``MERGE_MARK``: never sent MERGED, never send it;
        #: no ``TABLE_MARK``: sent no COORDINATOR table; no
        #: ``DIGEST_MARK``: member lists with every entry, no TASKS_QUERY), by name.
        self.older: set[str] = set()
        #: A member list by digest that reached a node of an older build (its codec refuses
        #: it): never, if the cores choose each list's form right.
        self.too_new = 0
        #: The tasks a node announces at each start (a deploy: a restart with others);
        #: None: its layer's (none without a layer).
        self.tasks_of: Callable[[str], tuple[str, ...]] | None = None
        #: Called as ``observer(node, event, effects)`` after every event a node handles.
        self.observers: list[Callable[[SimNode, Event, list[Effect]], None]] = []
        #: Extra seconds of delay for a message ``src -> dst`` (node keys); None: none.
        self.link_delay: Callable[[str, str, Message], float] | None = None

    # --- building ---------------------------------------------------------------------------

    def add_node(
        self, name: str, *, priority: int = 0, seeds: tuple[str, ...] = (), start: bool = True,
        as_name: str = "",
    ) -> SimNode:
        """A node keyed ``name`` at ``name:7400``; ``as_name``: its core's name, if not
        ``name`` (a duplicate of another node's name, at its own address)."""
        address = f"{name}:7400"
        core = self._make_core(as_name or name, address, priority, seeds)
        node = SimNode(name, address, priority, seeds, core, as_name=as_name)
        self.nodes[name] = node
        if self.layer_factory is not None:
            node.layer = self.layer_factory(self, node)
        self._by_address[address] = node
        if start:
            self._schedule(self.now, lambda: self._feed(node, Start()))
        return node

    def _make_core(
        self, name: str, address: str, priority: int, seeds: tuple[str, ...],
        disk: dict[str, Any] | None = None,
    ) -> NodeCore:
        incarnation = f"{self.rng.getrandbits(48):012x}"
        if name not in self.older:  # (a node of an older build reads no COORDINATOR table)
            incarnation += (TABLE_MARK + DIGEST_MARK + MERGE_MARK + HANDED_MARK + HIST_MARK
                            + PARTS_MARK + CLOCK_MARK)
        extra: dict[str, Any] = {}
        if self.voters:  # (the default mode's cores are built exactly as before)
            extra = {"voters": self.voters, "voter_record": disk}
        core = NodeCore(
            Peer(name, address, incarnation, priority),
            now=self.now,
            rng=random.Random(self.rng.getrandbits(64)),
            seeds=seeds,
            timings=self.timings,
            # The tasks a node advertises: its layer's (none without a layer).
            tasks=(self.tasks_of(name) if self.tasks_of is not None
                   else tuple(getattr(self.layer_factory, "tasks", ()))),
            **extra,
        )
        if self.max_bytes is not None:
            core.part_chars = self.max_bytes * HANDOVER_WHOLE_CHARS // MAX_MESSAGE_BYTES
            core.message_bytes = self.max_bytes
        return core

    # --- faults -----------------------------------------------------------------------------

    def crash(self, name: str, *, silent: bool = False) -> None:
        """Kill ``name``. Its peers get a ``PeerDown`` after one delay (the connection closes),
        unless ``silent``: then nobody is told and only silence reveals the death."""
        node = self.nodes[name]
        if not node.up:
            return
        node.up = False
        node.paused = False
        node.backlog.clear()
        self.trace.append((self.now, name, "crash silent" if silent else "crash"))
        for other_name in sorted(self._links.pop(name, set())):
            other = self.nodes[other_name]
            self._links.get(other_name, set()).discard(name)
            if not silent:
                self._schedule(self.now + self.delay,
                               functools.partial(self._feed, other, PeerDown(node.address)))

    def inject(self, name: str, event: Event) -> None:
        """Hand ``event`` to node ``name`` now (e.g. a ``PeerDown`` only it observes)."""
        self.trace.append((self.now, name, f"inject {type(event).__name__}"))
        self._feed(self.nodes[name], event)

    def restart(self, name: str) -> None:
        """Start a crashed (or stopped) node again with a new incarnation. A node that left
        and whose process has not exited yet (``SimLayer.exits_at``) is started once it has."""
        node = self.nodes[name]
        if node.up and node.core.role is Role.STOPPED and node.layer is not None:
            exits = node.layer.exits_at(self.now)
            if exits is not None:
                core = node.core
                self.at(exits, lambda: self.restart(name) if node.core is core else None)
                return
        if node.up and node.core.role is not Role.STOPPED:
            self.crash(name)
        node.core = self._make_core(node.as_name or name, node.address, node.priority,
                                    node.seeds, node.disk)
        if self.layer_factory is not None:
            node.layer = self.layer_factory(self, node)  # a new process: from its disk
        node.up = True
        node.paused = False
        node.timer_at = float("inf")
        self.trace.append((self.now, name, "restart"))
        self._feed(node, Start())

    def pause(self, name: str) -> None:
        self.nodes[name].paused = True
        self.trace.append((self.now, name, "pause"))

    def resume(self, name: str, *, timers_first: bool = False) -> None:
        """Resume a paused node: what arrived meanwhile is delivered, then its timers run;
        ``timers_first``: its timers run first (a SIGSTOPped loop whose deadlines passed
        handles them before it reads its sockets, as the real agent's loop does)."""
        node = self.nodes[name]
        if not node.paused:
            return
        node.paused = False
        self.trace.append((self.now, name, "resume"))
        backlog, node.backlog = node.backlog, []
        if timers_first:
            self._feed(node, Tick())
        for event in backlog:
            self._feed(node, event)
        self._feed(node, Tick())

    def send(self, name: str, to: str, msg: Message) -> None:
        """Have node ``name`` send ``msg`` to the mailbox ``to``, as the layer above the core
        would (e.g. the scheduler's EXECUTE). Nothing is sent by a node that is down or
        paused, nor by one that stopped (left) but a RESULT or an OFFER: like the real node,
        a node that left keeps its loop until its runs in flight end and a manager took
        their results, and gives a manager it hears of since its OFFER."""
        node = self.nodes[name]
        if node.up and not node.paused and (node.core.role is not Role.STOPPED
                                            or isinstance(msg, Result | Offer)):
            self._transmit(node, Send(to, msg))

    def leave(self, name: str) -> None:
        """A stop request. Its layer may defer it (``SimLayer.leave_at``: a node that takes
        over finishes that first, as the real agent does), then it is looked at again."""
        node = self.nodes[name]
        again = node.layer.leave_at(self.now) if node.layer is not None and node.up else None
        if again is None:
            if node.layer is not None and node.up:
                node.layer.on_leave()
            self._feed(node, LeaveRequested())
            return
        core = node.core  # (a node restarted meanwhile is not asked to leave)
        self.at(again, lambda: self.leave(name) if node.core is core else None)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when`` (for layers: a run's result)."""
        self._schedule(max(when, self.now), action)

    # --- running ----------------------------------------------------------------------------

    def _schedule(self, at: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, action))

    def _feed(self, node: SimNode, event: Event) -> None:
        if not node.up:
            return
        if node.paused:
            if not isinstance(event, Tick):
                node.backlog.append(event)
            return
        effects = node.core.handle(event, self.now)
        for observer in self.observers:
            observer(node, event, effects)
        self._apply(node, effects)
        if node.layer is not None:
            node.layer.after(event, effects)
        self.reschedule(node)

    def reschedule(self, node: SimNode) -> None:
        """Arm the node's timer for the next deadline of its core (and layer)."""
        deadline = node.core.next_deadline()
        if node.layer is not None:
            deadline = min(deadline, node.layer.next_deadline())
        if deadline < node.timer_at or node.timer_at <= self.now:
            node.timer_at = deadline
            if deadline != float("inf"):
                self._schedule(max(deadline, self.now), lambda: self._timer(node, deadline))

    def _timer(self, node: SimNode, at: float) -> None:
        if node.timer_at != at:
            return  # superseded
        node.timer_at = float("inf")
        self._feed(node, Tick())

    def apply(self, node: SimNode, effects: list[Effect]) -> None:
        """Carry out effects a layer got from the core outside ``handle`` (heartbeat_now)."""
        self._apply(node, effects)

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._transmit(node, effect)
            elif isinstance(effect, ManagerChanged):
                self.trace.append((self.now, node.name, f"manager={effect.manager} "
                                                        f"term={effect.term}"))
            elif isinstance(effect, VoterWrite):
                node.disk = effect.record
                self._apply(node, list(effect.then))
            else:
                self.trace.append((self.now, node.name, type(effect).__name__))

    def _transmit(self, src: SimNode, send: Send) -> None:
        kind = type(send.msg).__name__.lower()
        self.sent[kind] += 1
        dst = self._by_address.get(send.to)
        if dst is None or not dst.up:
            self.dropped += 1
            return
        if self._groups is not None and self._groups.get(src.name) != self._groups.get(dst.name):
            self.dropped += 1
            return
        if dst.name in self.deaf and dst is not src:
            self.dropped += 1
            return
        if (src.name, dst.name) in self.down:  # (waits for the link: ``_flush``)
            self._waiting.setdefault((src.name, dst.name), []).append((self.now, src.core, send))
            return
        if dst is not src and any(drop(src.name, dst.name, send.msg) for drop in self.cuts):
            self.dropped += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        if self.max_bytes is not None and isinstance(send.msg, Handover | Offer):
            try:
                encode(send.msg, self.max_bytes)
            except EncodeError:
                self.too_big += 1  # (the real node logs "cannot send")
                self.too_big_kinds[kind, src.core.role.name] += 1
                self.dropped += 1
                return
        if dst is not src:  # (quorum mode: a voter's own vote, sent to itself)
            self._links.setdefault(src.name, set()).add(dst.name)
            self._links.setdefault(dst.name, set()).add(src.name)
        at = self.now + self.delay + self.rng.uniform(0.0, self.jitter)
        if self.link_delay is not None:
            at += self.link_delay(src.name, dst.name, send.msg)
        if self.fifo:  # not before the last message sent on this link (same time: in order)
            link = (src.name, dst.name)
            at = max(at, self._link_last.get(link, 0.0))
            self._link_last[link] = at
        msg = send.msg
        if src.name in self.older and isinstance(msg, Coordinator) and msg.table is not None:
            msg = dataclasses.replace(msg, table=None)  # an older build has no such field
        if src.name in self.older:  # (it sends every member's entries)
            msg = with_entries(msg, lambda n: getattr(src.core.members.get(n), "tasks", None))
        if src.name in self.older and isinstance(msg, Merged):
            self.dropped += 1  # (an older build never confirms a merge)
            return
        if dst.name in self.older and (by_digest(msg)
                                       or isinstance(msg, TasksQuery | TasksReply | Merged)):
            self.too_new += 1  # (its codec refuses it)
            self.dropped += 1
            return
        self._schedule(at, lambda: self._feed(dst, Received(msg)))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, until: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until:
            at, _, action = heapq.heappop(queue)
            self.now = at
            action()
        self.now = until

    def run_until_true(
        self, predicate: Callable[[], bool], limit: float, step: float = 0.005
    ) -> float | None:
        """Run until ``predicate()`` holds (checked every ``step`` s); the time, or None."""
        end = self.now + limit
        while self.now < end:
            if predicate():
                return self.now
            self.run_until(min(self.now + step, end))
        return self.now if predicate() else None

    # --- inspection -------------------------------------------------------------------------

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values()
                if n.up and not n.paused and n.core.role is not Role.STOPPED]

    def managers(self) -> list[SimNode]:
        return [n for n in self.live() if n.core.role is Role.MANAGER]

    def agreed(self) -> tuple[str, int] | None:
        """(manager, term) if every live node follows one live manager at one term."""
        live = self.live()
        if not live:
            return None
        first = live[0].core
        view = (first.manager, first.term)
        if view[0] is None:
            return None
        for node in live:
            core = node.core
            if (core.manager, core.term) != view or core.role not in (Role.MANAGER,
                                                                      Role.FOLLOWER):
                return None
        boss = self.nodes.get(view[0].split(":")[0]) if view[0] else None
        if boss is None or boss not in live or boss.core.role is not Role.MANAGER:
            return None
        return (view[0], view[1])

    def summary(self) -> dict[str, Any]:
        return {"now": self.now, "sent": dict(self.sent), "dropped": self.dropped,
                "managers": [m.name for m in self.managers()], "agreed": self.agreed()}
