"""The task layer's copies of the table: replication to the members, OFFERs, the data directory.

* **Replication** (manager): the rows the scheduler changed are encoded into the core's table
  log (:mod:`clerk._replica`), at most ``ENCODE_BUDGET`` s of encoding per step, and a
  heartbeat round sends each member what it lacks: in the same step when the rows are all
  encoded, else in the next step (no step does a whole budget of encoding and a round).
  Paced so it takes at most ~1/``REPLICATE_SHARE`` of the loop (a burst of results is
  coalesced into one round).
* **OFFERs** (member): each manager this node follows gets the rows it holds with a state (its
  data directory's, merged with the replica). A fellow member taking over says where its table
  stands (``Coordinator.table``: its replica, caught up with a log at a sequence): it gets only
  the rows this node may hold beyond that (``clerk._replica.offer_keys``: rows changed after
  that sequence in our copy of the same log, rows of no known sequence, and rows from our data
  directory); every row when it did not say or is a manager from elsewhere. Never only "beyond
  our replica" on the assumption that the new manager holds the same replica: it may lag, or
  have rejoined moments ago. Sent even when empty (it says "nothing here", so ``init`` need
  not wait). Built in slices of the loop from the rows as they are when this node starts
  following, parsing only the rows it must merge with a state of its own, and sent a part per
  turn, each within the message limit; this node's results to the new manager follow it
  (:mod:`clerk._offerjob`). The manager merges an OFFER only from a
  member; one from a node not admitted yet is held (at most ``MAX_HELD_OFFERS``) until its
  ``MemberUp``.
* **The data directory** (:mod:`clerk._store`) holds the table this node holds: the rows of
  its log or replica as they are, or a leaving manager's own last table (results of its runs
  in flight); writes are coalesced and paced. Once the store holds the log's (or replica's)
  rows, a write hands over only the rows changed since the last one (their change sets:
  ``track``, ``take_changes``), appended to the journal off the loop; a new log or replica,
  or one replaced wholesale, is handed over whole (a snapshot).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from clerk._messages import Offer, Peer, TableAt
from clerk._offerjob import (
    MAX_OFFER_PARTS,
    OFFER_CHARS,
    OfferJob,
    OfferParts,
    number_parts,
    offer_job,
)
from clerk._offerruns import OfferedRun, adopt_runs, offered_runs, run_of
from clerk._record import pack_table
from clerk._replica import offer_test
from clerk._runnerdefs import Definitions
from clerk._statusjob import Slice

__all__ = ["ENCODE_BUDGET", "LOAD_BUDGET", "LOCAL_GAP_S", "MAX_HELD_OFFERS", "MAX_OFFER_PARTS",
           "OFFER_CHARS", "REPLICATE_GAP_S", "REPLICATE_SHARE", "SHORT_RUN_MS", "Replication",
           "offer_parts", "short_runs"]

_log = logging.getLogger("clerk.tasks")

#: Replication (the rows changed since each member's acknowledged point, to every member) may
#: take at most ~1/REPLICATE_SHARE of the manager's loop, and of each follower's: after a
#: round that cost ``c`` seconds, the next waits ``c * (REPLICATE_SHARE - 1)``, and never less
#: than ``clerk._routing.REPLICATE_GAP_S`` after the previous round (a change after a quiet
#: spell goes at once; the changes of the next 10 ms share a round). With 1000 tasks the cost
#: pacing coalesces the results of tens of milliseconds instead of a round per result.
REPLICATE_SHARE = 10
#: The shortest time between two replication rounds of the manager (seconds), on top of the
#: pacing by cost (REPLICATE_SHARE, ~2 ms for a few tasks). A round is a
#: heartbeat to every member and an ACK from each: four ZeroMQ messages on a 3-node cluster,
#: each waking its sender's ZeroMQ I/O thread, the receiver's and the receiver's loop. At 400
#: runs/s nearly every result was a round of its own (~0.7 per run, two thirds of the
#: cluster's wake-ups: tools/bench_tasks.py (c)); with this gap a round carries the changes
#: of up to 25 ms (10 ms before: at 100 runs/s that was still about a round per run). A
#: change after a quiet spell still goes at once; what waits is only the members' copy of
#: the changes that follow it within the gap (and so their RESULT_ACKs, held until every
#: member has the row): a window the cost pacing already opens wider for big tables (tens
#: of ms at 1,000 tasks), and which a takeover covers (the dispatch guard of clerk._lead,
#: results resent from the nodes' outboxes). Not held by it: slices of a takeover's encoding
#: (only a round that left nothing to encode starts the gap), and the result of a run on the
#: manager's own node, which no outbox elsewhere keeps (a crash before its round loses that
#: update, README "What is guaranteed"): its round waits only ``LOCAL_GAP_S``.
REPLICATE_GAP_S = 0.025
#: The shortest time between a round and the next one that a result of a run on the
#: manager's own node calls for (seconds; the cost pacing on top). Such a result has no copy
#: elsewhere until its round: this bounds the window in which a manager crash loses that one
#: update (README "What is guaranteed": within 10 ms on a small cluster). It was the cost
#: pacing alone (~2 ms): at 400 runs/s a third of the results are the manager's own, and
#: each called a round of its own, ~140 rounds/s in all instead of one per gap, each a
#: heartbeat to every member and an ACK back (README "Fewer rounds").
LOCAL_GAP_S = 0.010
#: A dispatch waits for the next round (the gap after the last one, the cost pacing) only for
#: a task whose runs are short: its last run ended well (ok or error) in under this many ms.
#: Any other dispatch (a task that never ran, was skipped, refused, timed out, or ran this long
#: or longer) sends its round at once. Why: the members learn that a run is in flight only from
#: a round. A manager that dies before it leaves a new manager that does not know of the run:
#: the takeover guard (clerk._lead) keeps the slot itself from running twice, and a short run
#: has ended, its result kept in its node's outbox and applied as the row's continuation
#: (clerk._running), before the new manager can dispatch the next slot (its first slot is due
#: more than MAX_DISPATCH_LEAD_MS after it took over). A long run is still going then: the new
#: manager sent the next slot beside it (the task overlapped itself) and dropped its result (a
#: run was in flight; now counted in ``conflicts``: clerk._running), and the next run repeated
#: the count. Found by a review in the simulator (tests/unit/test_sim_gap.py). A short task
#: whose run suddenly lasts far longer is still exposed inside the gap (README "What is
#: guaranteed").
SHORT_RUN_MS = 10.0
#: Row encoding per replication step, in seconds: a takeover puts every row into the new
#: table log (10,000 rows are ~250 ms of encoding on a loaded machine), in slices of this
#: much, so a step (the slice, then the heartbeat round sending those rows) stays near 1 ms.
ENCODE_BUDGET = 0.0004
#: Row parsing per loop turn while a new manager loads the table it takes over
#: (``Scheduler.load_rows``), in seconds: a 10,000-task table is ~0.5 s of parsing on a
#: loaded machine, and the loop (heartbeats, ACKs, results) must run between slices like
#: between encoding ones. The same slice as ``ENCODE_BUDGET``: a turn stays near 1 ms.
LOAD_BUDGET = 0.0004
#: OFFERs kept for nodes that follow this manager but are not admitted yet: a joiner's JOIN
#: and OFFER leave together, so one or two are held at a time; the bound is for forgeries.
MAX_HELD_OFFERS = 64
#: Rows of the replica compared with what a follower parsed last, per look at the clock.
FOLLOW_SCAN = 1024


def short_runs(last: Any) -> bool:
    """Does a task whose row's ``last`` is this run short (``SHORT_RUN_MS``)?"""
    if type(last) is not dict:
        if not isinstance(last, dict):
            return False
    if last.get("outcome") not in ("ok", "error"):
        return False
    duration = last.get("duration_ms")
    if type(duration) is float:  # (as the manager writes it: every dispatch asks)
        return duration < SHORT_RUN_MS
    return (isinstance(duration, int | float) and not isinstance(duration, bool)
            and duration < SHORT_RUN_MS)


def offer_parts(rows: dict[str, Any], limit: int = OFFER_CHARS) -> list[Any]:
    """``rows`` (task rows by name) packed for OFFERs (``pack_table``), in as many parts as
    keep each under ``limit`` characters of table text (an OFFER is one message: at most
    1 MiB). One part, maybe empty, when they fit."""
    return number_parts(_cut(rows, limit))


def _cut(rows: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    packed = pack_table({"tasks": rows})
    size = sum(len(c) for c in packed["chunks"])
    if size <= limit or len(rows) <= 1:
        return [packed]
    items = list(rows.items())
    step = math.ceil(len(items) / math.ceil(size / (limit * 0.8)))
    out: list[dict[str, Any]] = []
    for i in range(0, len(items), step):
        out += _cut(dict(items[i:i + step]), limit)
    return out


def _keep_part(kept: dict[str, list[Offer]], msg: Offer) -> None:
    """Keep ``msg`` with the other parts of its sender's OFFER (``offer_parts``): those of
    one incarnation following one claim (its term); an OFFER of another replaces them."""
    name = msg.sender.name
    parts = kept.pop(name, [])
    if parts and (parts[0].term, parts[0].sender.incarnation) != (msg.term,
                                                                    msg.sender.incarnation):
        parts = []
    if len(parts) < MAX_OFFER_PARTS:
        parts.append(msg)
    kept[name] = parts


class Replication(Definitions):
    """Replication, OFFERs and persistence (see the module docstring)."""

    #: The last replication step encoded rows until its budget ran out and sent nothing: the
    #: next one sends (``_replicate``).
    _send_next = False
    _encode_cost = 0.0  # (that step's, in seconds: paced with the step that sends)
    #: When this manager's last round went (monotonic). A step that leaves rows to encode
    #: sends the rows encoded so far in a round of its own only once ``_slice_round_gap``
    #: has passed since: see ``_replicate``.
    _round_went = -math.inf
    #: 0 here: every such step is followed by a round (clerk._routing sets REPLICATE_GAP_S).
    _slice_round_gap = 0.0
    #: The OFFER under way to the manager this node follows (built in slices).
    _offer_job: OfferJob | None = None
    #: A member that left: its LEAVE goes to this address once its OFFER there is sent
    #: (clerk._runleave.Leaving.on_left_heard).
    _leave_after_offer: str | None = None
    #: As manager: the parts of the members' OFFERs (clerk._offerjob, "Numbered parts").
    _offer_parts: OfferParts

    if TYPE_CHECKING:  # provided by clerk._routing
        def _log_conflicts(self) -> None: ...
        def _stamp_acks(self) -> None: ...

    def _offer(self, to: str, now: float, at: TableAt | None = None) -> None:
        """Send the new manager the rows we hold with a state (our data directory's, merged
        with the replica): it keeps the most advanced lineage any member holds, and calls
        ``init`` only when no member has a state. Sent even when empty: it says "nothing
        here", so the manager's ``init`` need not wait.

        ``at``: where the new manager's table stands (a fellow member's replica, caught up
        with a log: see the module docstring); then only the rows it may lack: those our copy
        of that log holds changed after it (``offer_test``), and the states our replica's rows
        do not hold (a task it has no row for, or one whose state the load kept over the
        row's, ``kept_own``). Built from the rows as they are now, in slices of the loop, a
        part sent per turn (clerk._offerjob); our results wait for it (``offer_pending``).
        In one step, it parsed the replica rows the scheduler had not seen: ~0.7 s at 10,000
        tasks."""
        core = self.agent.core
        source = core.table_log if core.table_log.complete else core.replica
        if self._rows_seen is None:
            self._rows_seen = {}
        me, term, agent = self.agent.me, core.term, self.agent

        def send(part: Any) -> None:
            agent.send(to, Offer(me, term, part), agent.clock.monotonic())

        self._offer_job = offer_job(to, self.scheduler, source.texts(),
                                    offer_test(source, at), self._rows_seen, send,
                                    self._runs_in_flight)
        self._offer_step(now)

    def _runs_in_flight(self, as_sent: bool = True) -> list[OfferedRun]:
        """The runs queued or running on this node, for the OFFER (clerk._offerruns): with
        the times their manager sent (``as_sent``), else in this node's time base (its own
        runs adopted when it takes over: clerk._clockskew.AsSent)."""
        ex = self.executor
        runs = [] if ex is None else [run_of(m) for m in ex.runs_in_flight()]
        return self.as_sent.offered(runs) if as_sent else runs

    def offer_pending(self, to: str) -> bool:
        """Is an OFFER to ``to`` under way (our results to it wait until it is sent)?"""
        job = self._offer_job
        return job is not None and job.to == to

    def _offer_step(self, now: float) -> None:
        """A slice of the OFFER under way (clerk._offerjob); once its last part is sent, the
        results the new manager has not acknowledged (the old one may have died with them in
        its inbox) follow it."""
        job = self._offer_job
        if job is None or not job.step(LOAD_BUDGET):
            return
        self._offer_job = None
        for result in self.outbox.unacked(now):
            self.agent.send(job.to, result, now)
        if self._leave_after_offer == job.to:  # (a member that left: then its LEAVE)
            self._leave_after_offer = None
            self.agent.apply(self.agent.core.leave_again(job.to), now)

    def _follow_replica(self) -> None:
        """Bring the scheduler of a node that does not schedule (a follower: for a status, a
        ``show``, an OFFER) up to the replicated table, parsing only the rows whose text
        changed since it last did: the log and the replica keep a row's text object until
        the row changes. A status of a 10,000-task follower parsed every row (~0.5 s)."""
        for _ in self._follow_steps(None):
            pass

    def _follow_steps(self, sl: Slice | None) -> Iterator[None]:
        """:meth:`_follow_replica` in slices (``sl``: yields whenever its deadline passed;
        None: in one go). The rows it loads are noted as changed for a status being built
        meanwhile (``Scheduler.dirty.watchers``), as the manager's own changes are."""
        sched = self.scheduler
        if sched.active or sched.activating or self._activate is not None:
            return  # the table is this node's own, or being loaded (_load_step)
        core = self.agent.core
        source = core.table_log if core.table_log.complete else core.replica
        if self._rows_seen is None:
            self._rows_seen = {}
        seen = self._rows_seen
        items = source.rows()
        changed: list[tuple[str, str | None]] = []
        for i in range(0, len(items), FOLLOW_SCAN):
            changed += [(k, t) for k, t in items[i:i + FOLLOW_SCAN] if seen.get(k) is not t]
            if sl is not None and sl.over():
                yield
        at = 0
        while at < len(changed):
            end = sched.load_rows(changed, at, math.inf if sl is None else sl.deadline)
            done = changed[at:end]
            seen.update(done)
            for watch in sched.dirty.watchers:
                watch.update(k[2:] for k, _ in done if k.startswith("t:"))
            at = end
            if at < len(changed) and sl is not None:
                yield
        if len(seen) > len(items):  # rows gone from the replica: ``seen`` holds exactly its
            seen.clear()
            seen.update(items.texts)

    def on_offer(self, msg: Offer, now: float, wall: float) -> None:
        """A member's rows: merge them (manager only)."""
        if not self.agent.core.is_manager:
            return
        if self._activate is not None:
            # The table this node takes over is being loaded (in slices, _load_step): the load
            # would overwrite what a merge did now. Merged once it is loaded (the newest per
            # sender, all its parts; senders are members, so at most one per member).
            _keep_part(self._offers_waiting, msg)
            return
        if self.agent.core.quorum is not None:
            # Quorum mode: every committed record is on a majority of voters, and phase 1
            # merged them. A member's data directory may hold a record whose write never
            # committed (a manager applies a result before its commit): merging it could
            # replace a committed state. Taken as an answer only (init stops waiting for it).
            if self._offer_parts.add(msg.sender, msg.term, msg.state):
                self.scheduler.offer_from(msg.sender.name)
            return
        changed = self.scheduler.merge(msg.state, wall, source=msg.sender.name)
        # Its runs in flight, which our table may not show (clerk._offerruns).
        # Their times are as their manager sent them (clerk._clockskew.AsSent).
        changed |= adopt_runs(self.scheduler, offered_runs(msg.state), msg.sender.name, wall,
                              as_sent=True)
        # (Once every part of its OFFER is in: clerk._offerjob, "Numbered parts".)
        if self._offer_parts.add(msg.sender, msg.term, msg.state):
            self.scheduler.offer_from(msg.sender.name)
        self._log_conflicts()
        if changed and self.scheduler.active:
            self._replicate(now)

    def hold_offer(self, msg: Offer) -> None:
        """An OFFER from a node not admitted yet: kept (the newest per name, all its parts, at
        most MAX_HELD_OFFERS names) until it becomes a member."""
        _keep_part(self._held_offers, msg)
        while len(self._held_offers) > MAX_HELD_OFFERS:
            del self._held_offers[next(iter(self._held_offers))]

    def on_left_offer(self, msg: Offer, now: float, wall: float) -> None:
        """The OFFER of a node that left as a member, which we do not list: merged as a
        member's, and its RESULTs taken from now on (clerk._leftoffers)."""
        if not self._left_senders.admits(msg.sender, now):
            _log.info("OFFER from %s, which left as a member and is not listed here: merged "
                     "(its runs in flight and its results count)", msg.sender.name)
        self._left_senders.add(msg.sender, now)
        self.on_offer(msg, now, wall)

    def on_left_unlisted(self, sender: Peer, now: float) -> bool:
        """A LEAVE from ``sender``, not a member (clerk._coretypes.LeftUnlisted): its OFFER we
        held as a joining node's is a node that left's; False if we held none of it."""
        held = [m for m in self._held_offers.get(sender.name, ())
                if m.sender.incarnation == sender.incarnation]
        if not held:
            return False
        del self._held_offers[sender.name]
        for msg in held:
            self.on_left_offer(msg, now, self.agent.clock.wall())
        return True

    def takes_results_of(self, sender: Peer, now: float) -> bool:
        """Is ``sender`` a node that left whose OFFER we merged (its RESULTs are taken)?"""
        return self._left_senders.admits(sender, now)

    def tells_claim_to(self, sender: Peer, now: float) -> bool:
        """Should ``sender``, whose RESULT we refused, get our claim now (clerk._leftoffers)?"""
        return self._left_senders.tell(sender, now)

    def on_member_up(self, name: str, incarnation: str, now: float) -> None:
        for msg in self._held_offers.pop(name, []):
            if msg.sender.incarnation == incarnation:
                self.on_offer(msg, now, self.agent.clock.wall())

    def _load_step(self, deadline: float | None = None) -> bool:
        """Load a slice of the table this node takes over (until ``deadline``,
        ``time.perf_counter``, at most ``LOAD_BUDGET`` from now); True
        once all of it is in the scheduler. The rows are those of the table log if it is
        complete, else the replica's (``CoreState.replicated``); if they change meanwhile (a
        hand-over's table arrives), the load starts over with them."""
        core = self.agent.core
        log, replica = core.table_log, core.replica
        token = (log.log, log.seq) if log.complete else ("", replica.version)
        job = self._loading
        if job is None or job[0] != token:
            job = self._loading = (token, log.rows() if log.complete else replica.rows(), 0)
        token, items, start = job
        limit = time.perf_counter() + LOAD_BUDGET
        done = self.scheduler.load_rows(items, start,
                                        limit if deadline is None else min(deadline, limit))
        self._loading = (token, items, done)
        if done < len(items):
            return False
        self._loading = None
        return True

    def _replicate(self, now: float, force: bool = False) -> None:
        """Put the changed rows into the table log and send the members what they lack, now
        or soon (see REPLICATE_SHARE)."""
        core = self.agent.core
        if not core.is_manager:
            return
        self._replicate_dirty = True
        if not force and now < self._replicate_after:
            return
        began = time.perf_counter()
        if self._send_next and not force:
            done = False  # the last step spent its budget encoding: this one sends
        else:
            done = self._encode_rows(began + ENCODE_BUDGET if not force else math.inf)
        self._replicate_dirty = not done
        if (not done and not force and not self._send_next and core.table_log.complete
                and now - self._round_went < self._slice_round_gap):
            # Rows left of a complete log's changes (not a takeover's fill, which sends its
            # slices as below), and a round went within the gap: the next step (the next
            # turn, as below) encodes on, and the round goes once every row is encoded, or
            # once the gap has passed. On a loaded machine (a row ~20-100 us to encode) the
            # changed rows of 25 ms at 400 runs/s took 2-4 budgets, and each slice was a
            # round of its own (a heartbeat to every member and an ACK back): about half
            # of the manager's rounds (tools/bench_tasks.py (c): README "Fewer rounds").
            self._encode_cost += time.perf_counter() - began
            self._replicate_after = now
            return
        if not done and not force and not self._send_next:
            # Rows left after a whole budget of encoding (a burst of ~1,000 changed rows, a
            # takeover's fill): the heartbeats go in a step of their own, at the next turn,
            # not after the budget in this one (together: 1.0-1.6 ms of the loop); the pace
            # below counts both steps. A round whose rows are all encoded sends at once.
            self._send_next = True
            self._encode_cost += time.perf_counter() - began
            self._replicate_after = now
            return
        self._send_next = False
        log = core.table_log
        if (log.log, log.seq) != self._sent:
            self._sent = (log.log, log.seq)
            self.agent.apply(core.heartbeat_now(now), now)
            self._round_went = now
        if done:
            self._stamp_acks()
        cost = time.perf_counter() - began + self._encode_cost
        self._encode_cost = 0.0
        self._replicate_after = now + cost * (REPLICATE_SHARE - 1)

    def _encode_rows(self, deadline: float) -> bool:
        """Encode the rows the scheduler changed into the table log, until ``deadline``
        (perf_counter); True when none is left (the log is then complete)."""
        return self._encoder.step(self.scheduler, self.agent.core.table_log, deadline)

    def replicate_now(self, now: float) -> None:
        """Replicate the table at once (an operator's command is answered after this)."""
        self._replicate(now, force=True)

    def persist(self, now: float, final: bool = False) -> None:
        """Write the table we hold to the data directory when it changed (coalesced: see
        clerk._store); ``final``: now, whatever the pacing (a stop)."""
        store = self.store
        if store is None:
            return
        core = self.agent.core
        log, replica = core.table_log, core.replica
        # The member list too: the directory records the live members for a restart
        # (clerk._joining, "Restarts"), and a list change alone (a member joined, none of the
        # table's rows changed yet) must reach it, not wait for the next result.
        version = (log.log, log.seq, replica.version, core.members.list_epoch)
        if version != self._persisted:
            self._persisted = version
            store.mark()
        if self.scheduler.active and self._replicate_dirty:
            store.mark()
        if not (store.due(now) or (final and store.next_deadline() != math.inf)):
            return
        began = time.perf_counter()
        sched = self.scheduler
        source: Any
        if sched.active and (sched.draining or not core.is_manager):
            # A leaving manager's own last table (results of its runs in flight): only here.
            table = sched.table()
            for row in table["tasks"].values():
                row["running"] = None
            source = table
        elif sched.active and (self._replicate_dirty or not log.complete) and not final:
            store.defer(self._replicate_after)  # replicated soon: that table is the one
            return
        elif sched.active and (self._replicate_dirty or not log.complete):
            source = sched.table()
        elif log.complete or replica:
            # The rows as replicated: no reserialization on the loop. Only those changed since
            # the last write when the store holds this same table (O(changes)); every row when
            # it is a new one (a new log, a takeover, a hand-over's table).
            rows = log if log.complete else replica
            if rows is self._disk_rows and rows.tracking() and store.takes_changes():
                store.write_changes(rows.take_changes(), now,
                                    spent=time.perf_counter() - began)
            else:
                self._disk_rows = rows
                store.write_rows(rows.track(), now, spent=time.perf_counter() - began)
            return
        else:
            store.skip()  # nothing from a manager yet: the disk already holds what we have
            return
        self._disk_rows = None
        store.write(source, now, spent=time.perf_counter() - began)
