"""The node's cluster brain: membership and bully election with terms, as one pure state machine.

``NodeCore.handle(event, now) -> [effects]``: no sockets, no clock, no threads. The same class
runs in unit tests (fake clock), in ``tools/simulate.py`` (hundreds of simulated nodes) and in
the real node (the ZeroMQ shell feeds it decoded messages and ticks and carries out the
``Send`` effects). Randomness (election back-off jitter) comes from an injected ``random.Random``.

Roles and transitions::

    JOINING --welcome(manager)--> FOLLOWER --manager silent or disconnected--> CANDIDATE
    JOINING --join timeout, no manager--> CANDIDATE     (an ELECTION does not make it one)
    CANDIDATE --no OK from higher nodes--> MANAGER     (term = highest term seen + 1)
    CANDIDATE --OK, then COORDINATOR--> FOLLOWER
    MANAGER --sees a higher claim--> FOLLOWER           (hands its table over first)
    MANAGER --leave--> LEAVING --successor's COORDINATOR or timeout--> STOPPED
    FOLLOWER --leave--> STOPPED

Rules that make it converge:

* **Claims.** A manager's claim is ``(term, priority, name)``; claims are totally ordered and
  every node follows the highest claim it has seen. A claim below the highest seen is stale:
  it is never followed (this is also the fencing rule for EXECUTE) and its holder is told
  about the higher claim, so a paused-then-resumed manager steps down at its first heartbeat
  (not if the higher claim's holder is known to be gone: a live manager would follow a dead
  claim; a restarted holder is still told, and a manager that sees a claim in its own name
  above its own, or an ELECTION with a term above its own, claims again above it).
* **Bully.** A node that suspects the manager sends ELECTION to every live node ranked above
  it by ``(priority, name)`` and also to the suspect itself (a live manager answers OK with its
  claim, so a spurious disconnect event cannot depose it). No OK within ``election_timeout``:
  it becomes manager with ``term = highest term seen + 1`` and broadcasts COORDINATOR. An OK:
  it waits ``coordinator_timeout`` for the winner, then starts over (only an OK from a node
  ranked above counts: the probed suspect may answer from below). When the manager's
  connection closed (``PeerDown``, the crash fast path) and the suspect is the only node to
  ask, the wait is ``election_timeout * DISCONNECT_PROBE`` (25 ms by default): a crashed
  manager is replaced in tens of milliseconds, and a live one still answers in time.
* **No preemption of a healthy manager.** A node that heard from its manager within
  ``vouch_window`` answers an ELECTION with OK carrying that manager's claim and does not start
  an election of its own; a newcomer that ranks higher simply follows the existing manager.
  A node that has not joined yet takes no part in elections (it answers ELECTION with a
  JOIN), so a restarted node that knows nobody cannot win with an empty member list.
* **Partitions heal.** A manager periodically sends its claim (COORDINATOR) to its seeds and to
  members it lost; two managers that meet resolve by claim order: the lower one hands its
  member list and state to the higher one (HANDOVER), tells its members the winner's claim,
  and follows it. Lost members outlive their manager: followers note the members their
  manager's list dropped (for when they take over), an ex-manager keeps probing the members
  it lost, and followers send their manager's claim to seeds that are not members.
* **Stall fence.** A manager whose loop did not run for longer than ``manager_timeout``
  dispatches nothing until a member acknowledges a heartbeat sent after the stall
  (``dispatch_ok``; the rules are in :mod:`clerk._fence`). A link that comes back up
  (``PeerUp``) to a lost member or a seed gets our claim at once, not at the next probe.
* **Graceful leave.** A leaving manager sends HANDOVER (members and replicated state) to the
  highest-ranked live member, which takes over with a new term at once; nothing is lost.
* **Term bound.** Let ``H`` be the highest term this node has seen (or its *horizon*, if that
  is higher). A message whose term, or whose claim's term, is above ``H + MAX_TERM_JUMP`` is
  dropped (``Dropped("term_jump")``), and the horizon moves up by ``MAX_TERM_JUMP``, at most once
  per ``probe_interval``. So the terms a node accepts grow by at most ``MAX_TERM_JUMP`` per
  accepted message plus ``MAX_TERM_JUMP`` per second: a stranger (``--insecure``) or a buggy
  peer cannot push the cluster's terms to the 64-bit limit, where no node could ever claim a
  higher term again (it would take 2**43 messages, or 2**43 seconds of horizon moves; without
  the bound, one message), and a blind spray of far-future terms is never followed. Legitimate
  clusters do not hit the bound: a node claims ``highest seen + 1``, so two nodes' terms differ
  by the elections one ran without the other hearing of them, and a partitioned side would need
  a million elections to get that far ahead. If one ever does, it still merges: it keeps
  probing and heartbeating, and each second the other side's horizon comes ``MAX_TERM_JUMP``
  closer until its term is accepted (the simulator tests this with a tiny bound).
* **Hostile input** (``--insecure``: anyone can send anything). Beyond the codec's checks, the
  core drops and counts (``Dropped`` effects, shown in status): a LEAVE or a graceful HANDOVER
  from a non-member or a stale incarnation, a REFUSE from anyone but our manager or a seed, an
  EXECUTE from a manager this node does not already follow (answered ``refused``), a merge
  HANDOVER from a node that is neither a member nor one we sent our claim to, and JOINs beyond
  ``MAX_PROBATION`` admitted members that have not acknowledged yet (a flood of forged names;
  a real joiner retries). Replayed or reordered messages carry old claims, which the claim
  order already ignores. A peer that knows the cluster (names, incarnations, terms) can still
  forge anything without CURVE: that is what the cookie is for.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clerk._fence import StallFence
from clerk._membership import Member, MemberTable
from clerk._messages import (
    Ack,
    Claim,
    Control,
    ControlReply,
    Coordinator,
    Election,
    Execute,
    Handover,
    Heartbeat,
    Join,
    Json,
    Leave,
    MemberInfo,
    Message,
    Offer,
    Ok,
    Peer,
    Refuse,
    Result,
    ResultAck,
    RunQuery,
    Status,
    StatusReply,
    Welcome,
)
from clerk._timings import Timings

__all__ = [
    "Deliver",
    "Dropped",
    "Effect",
    "Event",
    "LeaveRequested",
    "ManagerChanged",
    "MemberDown",
    "MemberUp",
    "NodeCore",
    "PeerDown",
    "PeerUp",
    "Received",
    "Refused",
    "Role",
    "Send",
    "StaleExecute",
    "Start",
    "StateHandedOver",
    "Stopped",
    "Tick",
]

INF = float("inf")
#: Lower-ranked candidates wait ``min(nodes above, STAGGER_STEPS) * election_timeout / 5``.
STAGGER_STEPS = 10
#: Lost members (and seeds outside the list) are probed for this long, in seconds.
LOST_HORIZON = 3600.0
#: How many HANDOVERs a follower remembers having passed on (each is passed on once).
FORWARD_MEMORY = 16
#: After its manager's connection closed, a node whose only target is that manager (it is the
#: highest survivor) waits ``election_timeout * DISCONNECT_PROBE`` for its OK, not the whole
#: ``election_timeout``: a live manager (a spurious disconnect) answers in about a millisecond, a
#: dead one never does. Below one stagger step, so lower nodes are still waiting when the
#: winner announces itself.
DISCONNECT_PROBE = 1 / 6
#: The most a message's term may exceed the highest term seen (see "Term bound" above).
MAX_TERM_JUMP = 1 << 20
#: At most this many members admitted by JOIN and not yet heard from again (forged JOIN floods).
MAX_PROBATION = 32
#: At most this many lost members are remembered (and probed).
MAX_LOST = 1024
#: Member lists learned before (or besides) a manager's are taken up to this many rows.
MAX_LEARN = 1024


class Role(StrEnum):
    JOINING = "joining"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    MANAGER = "manager"
    LEAVING = "leaving"
    STOPPED = "stopped"


# --- events (inputs) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin: join through the seeds, or become the manager of a cluster of one."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; check timers (the shell ticks at :meth:`NodeCore.next_deadline`)."""


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded message from a peer."""

    msg: Message


@dataclass(frozen=True, slots=True)
class PeerDown:
    """The connection to ``address`` closed (socket-monitor fast path for crashed peers)."""

    address: str


@dataclass(frozen=True, slots=True)
class PeerUp:
    """A connection to ``address`` was (re-)established (socket monitor): after a partition
    heals, the moment to tell a node we lost about our claim, rather than at the next probe."""

    address: str


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    """Leave the cluster gracefully (a manager hands over first)."""


Event = Start | Tick | Received | PeerDown | PeerUp | LeaveRequested


# --- effects (outputs) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to the node whose mailbox is at ``to`` (``host:port``)."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class ManagerChanged:
    manager: str | None
    term: int
    is_me: bool


@dataclass(frozen=True, slots=True)
class MemberUp:
    info: MemberInfo
    how: str  # "added" | "replaced" | "revived"


@dataclass(frozen=True, slots=True)
class MemberDown:
    name: str
    reason: str  # "disconnected" | "silent" | "left"


@dataclass(frozen=True, slots=True)
class StateHandedOver:
    """A manager handed its replicated state to us (graceful leave or a merge)."""

    sender: str
    state: Json
    merge: bool


@dataclass(frozen=True, slots=True)
class Deliver:
    """A message for the layer above (EXECUTE that passed the fence, RESULT, STATUS...)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class StaleExecute:
    """An EXECUTE from a claim below the highest this node has seen was refused (the node
    counts it as ``stale`` and logs it; the refusal was already sent to its holder)."""

    msg: Execute
    reason: str


@dataclass(frozen=True, slots=True)
class Stopped:
    reason: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message was dropped as hostile or impossible (``reason`` is a counter key)."""

    reason: str
    detail: str


Effect = (
    Send | ManagerChanged | MemberUp | MemberDown | StateHandedOver | Deliver | Refused | Stopped
    | Dropped | StaleExecute
)


class NodeCore:
    """Membership and election for one node. See the module docstring for the rules."""

    def __init__(
        self,
        me: Peer,
        *,
        now: float,
        rng: random.Random,
        seeds: tuple[str, ...] | list[str] = (),
        tasks: tuple[str, ...] = (),
        timings: Timings | None = None,
    ) -> None:
        self.me = me
        self.timings = timings or Timings()
        self.rng = rng
        self.seeds = tuple(s for s in dict.fromkeys(seeds) if s != me.address)
        self.tasks = tuple(tasks)
        self.members = MemberTable(me, self.tasks, now)
        self.role = Role.JOINING
        self.term = 0
        self.max_term = 0
        self.highest: Claim | None = None
        self.replicated: Json = None
        self._claim: Claim | None = None  # the manager we follow (or our own claim)
        self._last_heard = now
        self._epoch_seen = -1
        self._horizon = 0  # term bound: accept terms up to max(max_term, _horizon) + jump
        self._horizon_at = -INF  # when the horizon last moved
        self.max_term_jump = MAX_TERM_JUMP
        self.dropped: Counter[str] = Counter()
        self._probation: dict[str, float] = {}  # admitted by JOIN, not heard from since
        self._told: dict[str, float] = {}  # addresses we sent our claim to (merge HANDOVERs)
        self._seq = 0
        self._deadline = INF  # role-specific: join / election phase / leave
        self._phase = ""  # candidate: "ok" (waiting for OK) or "coord" (waiting for winner)
        self._suspect = ""
        self._suspect_addr = ""  # where to probe the suspect (it may not be in our list)
        self._probe_suspect = False
        self._disconnected = False  # the suspect's connection closed (PeerDown)
        self._hinted: set[str] = set()  # managers sent a term hint in this candidacy
        self._next_retry = INF  # joining: resend JOIN to seeds
        self._next_heartbeat = INF
        self._next_probe = INF
        self._lost: dict[str, float] = {}  # addresses of members lost while manager -> when
        self._orphans: dict[str, float] = {}  # lost while we were manager, now a follower
        self._successor = ""
        self._forwarded: dict[tuple[str, str, int], None] = {}  # HANDOVERs passed on
        self._out: list[Effect] = []
        self._fence = StallFence(now)
        self.returned_handovers = 0

    # --- public view ------------------------------------------------------------------------

    @property
    def manager(self) -> str | None:
        """Name of the manager this node follows (or itself), None during an election."""
        return self._claim.name if self._claim is not None else None

    @property
    def manager_claim(self) -> Claim | None:
        return self._claim

    @property
    def is_manager(self) -> bool:
        return self.role is Role.MANAGER

    @property
    def dispatch_ok(self) -> bool:
        """May this node, as manager, dispatch runs now? Not while its claim is unconfirmed
        after a stall (see :mod:`clerk._fence`)."""
        return self.role is Role.MANAGER and self._fence.confirmed

    @property
    def stalls(self) -> int:
        """How many times this node's loop was seen stalled past the manager timeout."""
        return self._fence.stalls

    @property
    def highest_term(self) -> int:
        """The fencing token: the highest manager term this node has seen."""
        return self.highest.term if self.highest is not None else 0

    def member_list(self) -> tuple[MemberInfo, ...]:
        return self.members.infos()

    def status(self) -> dict[str, Any]:
        """This node's view of the cluster (JSON-ready)."""
        return {
            "node": self.me.name,
            "role": str(self.role),
            "manager": self.manager,
            "term": self.term,
            "highest_term": self.highest_term,
            "members": [
                {
                    "name": m.name,
                    "address": m.address,
                    "alive": m.alive,
                    "priority": m.priority,
                    "incarnation": m.incarnation,
                    "tasks": list(m.tasks),
                }
                for m in self.members.infos()
            ],
        }

    def accepts(self, term: int, sender: Peer) -> bool:
        """Fencing: would a manager message with this term from ``sender`` be followed?"""
        claim = Claim(term, sender.priority, sender.name, sender.address)
        return self.highest is None or claim.key >= self.highest.key

    def set_replicated(self, state: Json) -> None:
        """Manager only: state to replicate to every member with the next heartbeats."""
        self.replicated = state
        self.members.epoch += 1

    def heartbeat_now(self, now: float) -> list[Effect]:
        """Manager only: send a heartbeat round at once (e.g. to replicate a new task state
        without waiting for the next interval). Returns the effects to carry out."""
        if self.role is not Role.MANAGER:
            return []
        self._out = []
        self._heartbeat_round(now)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float:
        """The monotonic time at which the next :class:`Tick` is due."""
        t = self.timings
        if self.role is Role.MANAGER:
            return min(self._next_heartbeat, self._next_probe)
        if self.role is Role.FOLLOWER:
            return min(self._last_heard + t.manager_timeout, self._next_probe)
        if self.role is Role.JOINING:
            return min(self._deadline, self._next_retry)
        if self.role in (Role.CANDIDATE, Role.LEAVING):
            return self._deadline
        return INF

    # --- the one entry point ----------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Apply ``event`` at monotonic time ``now``; return what the shell must do."""
        self._out = []
        if self.role is Role.STOPPED:
            return []
        if self._fence.gap(now) > self.timings.manager_timeout and self.role is Role.MANAGER:
            self._stalled(now)
        if isinstance(event, Tick):
            self._on_tick(now)
        elif isinstance(event, Received):
            self._on_message(event.msg, now)
        elif isinstance(event, PeerDown):
            self._on_peer_down(event.address, now)
        elif isinstance(event, PeerUp):
            self._on_peer_up(event.address)
        elif isinstance(event, Start):
            self._on_start(now)
        elif isinstance(event, LeaveRequested):
            self._on_leave(now)
        out, self._out = self._out, []
        return out

    def set_tasks(self, tasks: tuple[str, ...], now: float) -> list[Effect]:
        """Advertise the tasks this node can run now (e.g. once its workers are ready: a node
        is not eligible for runs before). Returns the effects to carry out."""
        self._out = []
        self.tasks = tuple(tasks)
        if self.members.set_tasks(self.me.name, self.tasks) and (
                self.role is Role.FOLLOWER and self._claim is not None):
            self._send(self._claim.address, Join(self.me, self.term, self.tasks))
        out, self._out = self._out, []
        return out

    def _stalled(self, now: float) -> None:
        """Our loop did not run for longer than a follower waits for us (:mod:`clerk._fence`):
        heartbeat at once; an ACK of this round or later confirms us."""
        live = [r for r in self.members.others() if r.alive]
        if not live:
            self._fence.count()  # nobody could have replaced us on our side, nobody to ask
            return
        for row in live:
            row.last_seen = now  # our silence, not theirs: each gets a full timeout to answer
        self._fence.engage(self._seq + 1, now, self.timings.member_timeout)
        self._heartbeat_round(now)

    # --- helpers ----------------------------------------------------------------------------

    def _send(self, to: str, msg: Message) -> None:
        if to != self.me.address:
            self._out.append(Send(to, msg))

    def _my_claim(self) -> Claim:
        return Claim(self.term, self.me.priority, self.me.name, self.me.address)

    def _see_term(self, term: int) -> None:
        if term > self.max_term:
            self.max_term = term

    def _raise_highest(self, claim: Claim) -> None:
        if self.highest is None or claim.key > self.highest.key:
            self.highest = claim
        self._see_term(claim.term)

    def _on_claim(self, claim: Claim, now: float) -> bool:
        """Learn of a manager claim; follow it if it is the highest. True if we follow it."""
        self._see_term(claim.term)
        if claim.name == self.me.name:
            if self.role is not Role.MANAGER:
                return False  # _see_term made sure our next candidacy goes above it
            mine = self._my_claim()
            if claim.key > mine.key:
                # A claim in our name above ours: our previous incarnation's (we restarted and
                # lost its term). Whoever saw it refuses us as stale, so claim again, higher.
                self._become_manager(now)
                return False
            return claim.key == mine.key
        if self.highest is not None and claim.key < self.highest.key:
            # Stale: never follow it, and tell its holder about the newer claim.
            if self.role is Role.MANAGER and (
                    claim.address in self.seeds or claim.address in self._lost
                    or self.members.by_address(claim.address) is not None):
                self._tell(claim.address, now)  # not for strangers: see _m_handover
            # (Not if we know its holder is gone: a live manager would follow a dead claim.
            # Unless the stale claim is the holder's own name: a restarted incarnation, which
            # must hear of its old claim to claim again above it.)
            if claim.name == self.highest.name or not self._known_dead(self.highest):
                self._send(claim.address, Coordinator(self.me, self.term, self.highest))
            return False
        if self.role in (Role.LEAVING, Role.STOPPED):
            self._raise_highest(claim)
            return False
        current = self._claim
        if current is not None and claim.key == current.key:
            return True
        if current is None or claim.key > current.key:
            self._follow(claim, now)
            return True
        self._send(claim.address, Coordinator(self.me, self.term, current))
        return False

    def _known_dead(self, claim: Claim) -> bool:
        """Is the holder of ``claim`` known to be gone (the manager we gave up on, or a member
        marked dead)? Such a claim is not worth advertising: a live manager that followed it
        would only wait out the manager timeout and elect again."""
        if claim.name == self.me.name:
            return False
        if self._claim is None and claim.name == self._suspect:
            return True
        row = self.members.get(claim.name)
        return row is not None and not row.alive

    def _follow(self, claim: Claim, now: float) -> None:
        old = self._claim
        if self.role is Role.MANAGER:
            # Two managers met: the lower one (us) hands its table to the winner, and tells
            # its own members who the manager is now. Otherwise they would learn it only if
            # the winner took our list (it may drop a HANDOVER it cannot vouch for) or after
            # our heartbeats stop and their manager timeout runs out (0.7 s).
            self._send(claim.address, Handover(self.me, self.term, self.members.infos(),
                                               self.replicated))
            # The members we lost are in no list the winner gets: keep probing them.
            self._orphans.update(self._lost)
            for row in self.members.others():
                if row.alive and row.peer.address != claim.address:
                    self._send(row.peer.address, Coordinator(self.me, claim.term, claim))
        elif old is not None and old.name != claim.name:
            # Tell our previous manager that it has been superseded.
            self._send(old.address, Coordinator(self.me, claim.term, claim))
        self._raise_highest(claim)
        self.role = Role.FOLLOWER
        self._claim = claim
        self._fence.clear()
        self.term = claim.term
        self._last_heard = now
        self._epoch_seen = -1
        self._phase = ""
        self._suspect = ""
        self._deadline = INF
        self._next_heartbeat = INF
        self._next_probe = now + self._probe_jitter()
        # Announce ourselves; a manager that does not know us answers with its member list.
        self._send(claim.address, Ack(self.me, self.term, 0, -1))
        self._out.append(ManagerChanged(claim.name, claim.term, False))

    # --- events -----------------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        if not self.seeds:
            self._become_manager(now)
            return
        self.role = Role.JOINING
        self._deadline = now + self.timings.join_timeout
        self._send_joins(now)

    def _send_joins(self, now: float) -> None:
        for seed in self.seeds:
            if self.members.by_address(seed) is None:
                self._send(seed, Join(self.me, self.term, self.tasks))
        self._next_retry = now + self.timings.join_retry

    def _on_tick(self, now: float) -> None:
        t = self.timings
        role = self.role
        if role is Role.MANAGER:
            if now >= self._next_heartbeat:
                self._heartbeat_round(now)
            if now >= self._next_probe:
                self._probe(now)
        elif role is Role.FOLLOWER:
            if now >= self._last_heard + t.manager_timeout:
                self._start_election(now, suspect=self.manager or "")
            elif now >= self._next_probe:
                self._probe_seeds(now)
        elif role is Role.JOINING:
            if now >= self._deadline:
                self._start_election(now, suspect="")
            elif now >= self._next_retry:
                self._send_joins(now)
        elif role is Role.CANDIDATE:
            if now >= self._deadline:
                if self._phase == "wait":
                    self._send_elections(now)
                elif self._phase == "ok":
                    self._become_manager(now)
                else:
                    self._start_election(now, self._suspect, self._probe_suspect)
        elif role is Role.LEAVING:
            if now >= self._deadline:
                self._stop(f"left; successor {self._successor} did not confirm in time")

    def _heartbeat_round(self, now: float) -> None:
        t = self.timings
        for row in self.members.expire(now, t.member_timeout):
            if self._probation.pop(row.name, None) is None:  # never acked: not worth a probe
                self._lost[row.peer.address] = now
            self._out.append(MemberDown(row.name, "silent"))
        for name, when in list(self._probation.items()):
            if when < now - t.member_timeout or name not in self.members:
                del self._probation[name]
        self._fence.expire(now)
        self._seq += 1
        epoch, list_epoch = self.members.epoch, self.members.list_epoch
        # At most three distinct heartbeats per round, each one object whatever the number of
        # members (the agent encodes an object once per batch of effects: see Agent.apply).
        beats: dict[tuple[bool, bool], Heartbeat] = {}
        for row in self.members.others():
            stale = row.acked_epoch != epoch
            # Only the table changed since this member's last ACK: the list stays home (at 200
            # tasks it is most of the encoding cost of a heartbeat, and the table changes after
            # every dispatch and every result).
            with_list = stale and row.acked_epoch < list_epoch
            beat = beats.get((stale, with_list))
            if beat is None:
                beat = beats[(stale, with_list)] = Heartbeat(
                    self.me, self.term, self._seq, epoch,
                    self.members.infos() if with_list else None,
                    self.replicated if stale else None)
            self._send(row.peer.address, beat)
        self._next_heartbeat = now + t.heartbeat_interval

    def _adopt(self, infos: tuple[MemberInfo, ...], now: float) -> None:
        """Take the manager's member list. Members it no longer lists go into our own
        ``_lost``: if we take over later we keep probing them, so the knowledge of a
        partitioned-off side does not die with the manager that dropped it."""
        for row in self.members.replace_all(infos, now):
            if row.name != self.me.name:
                self._lost[row.peer.address] = now
        if self._lost:
            present = {row.peer.address for row in self.members}
            horizon = now - LOST_HORIZON
            for addr, when in list(self._lost.items()):
                if addr in present or when < horizon:
                    del self._lost[addr]

    def _probe_seeds(self, now: float) -> None:
        """Follower: send our manager's claim to seeds that are not members, and to the
        members we lost while we were a manager ourselves (our successor never heard of
        them). If one follows another manager (a healed partition nobody else remembers),
        claim order merges the two clusters."""
        if self._orphans:
            present = {row.peer.address for row in self.members}
            horizon = now - LOST_HORIZON
            for addr, when in list(self._orphans.items()):
                if addr in present or when < horizon:
                    del self._orphans[addr]
        if self._claim is not None:
            for addr in dict.fromkeys((*self.seeds, *self._orphans)):
                if self.members.by_address(addr) is None:
                    self._send(addr, Coordinator(self.me, self.term, self._claim))
        self._next_probe = now + self._probe_jitter()

    def _probe_jitter(self) -> float:
        """A follower's probe period: 1-1.5 probe intervals, so that followers do not probe
        in step with each other (or with their manager's heartbeats)."""
        return self.timings.probe_interval * self.rng.uniform(1.0, 1.5)

    def _probe(self, now: float) -> None:
        """Send our claim to seeds and lost members: heals partitions, merges managers."""
        horizon = now - LOST_HORIZON
        for addr, when in list(self._lost.items()):
            if when < horizon:
                del self._lost[addr]
        claim = self._my_claim()
        if len(self._lost) > MAX_LOST:
            for addr in sorted(self._lost, key=self._lost.__getitem__)[:-MAX_LOST]:
                del self._lost[addr]
        for addr, when in list(self._told.items()):
            if when < now - 2 * self.timings.probe_interval:
                del self._told[addr]
        for addr in (*self.seeds, *self._lost):
            if self.members.by_address(addr) is None:
                self._tell(addr, now)
                self._send(addr, Coordinator(self.me, self.term, claim))
        self._next_probe = now + self.timings.probe_interval

    def _start_election(
        self, now: float, suspect: str, probe: bool = True, disconnected: bool = False
    ) -> None:
        """Become a candidate. ``suspect`` is the manager we gave up on; with ``probe`` it also
        gets an ELECTION (a live one answers OK with its claim). Nodes ranked lower wait a
        little longer before calling the election (``_stagger``), so in the common case the
        highest survivor announces itself first and nobody else sends anything.
        ``disconnected``: the suspect's connection closed, so a short wait for its OK will do
        (``DISCONNECT_PROBE``)."""
        if self.role in (Role.MANAGER, Role.LEAVING, Role.STOPPED):
            return
        was_following = self._claim is not None
        if self._claim is not None and self._claim.name == suspect:
            self._suspect_addr = self._claim.address
        elif suspect != self._suspect:
            row = self.members.get(suspect) if suspect else None
            self._suspect_addr = row.peer.address if row is not None else ""
        self.role = Role.CANDIDATE
        self._claim = None
        self._suspect = suspect
        self._probe_suspect = probe and bool(suspect)
        self._disconnected = disconnected
        self._hinted = set()
        if was_following:
            self._out.append(ManagerChanged(None, self.term, False))
        delay = self._stagger(len(self._higher()))
        if delay <= 0:
            self._send_elections(now)
        else:
            self._phase = "wait"
            self._deadline = now + delay

    def _stagger(self, above: int) -> float:
        return min(above, STAGGER_STEPS) * self.timings.election_timeout / 5

    def _higher(self) -> list[Member]:
        me_rank = self.me.rank
        return [
            r for r in self.members.others()
            if r.alive and r.peer.rank > me_rank and r.name != self._suspect
        ]

    def _send_elections(self, now: float) -> None:
        targets = [row.peer.address for row in self._higher()]
        # Probe the suspect even if it is not in our list: a node that followed a manager
        # on a third party's word (WELCOME) and whose JOIN was lost has no list yet, and
        # must not depose a live manager just because it never heard of the members.
        if self._probe_suspect and self._suspect_addr and self._suspect_addr not in targets:
            targets.append(self._suspect_addr)
        if not targets:
            self._become_manager(now)
            return
        for address in targets:
            self._send(address, Election(self.me, self.term, self._suspect))
        self._phase = "ok"
        wait = self.timings.election_timeout
        if self._disconnected and targets == [self._suspect_addr]:
            wait *= DISCONNECT_PROBE
        self._deadline = now + wait

    def _become_manager(
        self, now: float, members: tuple[MemberInfo, ...] | None = None
    ) -> None:
        if members is not None:
            self._adopt(members, now)
        if self._suspect:
            self.members.mark_dead(self._suspect)
        self.max_term += 1
        self.term = self.max_term
        self.role = Role.MANAGER
        self._fence.clear()  # a fresh claim: every node that followed another one heard it
        claim = self._my_claim()
        self._claim = claim
        self._raise_highest(claim)
        self._phase = ""
        self._suspect = ""
        self._deadline = INF
        for row in self.members.others():
            row.acked_epoch = -1
            row.last_seen = now  # every member gets a full timeout to acknowledge us
            self._send(row.peer.address, Coordinator(self.me, self.term, claim))
        self._out.append(ManagerChanged(self.me.name, self.term, True))
        self._next_heartbeat = now  # first heartbeat right away
        self._heartbeat_round(now)
        # Probe at once, too: a node that gave up joining because no seed answered (all were
        # down) finds the cluster as soon as a seed is back, instead of a probe interval later.
        # Costs nothing in the usual takeover: seeds already in our list are not probed.
        self._probe(now)

    def _on_peer_down(self, address: str, now: float) -> None:
        row = self.members.by_address(address)
        if row is None:
            return
        if self.role is Role.FOLLOWER and row.name == self.manager:
            # The connection closed: most likely the process is gone, but a TCP reset of a
            # live manager looks the same, so it still gets a (short) probe.
            self.members.mark_dead(row.name)
            self._start_election(now, suspect=row.name, disconnected=True)
        elif self.role is Role.MANAGER:
            if self.members.mark_dead(row.name):
                self._out.append(MemberDown(row.name, "disconnected"))
        else:
            self.members.mark_dead(row.name)

    def _on_peer_up(self, address: str) -> None:
        """A link came (back) up. If it leads to a node outside our member list that we probe
        anyway (a lost member, a seed, an orphan), send it the probe now: a healed partition
        then merges as soon as TCP reconnects, not up to a probe interval later."""
        if self.members.by_address(address) is not None:
            return
        if self.role is Role.MANAGER and (address in self._lost or address in self.seeds):
            self._tell(address, self._fence.last_event)
            self._send(address, Coordinator(self.me, self.term, self._my_claim()))
        elif self.role is Role.FOLLOWER and self._claim is not None and (
                address in self.seeds or address in self._orphans):
            self._send(address, Coordinator(self.me, self.term, self._claim))

    def _on_leave(self, now: float) -> None:
        if self.role is Role.MANAGER:
            live = [r for r in self.members.others() if r.alive]
            if not live:
                self._stop("left; no member to hand over to")
                return
            successor = max(live, key=lambda r: r.peer.rank)
            members = tuple(i for i in self.members.infos() if i.name != self.me.name)
            self._send(successor.peer.address,
                       Handover(self.me, self.term, members, self.replicated))
            self.role = Role.LEAVING
            self._successor = successor.name
            self._deadline = now + self.timings.handover_timeout
        elif self.role is Role.FOLLOWER and self._claim is not None:
            self._send(self._claim.address, Leave(self.me, self.term))
            self._stop("left")
        else:
            self._stop("left")

    def _stop(self, reason: str) -> None:
        self.role = Role.STOPPED
        self._deadline = INF
        self._out.append(Stopped(reason))

    # --- messages ---------------------------------------------------------------------------

    def _tell(self, address: str, now: float) -> None:
        """Remember that we sent our claim to ``address`` (it may hand over to us)."""
        self._told[address] = now
        if len(self._told) > MAX_LOST:
            del self._told[next(iter(self._told))]

    def _learn(self, infos: tuple[MemberInfo, ...], now: float) -> None:
        """``members.learn``, within ``MAX_LEARN`` rows: member lists arrive in messages, and
        a forged one may hold 100,000 entries that we would heartbeat and probe."""
        room = MAX_LEARN - len(self.members)
        if len(infos) > room:
            self._drop("member_table_full", f"{len(infos)} members offered, room for "
                                            f"{max(0, room)}")
            infos = infos[:max(0, room)]
        self.members.learn(infos, now)

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self._out.append(Dropped(reason, detail))

    def _term_ok(self, msg: Message, now: float) -> bool:
        """The term bound (module docstring)."""
        term = msg.term
        claim = getattr(msg, "claim", None) or getattr(msg, "manager", None)
        if isinstance(claim, Claim):
            term = max(term, claim.term)
        limit = max(self.max_term, self._horizon) + self.max_term_jump
        if term <= limit:
            return True
        if now - self._horizon_at >= self.timings.probe_interval:
            self._horizon, self._horizon_at = limit, now
        self._drop("term_jump", f"{type(msg).__name__} from {msg.sender.name!r}: term {term} "
                                f"is more than {self.max_term_jump} above the bound")
        return False

    def _on_message(self, msg: Message, now: float) -> None:
        if msg.sender.name == self.me.name and msg.sender.incarnation == self.me.incarnation:
            if isinstance(msg, Handover):
                # Our own merge HANDOVER, passed on by followers (each passes it on once)
                # back to us: an ordinary fault (we stepped down, then our successor did
                # too), not an attack. Nothing to do with it.
                self.returned_handovers += 1
                return
            # A node never sends to itself: a forgery (a JOIN in our own name would rewrite
            # our own row, e.g. the tasks we run).
            self._drop("impersonation", f"{type(msg).__name__} in this node's own name")
            return
        if not self._term_ok(msg, now):
            return
        self._see_term(msg.term)
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, now)

    def _m_join(self, msg: Join, now: float) -> None:
        sender = msg.sender
        if self.role is Role.MANAGER:
            row = self.members.get(sender.name)
            if (row is None or row.peer.incarnation != sender.incarnation) and (
                    len(self._probation) >= MAX_PROBATION):
                self._drop("join_flood", f"JOIN from {sender.name!r}: {MAX_PROBATION} joiners "
                                         "have not acknowledged yet")
                return
            adm = self.members.admit(sender, msg.tasks, now, self.timings.member_timeout)
            if adm.outcome == "refused":
                self._send(sender.address, Refuse(self.me, self.term, adm.reason))
                return
            row = self.members.get(sender.name)
            assert row is not None
            self._lost.pop(sender.address, None)
            row.acked_epoch = self.members.epoch
            self._send(sender.address, Welcome(self.me, self.term, self._my_claim(),
                                               self.members.infos(), self.members.epoch))
            if adm.outcome in ("added", "replaced"):
                self._probation[sender.name] = now
                self._out.append(MemberUp(row.info(), adm.outcome))
            return
        if self.role in (Role.JOINING, Role.CANDIDATE):
            self._learn((MemberInfo(sender.name, sender.address, sender.incarnation,
                                           sender.priority, True, msg.tasks),), now)
        if self.role in (Role.LEAVING, Role.STOPPED):
            return
        self._send(sender.address, Welcome(self.me, self.term, self._claim,
                                           self.members.infos(), self.members.epoch))

    def _m_welcome(self, msg: Welcome, now: float) -> None:
        claim = msg.manager
        if claim is None:
            if self.role in (Role.JOINING, Role.CANDIDATE):
                self._learn(msg.members, now)
            return
        if (claim.name == self.me.name and claim.address != self.me.address
                and self.role is Role.JOINING):
            # The cluster's manager holds our name at another address: we are a duplicate
            # (a restart of that manager comes back at its own address). Without this the
            # joiner never JOINs (it cannot follow a claim in its own name), elects itself
            # after join_timeout, and the two re-claim above each other forever.
            reason = (f"the name {self.me.name!r} is already used by the manager at "
                      f"{claim.address}; {self.me.address} was refused")
            self._stop(f"refused by {msg.sender.name}: {reason}")
            self._out.insert(0, Refused(reason))
            return
        if claim.name == msg.sender.name:
            if self._on_claim(claim, now) and self.role is Role.FOLLOWER:
                self._adopt(msg.members, now)
                self._epoch_seen = msg.epoch
            return
        if self._second_hand_suspect(claim, msg.sender.name):
            return
        already = self._claim is not None and self._claim.key == claim.key
        if self._on_claim(claim, now) and not already:
            self._send(claim.address, Join(self.me, self.term, self.tasks))

    def _m_refuse(self, msg: Refuse, now: float) -> None:
        s, claim = msg.sender, self._claim
        ours = (claim is not None and self.role is Role.FOLLOWER and s.name == claim.name
                and s.address == claim.address and msg.term == claim.term)
        if not ours and not (self.role is Role.JOINING and s.address in self.seeds):
            self._drop("refuse_stranger", f"REFUSE from {s.name!r} at {s.address!r}: not our "
                                          "manager, nor a seed while joining")
            return
        if self.role is Role.JOINING or msg.sender.name == self.manager:
            self._stop(f"refused by {msg.sender.name}: {msg.reason}")
            self._out.insert(0, Refused(msg.reason))

    def _m_heartbeat(self, msg: Heartbeat, now: float) -> None:
        s = msg.sender
        if not self._on_claim(Claim(msg.term, s.priority, s.name, s.address), now):
            return
        if self.role is not Role.FOLLOWER:
            return
        self._last_heard = now
        if msg.members is not None:
            self._adopt(msg.members, now)
            self._epoch_seen = msg.epoch
            if not any(m.name == self.me.name and m.incarnation == self.me.incarnation
                       and m.tasks == self.tasks for m in msg.members):
                self._send(s.address, Join(self.me, self.term, self.tasks))
        if msg.state is not None:
            self.replicated = msg.state
            if msg.members is None:
                # The manager sends the table alone only to a member whose last ACK showed the
                # current list: acknowledging this epoch says "list and table", both true.
                self._epoch_seen = msg.epoch
        self._send(s.address, Ack(self.me, self.term, msg.seq, self._epoch_seen))

    def _m_ack(self, msg: Ack, now: float) -> None:
        if self.role is not Role.MANAGER:
            return
        if msg.term > self.term:
            # The sender follows a newer manager; our claim makes it tell us who.
            self._send(msg.sender.address, Coordinator(self.me, self.term, self._my_claim()))
            return
        s = msg.sender
        row = self.members.get(s.name)
        was_dead = row is not None and not row.alive
        row = self.members.touch(s.name, s.incarnation, now)
        if row is not None:
            self._probation.pop(s.name, None)
        if row is None:
            # Not (or no longer) a member: the list we send makes it JOIN again.
            self._send(s.address, Heartbeat(self.me, self.term, self._seq, self.members.epoch,
                                            self.members.infos(), None))
            return
        row.acked_epoch = msg.epoch
        self._fence.ack(msg.term, self.term, msg.seq)  # a member still follows us
        if was_dead:
            self._out.append(MemberUp(row.info(), "revived"))

    def _m_election(self, msg: Election, now: float) -> None:
        s = msg.sender
        if self.role in (Role.LEAVING, Role.STOPPED):
            return
        if self.role is Role.MANAGER:
            if msg.term > self.term:
                # The candidate knows a term above ours (a manager that is gone, or it would
                # have deposed us by now): claim above it, or the candidate must refuse us.
                self._become_manager(now)
            self._send(s.address, Ok(self.me, self.term, self._my_claim()))
            if self.members.touch(s.name, s.incarnation, now) is None:
                self._send(s.address, Heartbeat(self.me, self.term, self._seq,
                                                self.members.epoch, self.members.infos(), None))
            return
        if self.role is Role.FOLLOWER:
            fresh = now - self._last_heard <= self.timings.vouch_window
            if fresh or msg.suspect != self.manager:
                self._send(s.address, Ok(self.me, self.term, self._claim))
                return
            self._send(s.address, Ok(self.me, self.term, None))
            self._start_election(now, suspect=self.manager or "")
            return
        if self.role is Role.JOINING:
            # Not a member yet: stay out of the election. A newcomer that knows nothing of
            # the cluster would win at once if it ranks high (it knows nobody above it), and
            # its near-empty member list would then replace everyone's. Ask the candidate
            # for the list instead; the winner's COORDINATOR (or a WELCOME) brings us in.
            self._learn((MemberInfo(s.name, s.address, s.incarnation, s.priority,
                                           True, ()),), now)
            self._send(s.address, Join(self.me, self.term, self.tasks))
            return
        self._send(s.address, Ok(self.me, self.term, None))  # already a candidate
        if self._phase == "wait":
            self._send_elections(now)  # a lower node is waiting on us: no point waiting

    def _m_ok(self, msg: Ok, now: float) -> None:
        if msg.manager is not None:
            if self._on_claim(msg.manager, now):
                return
            h = self.highest
            if (self.role is Role.CANDIDATE and h is not None and msg.manager.key < h.key
                    and msg.manager.name != h.name and self._known_dead(h)):
                # A live manager below a claim whose holder is gone: we must not follow it
                # and must not stand down on it (it will never announce a higher claim by
                # itself). Our ELECTION carries a term above the dead claim's (which may be
                # higher by rank only), so the manager claims above it. Once per manager
                # and candidacy: if it does not, we complete our candidacy instead.
                if msg.manager.address not in self._hinted:
                    self._hinted.add(msg.manager.address)
                    self._send(msg.manager.address,
                               Election(self.me, max(self.term, h.term + 1), self._suspect))
                return
        # Only a higher node's OK means "stand down, I will run": the probed suspect may answer
        # from below (restarted as a new incarnation, or no longer a manager) and must not
        # stall us; waiting on it would leave nobody to win.
        if (self.role is Role.CANDIDATE and self._phase == "ok"
                and msg.sender.rank > self.me.rank):
            self._phase = "coord"
            jitter = self.rng.uniform(0.0, self.timings.election_timeout)
            self._deadline = now + self.timings.coordinator_timeout + jitter

    def _m_coordinator(self, msg: Coordinator, now: float) -> None:
        if self.role is Role.LEAVING and msg.claim.name == self._successor:
            self._raise_highest(msg.claim)
            self._stop(f"left; handed over to {self._successor}")
            return
        if self._second_hand_suspect(msg.claim, msg.sender.name):
            return
        self._on_claim(msg.claim, now)

    def _second_hand_suspect(self, claim: Claim, sender: str) -> bool:
        """A candidate hears, from someone other than its holder, the claim of the manager it
        gave up on (no higher than it knew): ignore it. Such relays are often late (ZeroMQ
        delivers messages queued during a reconnect up to 100 ms after the fact), and
        following a dead manager again costs a whole manager timeout. Only the suspect itself
        (answering our probe) or a higher claim brings us back."""
        return (self.role is Role.CANDIDATE and claim.name == self._suspect
                and sender != claim.name and self.highest is not None
                and claim.key <= self.highest.key)

    def _m_leave(self, msg: Leave, now: float) -> None:
        s = msg.sender
        row = self.members.get(s.name)
        if row is None or row.peer.incarnation != s.incarnation:
            self._drop("not_member", f"LEAVE from {s.name!r} ({s.incarnation!r}): not a member")
            return
        if self.role is Role.MANAGER:
            self.members.remove(s.name)
            self._out.append(MemberDown(s.name, "left"))
        elif self.role is Role.FOLLOWER and s.name == self.manager:
            self._start_election(now, suspect=s.name)
        else:
            self.members.mark_dead(s.name)

    def _m_handover(self, msg: Handover, now: float) -> None:
        s = msg.sender
        if self.role is Role.MANAGER:
            # A lower manager stepped down to us: merge its members and state. Only from a
            # member or a node we sent our claim to, with a claim below ours.
            row = self.members.get(s.name)
            known = (row is not None and row.peer.incarnation == s.incarnation
                     and row.peer.address == s.address) or s.address in self._told
            if not known or (msg.term, s.priority, s.name) >= self._my_claim().key:
                self._drop("handover_stranger", f"HANDOVER from {s.name!r} at {s.address!r}: "
                                                "not a member, nor a manager we deposed")
                return
            self._learn(msg.members, now)
            self._out.append(StateHandedOver(s.name, msg.state, True))
            return
        if self.role in (Role.LEAVING, Role.STOPPED):
            return
        h = self.highest
        if h is None or h.name != s.name or h.term != msg.term:
            # Not from the manager we know as current, so not a graceful leave: a manager that
            # stepped down to us while we were still one (a merge) and we have stepped down
            # since. Taking over would depose the real manager with a needless new term; pass
            # the table and state on to the manager we follow instead.
            # Each HANDOVER is passed on once per node: followers can briefly follow each
            # other in a loop after restarts, and the message would circle at network speed.
            key = (s.name, s.incarnation, msg.term)
            if self.role is Role.FOLLOWER and self._claim is not None and (
                    key not in self._forwarded):
                self._forwarded[key] = None
                if len(self._forwarded) > FORWARD_MEMORY:
                    del self._forwarded[next(iter(self._forwarded))]
                self._send(self._claim.address, msg)
            return
        # Our manager is leaving and chose us: take over now, with a new term.
        self.replicated = msg.state
        self._become_manager(now, members=tuple(m for m in msg.members if m.name != s.name))
        self._send(s.address, Coordinator(self.me, self.term, self._my_claim()))
        self._out.append(StateHandedOver(s.name, msg.state, False))

    def _m_execute(self, msg: Execute, now: float) -> None:
        s = msg.sender
        claim = Claim(msg.term, s.priority, s.name, s.address)
        if s.name == self.me.name:  # a manager runs its own dispatches without the network
            self._drop("impersonation", f"EXECUTE in this node's own name ({s.incarnation!r})")
            return
        if self._claim is not None and claim.key == self._claim.key:
            self._out.append(Deliver(msg))
            return
        if self.highest is not None and claim.key < self.highest.key:
            self._on_claim(claim, now)  # stale: tells its holder about the newer claim
            error = f"stale term {msg.term} < {self.highest_term}"
            self._out.append(StaleExecute(msg, f"from claim {claim.key}, below the highest "
                                               f"seen {self.highest.key}"))
        elif self._claim is None and self.highest is not None and claim.key == self.highest.key:
            # From the manager we followed until we gave up on it (we are electing): it was
            # announced, so not a forgery; most likely queued while this node was frozen.
            error = "this node is electing a manager: its manager went silent"
            self._out.append(StaleExecute(msg, "arrived while electing: the manager that sent "
                                               "it had gone silent"))
        else:
            # Managers announce themselves (COORDINATOR, WELCOME) before they dispatch, on the
            # same connection: an EXECUTE is never the first word of a claim, so it is neither
            # followed nor run (a forged one would otherwise both install and use a manager).
            self._drop("execute_unannounced", f"EXECUTE from {s.name!r} at term {msg.term}: "
                                              "not from the manager this node follows")
            error = "not from the manager this node follows"
        self._send(s.address, Result(self.me, self.term, msg.task, msg.run_id, msg.slot,
                                     "refused", None, 0.0, error))

    def _m_from_manager(self, msg: Message, now: float) -> None:
        """RESULT_ACK and RUN_QUERY: only from the manager this node follows now (a deposed
        manager's are moot, a stranger's forged)."""
        claim = self._claim
        if (claim is not None and self.role is Role.FOLLOWER and msg.sender.name == claim.name
                and msg.sender.address == claim.address and msg.term == claim.term):
            self._out.append(Deliver(msg))

    def _m_deliver(self, msg: Message, now: float) -> None:
        if isinstance(msg, Result) and self.role is Role.MANAGER:
            self.members.touch(msg.sender.name, msg.sender.incarnation, now)
        self._out.append(Deliver(msg))


_HANDLERS: dict[type, Any] = {
    Join: NodeCore._m_join,
    Welcome: NodeCore._m_welcome,
    Refuse: NodeCore._m_refuse,
    Heartbeat: NodeCore._m_heartbeat,
    Ack: NodeCore._m_ack,
    Election: NodeCore._m_election,
    Ok: NodeCore._m_ok,
    Coordinator: NodeCore._m_coordinator,
    Leave: NodeCore._m_leave,
    Handover: NodeCore._m_handover,
    Execute: NodeCore._m_execute,
    Result: NodeCore._m_deliver,
    Offer: NodeCore._m_deliver,
    ResultAck: NodeCore._m_from_manager,
    RunQuery: NodeCore._m_from_manager,
    Status: NodeCore._m_deliver,
    StatusReply: NodeCore._m_deliver,
    Control: NodeCore._m_deliver,
    ControlReply: NodeCore._m_deliver,
}
