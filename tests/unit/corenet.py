"""NodeCore by hand: fake time, a tiny in-test router, assertions on effects and roles.

The router delivers every ``Send`` at once (zero latency) and in order, after a round trip
through the real codec, so every message the core emits is also checked to be encodable. Time
only moves through :meth:`Net.advance`, which ticks each node exactly at its
``next_deadline()``; every handled event is checked not to leave a deadline in the past (and a
``Tick`` to move it forward), which is what keeps the real shell from busy-looping.
"""

import random
from collections import deque

from clerk._codec import decode, encode
from clerk._core import (
    Deliver,
    NodeCore,
    PeerDown,
    Received,
    Role,
    Send,
    Start,
    StateHandedOver,
    Tick,
)
from clerk._messages import (
    Execute,
    MemberInfo,
    Peer,
)
from clerk._timings import Timings

T = Timings()


INF = float("inf")


def addr(name: str) -> str:
    return f"{name}:7400"


class Net:
    """A handful of cores, a FIFO of messages in flight, and a fake ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.cores: dict[str, NodeCore] = {}  # by address
        self.log: list[tuple[float, str, object]] = []  # (time, from address, effect)
        self.queue: deque[tuple[str, Send]] = deque()
        self.down: set[str] = set()  # crashed or paused: receive nothing, run no timers
        self.cut: set[frozenset[str]] = set()  # pairs of addresses that cannot talk
        self.terms: dict[int, tuple[int, int]] = {}  # id(core) -> (max_term, highest_term)
        self.every_core: list[NodeCore] = []  # keeps ids unique across restarts

    # --- building ---------------------------------------------------------------------------

    def node(self, name, priority=0, seeds=(), tasks=(), incarnation=None, start=True):
        peer = Peer(name, addr(name), incarnation or f"{name}-1", priority)
        core = NodeCore(peer, now=self.now, rng=random.Random(name),
                        seeds=[addr(s) for s in seeds], tasks=tasks, timings=T)
        self.cores[peer.address] = core
        self.every_core.append(core)
        self.down.discard(peer.address)
        if start:
            self.do(core, Start())
            self.run()
        return core

    # --- driving ----------------------------------------------------------------------------

    def do(self, core, event):
        effects = core.handle(event, self.now)
        for e in effects:
            self.log.append((self.now, core.me.address, e))
            if isinstance(e, Deliver) and isinstance(e.msg, Execute):  # fencing, every time
                assert core.accepts(e.msg.term, e.msg.sender), (core.me.name, e, core.highest)
            if isinstance(e, StateHandedOver) and e.confirm is not None:
                e = e.confirm  # (a task layer that merges at once confirms at once)
                self.log.append((self.now, core.me.address, e))
            if isinstance(e, Send):
                assert e.to != core.me.address, "a node never sends to itself"
                self.queue.append((core.me.address, e))
        # invariants after every step: terms never decrease, deadlines never in the past
        terms = (core.max_term, core.highest_term)
        before = self.terms.get(id(core), (0, 0))
        assert terms[0] >= before[0] and terms[1] >= before[1], (core.me.name, before, terms)
        assert core.term <= core.max_term and core.highest_term <= core.max_term
        self.terms[id(core)] = terms
        deadline = core.next_deadline()
        assert deadline >= self.now, (core.me.name, core.role, event, deadline, self.now)
        if isinstance(event, Tick):
            assert deadline > self.now, ("busy loop", core.me.name, core.role, deadline)
        return effects

    def deliver(self, src, send):
        if send.to in self.down or src in self.down or frozenset((src, send.to)) in self.cut:
            return
        core = self.cores.get(send.to)
        if core is None:
            return
        self.do(core, Received(decode(encode(send.msg))))

    def run(self, limit=100_000):
        n = 0
        while self.queue:
            n += 1
            assert n < limit, "message storm"
            self.deliver(*self.queue.popleft())

    def advance(self, seconds):
        """Let ``seconds`` pass, ticking every live node at each of its deadlines."""
        end = self.now + seconds
        for _ in range(100_000):
            live = self.live()
            due = min((c.next_deadline() for c in live), default=INF)
            if due > end + 1e-9:  # timers re-armed as now + interval drift by an ulp or so
                break
            self.now = max(self.now, due)
            for core in live:
                if core.next_deadline() <= self.now:
                    self.do(core, Tick())
            self.run()
        else:
            raise AssertionError("timers never settle")
        self.now = end

    def live(self):
        return [c for a, c in self.cores.items()
                if a not in self.down and c.role is not Role.STOPPED]

    def crash(self, core, notify=True):
        """Kill ``core``; with ``notify`` every live peer gets the socket-monitor PeerDown."""
        self.down.add(core.me.address)
        if notify:
            for other in self.live():
                self.do(other, PeerDown(core.me.address))
            self.run()

    def partition(self, group_a, group_b):
        for x in group_a:
            for y in group_b:
                self.cut.add(frozenset((x.me.address, y.me.address)))

    def heal(self):
        self.cut.clear()

    # --- inspecting -------------------------------------------------------------------------

    def mark(self):
        """A point in the log; pass it as ``after`` to see only what came since."""
        return len(self.log)

    def effects(self, core, kind=object, after=0):
        return [e for _, a, e in self.log[after:]
                if a == core.me.address and isinstance(e, kind)]

    def sends(self, core, msg_kind, to=None, after=0):
        return [e.msg for e in self.effects(core, Send, after)
                if isinstance(e.msg, msg_kind) and (to is None or e.to == to.me.address)]

    def agreed(self):
        """(manager, term) if every live node agrees on one, else None."""
        views = {(c.manager, c.term) for c in self.live()}
        managers = [c for c in self.live() if c.role is Role.MANAGER]
        if len(views) == 1 and len(managers) == 1 and managers[0].me.name == views.copy().pop()[0]:
            return views.pop()
        return None


def cluster(*specs):
    """``cluster(("a", 1), ("b", 5), ...)``: the first starts alone, the rest join through it."""
    net = Net()
    first, *rest = specs
    cores = [net.node(*first)]
    for name, prio in rest:
        cores.append(net.node(name, prio, seeds=[first[0]]))
    net.advance(T.heartbeat_interval * 3)  # a few heartbeat rounds: everyone has the list
    return net, cores


def peer(name, priority=0, incarnation=None):
    return Peer(name, addr(name), incarnation or f"{name}-1", priority)


def info(p, alive=True):
    return MemberInfo(p.name, p.address, p.incarnation, p.priority, alive, ())
