"""The node's cluster brain: membership and bully election with terms, as one pure state machine.

``NodeCore.handle(event, now) -> [effects]``: no sockets, no clock, no threads. The same class
runs in unit tests (fake clock), in ``tools/simulate.py`` (hundreds of simulated nodes) and in
the real node (the ZeroMQ shell feeds it decoded messages and ticks and carries out the
``Send`` effects). Randomness (election back-off jitter) comes from an injected ``random.Random``.

This module is the entry point (events, ticks, the shell's calls); the rules live in the
modules it routes to, each opening with the rules it owns:

* :mod:`clerk._coretypes`: roles, events and effects (all re-exported here);
* :mod:`clerk._claims`: the claim order and the term bound;
* :mod:`clerk._corestate`: the state, its public view, and the small shared steps;
* :mod:`clerk._joining`: membership and joining, probes of lost members and seeds;
* :mod:`clerk._heartbeats`: a manager's heartbeats and its members' ACKs, the stall fence's use;
* :mod:`clerk._setfetch`: member lists' task sets by reference, fetched from their holders;
* :mod:`clerk._election`: following claims, the bully election, every change of role;
* :mod:`clerk._handover`: merges of two managers and the graceful hand-over;
* :mod:`clerk._dupname`: a second node in a live member's name (refused, never followed);
* :mod:`clerk._coremessages`: the checks every message passes, its routing to its handler,
  EXECUTE's fencing and what is delivered to the task layer (a base of ``NodeCore``);
* :mod:`clerk._corequorum`: quorum mode's calls on the core and its outcomes (a base of
  ``NodeCore``);
* :mod:`clerk._quorumcore`: quorum mode (voters, PREPARE/ACCEPT, check-quorum), which runs
  only with ``voters``.

Rules owned here:

* **One step at a time.** ``handle`` first checks the stall fence (a manager whose loop did
  not run for longer than ``manager_timeout``, :mod:`clerk._fence`), then applies the event;
  a STOPPED core ignores everything but a RESULT from another node, which it still delivers:
  a node that left keeps its loop until its runs in flight end, and the last manager of a
  full stop waits there for the results of its runs on members, to write them into its
  table (``TaskRunner.ready_to_leave``; before, they were dropped here), and the few
  messages :mod:`clerk._leftmember` takes. Every message passes the checks of
  :mod:`clerk._coremessages` before its handler. After the event, a lone manager (term 0) that
  has a live member now claims again (:func:`clerk._election.graduate`, :mod:`clerk._claims`).
* **OFFERs again.** A follower whose link to its manager comes (back) up (``PeerUp``: the
  link's DEALER connected again, after a heal or a reconnect) tells its task layer
  (``OfferAgain``) to send that manager its OFFER again: the OFFER leaves once, when the
  node starts following, and one sent while the link was down is lost once it waited
  ``clerk._transport.PENDING_TTL`` (1 s) for the connection, or with the connection it was
  written to, while a new manager may hold every dispatch until each live member's OFFER is
  in (up to ``OFFER_WAIT_SURE_MS``, clerk._adopt). Not when the link comes up within
  ``OFFER_FLUSHED_S`` of the node starting to follow and has not gone down (``PeerDown``)
  since: the first connection to a new manager, which carries the OFFER queued for it (every
  follower would otherwise send each new manager its OFFER twice). The manager merges a
  second OFFER idempotently (rows by lineage, runs already adopted or finished ignored,
  results by run id).
* **A node that left** (stopped) still gives a manager it hears of the runs and results it
  holds (:mod:`clerk._leftmember`).
* **Hostile input** (``--insecure``: anyone can send anything). Beyond the codec's checks, the
  core drops and counts (``Dropped`` effects, shown in status): a LEAVE or a graceful HANDOVER
  from a non-member or a stale incarnation, a REFUSE from anyone but our manager or a seed, an
  EXECUTE from a manager this node does not already follow (answered ``refused``), a merge
  HANDOVER from a node that is neither a member (or one we lost) nor one we sent our claim to,
  a MERGED from a node we sent no merge HANDOVER to (nor our manager), and JOINs beyond
  ``MAX_PROBATION`` admitted members that have not acknowledged yet (a flood of forged names;
  a real joiner retries). Replayed or reordered messages carry old claims, which the claim
  order already ignores. A peer that knows the cluster (names, incarnations, terms) can still
  forge anything without CURVE: that is what the cookie is for.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import Any

from clerk import _election, _handover, _heartbeats, _joining, _leftmember, _quorumcore, _setfetch
from clerk._claims import LONE_TERM, MAX_TERM_JUMP
from clerk._coremessages import CoreMessages
from clerk._corestate import LOST_HORIZON, MAX_LOST  # noqa: F401  (re-exported)
from clerk._coretypes import (
    Deliver,
    Dropped,
    Effect,
    Event,
    LeaveRequested,
    LeftHeard,
    LeftUnlisted,
    ManagerChanged,
    MemberDown,
    MemberUp,
    OfferAgain,
    PeerDown,
    PeerUp,
    QuorumChanged,
    Received,
    Refused,
    Role,
    Send,
    StaleExecute,
    Start,
    StateHandedOver,
    Stopped,
    Tick,
    VoterWrite,
    WriteCommitted,
)
from clerk._election import DISCONNECT_PROBE, STAGGER_STEPS  # noqa: F401
from clerk._handover import FORWARD_MEMORY  # noqa: F401
from clerk._heartbeats import RESUME_GAP
from clerk._joining import MAX_LEARN, MAX_PROBATION  # noqa: F401
from clerk._messages import Claim, Join, Json, Peer
from clerk._record import unpack_table
from clerk._timings import Timings

__all__ = [
    "OFFER_FLUSHED_S",
    "Deliver",
    "Dropped",
    "Effect",
    "Event",
    "LeaveRequested",
    "LeftHeard",
    "LeftUnlisted",
    "ManagerChanged",
    "MemberDown",
    "MemberUp",
    "NodeCore",
    "OfferAgain",
    "PeerDown",
    "PeerUp",
    "QuorumChanged",
    "Received",
    "Refused",
    "Role",
    "Send",
    "StaleExecute",
    "Start",
    "StateHandedOver",
    "Stopped",
    "Tick",
    "VoterWrite",
    "WriteCommitted",
]

#: A link to the manager a node follows that comes up this soon (s) after it started following,
#: and has not gone down since, carried its OFFER (queued for the connection, and flushed
#: first): no ``OfferAgain`` (see the module docstring, "OFFERs again"). Below the transport's
#: ``PENDING_TTL`` (1 s).
OFFER_FLUSHED_S = 0.5


class NodeCore(CoreMessages):
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
        voters: Sequence[str] = (),
        voter_record: Mapping[str, Any] | None = None,
    ) -> None:
        """``voters``: quorum mode's voters (empty: the default mode); ``voter_record``: what
        this node's voter file held at start (None: fresh; ignored unless it is a voter).
        A malformed record is a ``ValueError``: starting fresh would break a promise."""
        # MAX_TERM_JUMP is read here, at construction, so that a test (or the simulator) can
        # shrink the bound by patching this module's constant.
        super().__init__(me, now=now, rng=rng, seeds=seeds, tasks=tasks, timings=timings,
                         max_term_jump=MAX_TERM_JUMP)
        # The link to the manager we follow (see "OFFERs again"): the claim it is noted for,
        # since when we follow it (or it last came up), whether it went down since.
        self._link_claim: Claim | None = None
        self._link_since = now
        self._link_down = False
        if voters:
            q = self.quorum = _quorumcore.QuorumState(me.name, voters, voter_record)
            if q.register is not None and q.register.promised is not None:
                # Our next ballot must be above the one we promised before the restart.
                self.see_term(q.register.promised[0])

    # --- the one entry point, and the calls the shell makes besides ------------------------

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Apply ``event`` at monotonic time ``now``; return what the shell must do."""
        self._out = []
        if self.role is Role.STOPPED:
            return _leftmember.stopped(self, event, now)
        gap = self._fence.gap(now)
        if gap > self.timings.manager_timeout and self.role is Role.MANAGER:
            _heartbeats.stalled(self, now)
            _heartbeats.resumed(self, now)
        elif gap > RESUME_GAP:
            _heartbeats.resumed(self, now)
        if self.quorum is not None:
            self.quorum.now = now
        if isinstance(event, Tick):
            self._on_tick(now)
        elif isinstance(event, Received):
            self._on_message(event.msg, now)
        elif isinstance(event, PeerDown):
            self._manager_link(event.address, now, up=False)
            _election.on_peer_down(self, event.address, now)
        elif isinstance(event, PeerUp):
            _joining.on_peer_up(self, event.address)
            self._manager_link(event.address, now, up=True)
        elif isinstance(event, Start):
            self._on_start(now)
        elif isinstance(event, LeaveRequested):
            _handover.leave(self, now)
        if self.quorum is not None and self.role is not Role.STOPPED:
            _quorumcore.observe(self, now)
        elif self.term == LONE_TERM and self.role is Role.MANAGER:
            _election.graduate(self, now)  # a lone manager that got a member claims again
        if self._claim != self._link_claim:  # (we follow another claim from now on)
            self._link_claim, self._link_since, self._link_down = self._claim, now, False
        out, self._out = self._out, []
        return out

    def leave_again(self, address: str) -> list[Effect]:
        """A node that left as a member: its LEAVE to the manager at ``address``
        (:func:`clerk._leftmember.leave_again`)."""
        return _leftmember.leave_again(self, address)

    def set_replicated(self, state: Json) -> None:
        """Manager only: make the table log hold exactly this whole table (O(rows): the
        task layer puts changed rows into ``table_log`` itself, see clerk._replication);
        members get what changed with the next heartbeats."""
        self.table_log.put_table(unpack_table(state))

    def heartbeat_now(self, now: float) -> list[Effect]:
        """Manager only: send a heartbeat round at once (e.g. to replicate a new task state
        without waiting for the next interval). Returns the effects to carry out."""
        if self.role is not Role.MANAGER:
            return []
        self._out = []
        _heartbeats.heartbeat_round(self, now)
        out, self._out = self._out, []
        return out

    def set_tasks(self, tasks: tuple[str, ...], now: float) -> list[Effect]:
        """Advertise the tasks this node can run now (e.g. once its workers are ready: a node
        is not eligible for runs before). Returns the effects to carry out."""
        self._out = []
        self.tasks = tuple(tasks)
        if self.members.set_tasks(self.me.name, self.tasks) and (
                self.role is Role.FOLLOWER and self._claim is not None):
            self.send(self._claim.address, Join(self.me, self.term, self.tasks))
        out, self._out = self._out, []
        return out

    # --- events -----------------------------------------------------------------------------

    def rejoin(self, members: Mapping[str, str], timeout: float | None = None) -> None:
        """Before ``Start``: the other members (name -> address) this node's data directory
        recorded. It waits for them, at most ``timeout`` s (default: the timings'
        ``rejoin_timeout``), before it runs alone (:mod:`clerk._joining`, "Restarts")."""
        if timeout is not None:
            self.timings = dataclasses.replace(self.timings, rejoin_timeout=timeout)
        _joining.remember(self, members)

    def _on_start(self, now: float) -> None:
        if not self.seeds and not self._awaited:
            _election.become_manager(self, now)
            return
        self.role = Role.JOINING
        self._deadline = now + self.timings.join_timeout
        if self._awaited:
            self._rejoin_until = now + self.timings.rejoin_timeout
        _joining.send_joins(self, now)

    def _on_tick(self, now: float) -> None:
        role = self.role
        if role is Role.MANAGER:
            if now >= self._next_heartbeat:
                _heartbeats.heartbeat_round(self, now)
            if now >= self._next_probe:
                _joining.probe(self, now)
            if self.quorum is not None:
                self._quorum_outcome(_quorumcore.tick(self, now), now)
            if now >= self.next_fetch():
                _setfetch.fetch_sets(self, now)
        elif role is Role.FOLLOWER:
            if now >= self.next_fetch():
                _setfetch.fetch_sets(self, now)
            if now >= self._merge_retry:
                _handover.retry_merge(self, now)
            if now >= self.manager_due():
                _election.start_election(self, now, suspect=self.manager or "")
            elif now >= self._next_probe:
                _joining.probe_seeds(self, now)
        elif role is Role.JOINING:
            if now >= self.elect_at():
                _joining.give_up_waiting(self)
                _election.start_election(self, now, suspect="")
            elif now >= self._next_retry:
                _joining.send_joins(self, now)
        elif role is Role.CANDIDATE:
            if now >= self._deadline:
                if self._phase == "prepare":
                    self._quorum_outcome(_quorumcore.tick(self, now), now)
                elif self._phase == "wait":
                    _election.send_elections(self, now)
                elif self._phase == "ok":
                    _election.become_manager(self, now)
                else:
                    _election.start_election(self, now, self._suspect, self._probe_suspect)
        elif role is Role.LEAVING:
            if now >= self._merge_retry:
                _handover.retry_merge(self, now)
            if now >= self._deadline:
                _handover.leave_timeout(self, now)

    def _manager_link(self, address: str, now: float, up: bool) -> None:
        """A link came up or went down: if it is the one to the manager we follow, note it,
        and tell the task layer to OFFER again when it is up (see the module docstring,
        "OFFERs again")."""
        claim = self._claim
        if claim is None or claim.address != address:
            return
        if claim != self._link_claim:
            self._link_claim, self._link_since, self._link_down = claim, now, False
        if not up:
            self._link_down = True
            return
        if self.role is Role.FOLLOWER and (self._link_down
                                           or now - self._link_since > OFFER_FLUSHED_S):
            self._out.append(OfferAgain(claim.name, address))
        self._link_since, self._link_down = now, False
