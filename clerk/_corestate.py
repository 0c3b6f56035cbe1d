"""What one node's core knows, and the small steps every part of the core takes with it.

:class:`CoreState` holds the whole state of a node's cluster brain (role, claims, member
table, timers, counters) and the public read-only view of it; the rules that change it live
in :mod:`clerk._joining` (membership and joining), :mod:`clerk._heartbeats` (heartbeats and
ACKs), :mod:`clerk._setfetch` (task sets by reference), :mod:`clerk._election` (claims followed,
bully election, role changes) and :mod:`clerk._handover` (merge and graceful hand-over), as
plain functions taking the state. :class:`~clerk._core.NodeCore` adds the one entry point.

Rules owned here:

* **Effects are collected, never performed.** Every step appends to ``_out``; ``handle``
  returns the list. A node never sends to itself (``send`` drops such effects).
* **Fencing token.** ``highest`` is the highest claim this node has seen; it never goes
  down, and ``accepts`` answers whether a manager message would be followed (module
  :mod:`clerk._claims`).
* **The replicated table** is two objects (:mod:`clerk._replica`): ``table_log``, the rows a
  manager sends (a new log at every claim of its own), and ``replica``, the rows received from
  the manager followed (or handed over). ``replicated`` is the whole table as one JSON value:
  the log's once it is complete on a manager, else the replica's.
* **Bounded memory.** Addresses we told our claim to, and members lost, are kept for at most
  ``MAX_LOST`` entries and ``LOST_HORIZON`` seconds: forged traffic cannot grow them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from clerk._claims import MAX_TERM_JUMP, TermBound, claim_of, message_term
from clerk._clockskew import SkewEstimator
from clerk._codec import MAX_MESSAGE_BYTES
from clerk._coretypes import INF, Dropped, Effect, Role, Send, Stopped
from clerk._fence import StallFence
from clerk._handparts import PartsInbox, wire_bytes
from clerk._membership import Member, MemberTable
from clerk._messages import Claim, Handover, Json, MemberInfo, Message, Peer, TableAt
from clerk._quorum import QuorumState
from clerk._record import PACK_CHUNK, unpack_table
from clerk._replica import HANDOVER_WHOLE_CHARS, Replica, ReplicaLog, handover_delta, table_text
from clerk._timings import Timings

__all__ = ["LOST_HORIZON", "MAX_LOST", "REJOIN_HEARD_S", "CoreState"]

#: Lost members (and seeds outside the list) are probed for this long, in seconds.
LOST_HORIZON = 3600.0
#: At most this many lost members are remembered (and probed).
MAX_LOST = 1024
#: A restarted node's claim waits for the OFFERs of the recorded members it heard from this
#: recently, when they are not members (clerk._joining, "Restarts"): a claim comes within
#: ``rejoin_timeout`` (5 s) and an election of hearing from them; later ones have joined.
REJOIN_HEARD_S = 30.0


def _none() -> Collection[str]:
    """``CoreState.covers`` until the task layer sets it: no member covered."""
    return ()


class CoreState:
    """The state of one node's core, its public view, and the shared small steps."""

    #: Table text per message that carries a table in parts (a merge's HANDOVERs,
    #: clerk._handover.step_down_to): within the 1 MiB limit. The simulator sets less.
    part_chars: int = HANDOVER_WHOLE_CHARS
    #: The message limit a graceful hand-over's parts are cut to, in encoded bytes
    #: (clerk._handparts). The simulator sets its own.
    message_bytes: int = MAX_MESSAGE_BYTES

    def __init__(
        self,
        me: Peer,
        *,
        now: float,
        rng: random.Random,
        seeds: tuple[str, ...] | list[str] = (),
        tasks: tuple[str, ...] = (),
        timings: Timings | None = None,
        max_term_jump: int = MAX_TERM_JUMP,
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
        self.table_log = ReplicaLog()
        self.replica = Replica()
        #: The manager whose table the replica holds (caught up on its log, or handed over):
        #: its rows are in that one's time base (clerk._adopt.begin_activation's table_of).
        self.table_from = ""
        self._claim: Claim | None = None  # the manager we follow (or our own claim)
        #: Part of a cluster in this incarnation: took a manager's member list (a WELCOME or
        #: a HEARTBEAT of the manager it follows, a hand-over) or claimed with members. A
        #: node that was not elects itself with a lone claim (clerk._claims, "Lone claims").
        self.joined = False
        # A claim's key and where its holder said its table stands (its COORDINATOR).
        self._announced: tuple[tuple[int, int, str], TableAt] | None = None
        self._last_heard = now
        #: Follower: seconds its manager has beyond ``manager_timeout`` to say its first word
        #: (``join_timeout`` for a claim followed on a relay's WELCOME, else 0): see
        #: :meth:`manager_due`.
        self._unheard = 0.0
        self._acked_at = -INF  # follower: when we last sent our manager an ACK
        self._ack_said: tuple[int, int, str] = (-1, -1, "")  # ... and what it said
        self._acked_seq = -1  # ... of which heartbeat round
        self._unacked_chars = 0  # ... and the table's row text received since
        self._epoch_seen = -1
        self.term_bound = TermBound(max_term_jump)
        self.dropped: Counter[str] = Counter()
        self._probation: dict[str, float] = {}  # admitted by JOIN, not heard from since
        self._told: dict[str, float] = {}  # addresses we sent our claim to (merge HANDOVERs)
        #: Duplicates of a live member's name (clerk._dupname), by address -> when last refused.
        self.refused_dups: dict[str, float] = {}
        self._seq = 0
        #: The wall clock (ms) a manager stamps its heartbeat rounds with (truncated to whole
        #: ms: earlier, so the members' estimates err upwards only), set by the shell (the
        #: agent, the simulator); None: no stamp. As follower: the offset of our clock to the
        #: manager's, from those stamps (clerk._clockskew), which our ACKs report.
        self.wall_ms: Callable[[], float] | None = None
        self.clock_skew = SkewEstimator()
        self._logs = 0  # table logs started (a part of each log's id)
        self._deadline = INF  # role-specific: join / election phase / leave
        self._phase = ""  # candidate: "ok" (waiting for OK) or "coord" (waiting for winner)
        self._suspect = ""
        self._suspect_addr = ""  # where to probe the suspect (it may not be in our list)
        self._probe_suspect = False
        self._disconnected = False  # the suspect's connection closed (PeerDown)
        self._hinted: set[str] = set()  # managers sent a term hint in this candidacy
        self._next_retry = INF  # joining: resend JOIN to seeds
        # Restarts (clerk._joining): the members our data directory recorded (name ->
        # address) not heard from since we started, and until when we wait for them.
        self._awaited: dict[str, str] = {}
        #: The other members our data directory recorded at the start (name -> address).
        self.recorded: dict[str, str] = {}
        #: ... and those heard from meanwhile (name -> when): a claim of ours announces itself
        #: to those that are not members and waits for their OFFERs, within
        #: ``REJOIN_HEARD_S`` (clerk._joining, "Restarts"; ``take_rejoin_heard``).
        self.rejoin_heard: dict[str, float] = {}
        self._rejoin_until = -INF
        self._next_heartbeat = INF
        self._next_probe = INF
        self._lost: dict[str, float] = {}  # addresses of members lost while manager -> when
        self._orphans: dict[str, float] = {}  # lost while we were manager, now a follower
        self._successor = ""
        # Leaving (clerk._handover, "Graceful leave"): the members handed over to so far, how
        # many times, where the last hand-over's delta brought its successor (None: it carried
        # the whole table), and the manager the rest of the table goes to as a merge.
        self._leave_tried: set[str] = set()
        self._leave_picks = 0
        self._leave_sent: TableAt | None = None
        self._leave_to: Claim | None = None
        #: Stopped as a member (not a manager that handed over): a COORDINATOR it hears of
        #: later gets our LEAVE (clerk._core, "A node that left").
        self._left_as_member = False
        #: The incarnation of the holder of ``highest`` when we left as a member, or of the last
        #: one that announced it to us since ("" unknown): the same claim announced by another
        #: incarnation is a restart of its holder that forgot our runs (clerk._leftmember).
        self._left_holder = ""
        #: (claim key, incarnation) of the holder of the claim we follow, as it announced
        #: itself (its HEARTBEAT, or its own COORDINATOR): ``_left_holder`` when we leave. The
        #: member list's row may still be its previous incarnation right after we followed.
        self._holder_seen: tuple[tuple[int, int, str], str] | None = None
        self.parts_in = PartsInbox()  # a graceful hand-over's parts to us (clerk._handparts)
        self._took_from = ""  # the leaving manager we took over from (its rest: accept_merge)
        self._forwarded: dict[tuple[str, str, int, str], None] = {}  # HANDOVERs passed on
        # Our merge HANDOVER's parts not confirmed yet (MERGED), by part id, the addresses
        # they went to, when to send them again, the wait after that, and when to give up
        # (clerk._handover, "Merges are confirmed").
        self._merge_out: dict[str, Handover] = {}
        self._merge_to: set[str] = set()
        self._merge_retry = INF
        self._merge_wait = 0.0
        self._merge_rounds = 0  # retries sent since the step-down (MERGE_OLD_RESENDS)
        self._merge_until = INF
        self.merge_resent = 0  # merge HANDOVER parts sent again, unconfirmed
        self._out: list[Effect] = []
        self._fence = StallFence(now)
        # Until then a closed connection is not taken as a crash (see _election.on_peer_down):
        # set when our own loop was seen frozen (:mod:`clerk._fence`).
        self.distrust_down_until = -INF
        self.returned_handovers = 0
        self.quorum: QuorumState | None = None  # quorum mode (set by NodeCore)
        #: Set by the task layer: the members whose rows the table it schedules covers, for
        #: our merge HANDOVER at a step-down (clerk._covers); none while it does not schedule.
        self.covers: Callable[[], Collection[str]] = _none

    # --- public view ------------------------------------------------------------------------

    @property
    def manager(self) -> str | None:
        """Name of the manager this node follows (or itself), None during an election."""
        return self._claim.name if self._claim is not None else None

    @property
    def manager_claim(self) -> Claim | None:
        return self._claim

    @property
    def manager_table(self) -> TableAt | None:
        """Where the table of the manager we follow stands, as its COORDINATOR said (None:
        not said, e.g. a node of an older build, or a claim learnt from someone else)."""
        a, claim = self._announced, self._claim
        if a is None or claim is None or a[0] != claim.key:
            return None
        return a[1]

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

    @property
    def max_term_jump(self) -> int:
        """The term bound's step (:mod:`clerk._claims`)."""
        return self.term_bound.jump

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
            # Our merge HANDOVER's parts not confirmed yet, and how many went again.
            "merge": {"unconfirmed": len(self._merge_out), "resent": self.merge_resent},
            # Table deltas this node's replica refused (a gap, another log, rows that are not
            # JSON; ``refused_hist`` of them: a history patch that did not fit) and why the
            # last one whose contents were refused was (clerk._replica).
            "replica": {"refused": self.replica.refused,
                        "refused_hist": self.replica.refused_hist,
                        "refusal": self.replica.refusal},
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
        } | self._member_clocks()

    def _member_clocks(self) -> dict[str, Any]:
        """A manager's ``member_clocks``: each member's clock offset to ours (ms) as its last
        ACK reported it (clerk._clockskew); none without an estimate, nor for a member
        held as dead (a left one is no member: its row is gone). A dead member's last value
        stayed, as if it still ran at that offset (tests/unit/test_skew2_member_clocks.py)."""
        if self.role is not Role.MANAGER:
            return {}
        return {"member_clocks": {r.name: r.clock_ms for r in self.members.others()
                                  if r.alive and r.clock_ms is not None}}

    @property
    def replicated(self) -> Json:
        """The whole replicated table (parsed: O(rows)); None if there is none."""
        if self.table_log.complete:
            return self.table_log.table()
        return self.replica.table()

    @replicated.setter
    def replicated(self, table: Json) -> None:
        """Hold ``table`` as the replica (a hand-over's table: a whole one, or the rows our
        replica lacks, see ``handover_state``)."""
        if isinstance(table, dict) and table.get("delta") == 1:
            delta = handover_delta(table)
            if delta is not None and (delta.log, delta.upto) == (self.replica.log,
                                                                  self.replica.seq):
                return  # our replica holds it all already (an empty delta)
            if delta is None or not self.replica.apply(delta):
                self.drop("handover_gap", "a hand-over's rows do not follow our replica: "
                                          "taking over with the replica as it is")
            return
        whole = unpack_table(table)
        if whole is None and isinstance(table, dict) and table.get("packed") == 1:
            # Malformed, or refused for a number that is not finite (clerk._record): held as
            # it is, as a gap is; reset to it, our replica (and our data directory's next
            # snapshot) held nothing and we took over with an empty table.
            self.drop("handover_rows", "a hand-over's packed table is malformed or refused: "
                                       "taking over with the replica as it is")
            return
        self.replica.reset(whole)
        log, upto = (table.get("log"), table.get("upto")) if isinstance(table, dict) else (0, 0)
        if self.replica and isinstance(log, str) and log and type(upto) is int:
            # A whole table in parts (clerk._handparts): exactly the leaver's log as of
            # ``upto``, so our replica stands there, caught up (its COORDINATOR says so).
            self.replica.log, self.replica.seq, self.replica.caught_up = log, upto, True

    def replicated_packed(self) -> Json:
        """The same table as it travels in a HANDOVER: packed (clerk._record.pack_table),
        made from the rows' text without parsing them."""
        source = self.table_log if self.table_log.complete else self.replica
        if not source.items():
            return None
        text = table_text(source.items())
        return {"packed": 1, "chunks": [text[i:i + PACK_CHUNK]
                                        for i in range(0, len(text), PACK_CHUNK)]}

    def handover_state(self, to: Member | None) -> Json:
        """The table for a graceful hand-over to member ``to``: whole and packed if it fits a
        message, else only the rows changed after the sequence ``to`` acknowledged (its
        replica holds the rest: the hand-over of 10,000 tasks is then a few rows)."""
        packed = self.replicated_packed()
        # (In encoded bytes: the text is escaped again in the message, clerk._handparts.)
        whole = 0 if packed is None else sum(wire_bytes(c) for c in packed["chunks"])
        log = self.table_log
        if (to is None or whole <= self.part_chars or not log.complete
                or to.acked_table < 0):
            return packed
        if to.acked_table >= log.seq:  # up to date: nothing to carry (delta() says None)
            return {"delta": 1, "log": log.log, "base": log.seq, "upto": log.seq,
                    "rows": [], "gone": []}
        delta = log.delta(to.acked_table, max_chars=self.part_chars)
        if delta is None or delta.upto != log.seq:
            return packed  # too far behind for one message: whole (in parts if big: _handover)
        return {"delta": 1, "log": delta.log, "base": delta.base, "upto": delta.upto,
                "rows": list(delta.rows), "gone": list(delta.gone)}

    @property
    def heartbeat_rounds(self) -> int:
        """Manager: heartbeat rounds sent so far (each sends every member a message)."""
        return self._seq

    def replicated_upto(self) -> int:
        """Manager: the highest sequence of the table log that every live member
        acknowledged (the log's own sequence with no live member; -1 while the log is
        incomplete: a member may lack rows the log has not encoded yet)."""
        log = self.table_log
        if not log.complete:
            return -1
        upto = log.seq
        for row in self.members.others():
            if row.alive and row.acked_table < upto:
                upto = row.acked_table
        return upto

    def new_log(self, keep: bool) -> None:
        """A claim of our own: a new table log (its sequences mean nothing to members).
        ``keep``: we were the manager already (a claim above a higher term): our own last
        table stays the one we hold."""
        self._logs += 1
        if keep and self.table_log.complete:
            self.replica.take(self.table_log.items())
        for row in self.members:
            row.reset_table()
        self.table_log = ReplicaLog(f"{self.me.incarnation}.{self.term}.{self._logs}")

    def accepts(self, term: int, sender: Peer) -> bool:
        """Fencing: would a manager message with this term from ``sender`` be followed?"""
        claim = claim_of(sender, term)
        return self.highest is None or claim.key >= self.highest.key

    def next_deadline(self) -> float:
        """The monotonic time at which the next :class:`~clerk._core.Tick` is due."""
        if self.role is Role.MANAGER:
            return min(self._next_heartbeat, self._next_probe, self.next_fetch())
        if self.role is Role.FOLLOWER:
            return min(self.manager_due(), self._next_probe, self.next_fetch(),
                       self._merge_retry)
        if self.role is Role.JOINING:
            return min(self.elect_at(), self._next_retry)
        if self.role is Role.LEAVING:
            return min(self._deadline, self._merge_retry)
        if self.role is Role.CANDIDATE:
            return self._deadline
        return INF

    def manager_due(self) -> float:
        """Follower: when the manager it follows is suspected, ``manager_timeout`` after its
        last word. A claim followed on a relay's WELCOME (a joiner through a seed that is not
        the manager) gives the manager ``join_timeout`` more for its first word: it answers
        our JOIN a round trip and a turn of its loop later, and the relay's word says nothing
        of how recently it was heard. Counted from the relay, a joiner declared "manager
        lost" 0.7 s after joining, with the manager's answer on its way
        (tests/unit/test_sim_join_clock.py)."""
        return self._last_heard + self.timings.manager_timeout + self._unheard

    def heard_manager(self, now: float) -> None:
        """Follower: a word of the manager it follows itself (its WELCOME, a heartbeat, a
        part of its hand-over): its silence counts from ``now``."""
        self._last_heard = now
        self._unheard = 0.0

    def next_fetch(self) -> float:
        """When to ask for the task sets our rows wait for (clerk._tasksets)."""
        return self.members.sets.next_retry() if self.members.wanting else INF

    def elect_at(self) -> float:
        """JOINING: when we call an election if no manager welcomes us first: at the join
        timeout, or, while members our data directory recorded are still unheard of, at the
        rejoin timeout (see clerk._joining, "Restarts")."""
        if self._awaited:
            return max(self._deadline, self._rejoin_until)
        return self._deadline

    # --- small steps shared by every part of the core ---------------------------------------

    def send(self, to: str, msg: Message) -> None:
        if to != self.me.address:
            self._out.append(Send(to, msg))

    def my_claim(self) -> Claim:
        return Claim(self.term, self.me.priority, self.me.name, self.me.address)

    def see_term(self, term: int) -> None:
        if term > self.max_term:
            self.max_term = term

    def raise_highest(self, claim: Claim) -> None:
        if self.highest is None or claim.key > self.highest.key:
            self.highest = claim
        self.see_term(claim.term)

    def known_dead(self, claim: Claim) -> bool:
        """Is the holder of ``claim`` known to be gone (the manager we gave up on, or a member
        marked dead)? Such a claim is not worth advertising: a live manager that followed it
        would only wait out the manager timeout and elect again."""
        if claim.name == self.me.name:
            return False
        if self._claim is None and claim.name == self._suspect:
            return True
        row = self.members.get(claim.name)
        return row is not None and not row.alive

    def probe_jitter(self) -> float:
        """A follower's probe period: 1-1.5 probe intervals, so that followers do not probe
        in step with each other (or with their manager's heartbeats)."""
        return self.timings.probe_interval * self.rng.uniform(1.0, 1.5)

    def tell(self, address: str, now: float) -> None:
        """Remember that we sent our claim to ``address`` (it may hand over to us)."""
        self._told[address] = now
        if len(self._told) > MAX_LOST:
            del self._told[next(iter(self._told))]

    def drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self._out.append(Dropped(reason, detail))

    def take_rejoin_heard(self, now: float) -> set[str]:
        """The members our data directory recorded that we heard from since the restart,
        within ``REJOIN_HEARD_S``, that are not members now (a takeover waits for their
        OFFERs: :mod:`clerk._joining`, "Restarts"); the others are forgotten."""
        self.rejoin_heard = {name: when for name, when in self.rejoin_heard.items()
                             if name not in self.members and now - when <= REJOIN_HEARD_S}
        return set(self.rejoin_heard)

    def term_ok(self, msg: Message, now: float) -> bool:
        """The term bound (:mod:`clerk._claims`): drop a message whose term is too far up."""
        term = message_term(msg)
        if self.term_bound.admits(term, self.max_term, now, self.timings.probe_interval):
            return True
        self.drop("term_jump", f"{type(msg).__name__} from {msg.sender.name!r}: term {term} "
                               f"is more than {self.max_term_jump} above the bound")
        return False

    def stop(self, reason: str) -> None:
        self.role = Role.STOPPED
        self._deadline = INF
        self._out.append(Stopped(reason))
