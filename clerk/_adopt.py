"""How a scheduler takes on a table: load, merge, OFFERs, activation, new definitions, leaving.

**Continuing a table.** The table (:meth:`clerk._schedule.Scheduler.table`) is what the
manager replicates to every member with its heartbeats and hands over when it leaves. From it
a new manager continues (:meth:`Adoption.activate`):

* after a graceful hand-over, with the very next slot (nothing missed, nothing doubled) and
  the run in flight adopted (its result comes to the new manager);
* after a crash, with the first slot due more than ``MAX_DISPATCH_LEAD_MS`` after it took over:
  a slot that fell due while no manager was known, or that the dead one may have sent ahead of
  its due time (:mod:`clerk._lead`), may or may not have been dispatched, so it is skipped
  rather than risked twice (the guarantee: at most the slots inside the failover window).
  A task with ``catch_up = "last"`` instead runs, once and at once, the most recent missed
  slot that fell due at least ``CATCH_UP_GUARD_MS`` before the takeover (the others are
  skipped); a task that never ran has missed nothing.

**In slices.** A takeover activates in slices of the loop (:meth:`Adoption.begin_activation`,
:meth:`Adoption.activate_step`; 10,000 tasks were one step of ~200 ms): until it is done the
scheduler is not ``active`` and refuses results (their nodes send them again); a merge or a
new definition between slices is taken into account (a task decided already has its next
slot moved as when active, one not decided yet is decided from the merged row), and the
outcome is the one-step one's. :meth:`Adoption.activate` is both in one step.

**Init waits for OFFERs.** ``init(args)`` runs only when no node holds a state for the task;
with ``await_offers`` (a real node) the manager first waits for every live member's OFFER of
its durable rows, at most ``OFFER_WAIT_MS`` per member (:meth:`Adoption._init_held`).

**A manager that starts from its own disk waits for OFFERs.** When this scheduler's table is
only its own data directory's states (``from_disk``: its node read states at start and took
over without a table from any manager of this incarnation, as in a full-cluster restart), a
member may hold a newer copy: every dispatch, not only ``init``, then waits for the live
members' OFFERs, for at most ``OFFER_WAIT_MS`` after the activation (a slot due meanwhile is
skipped). A run from the older copy would repeat a count the cluster already produced, even
if its result were then dropped (the task ran). The window is bounded once per takeover, so
members that join later (or forged JOINs) cost nothing; a takeover with a replicated table
(every failover: the next rule) and a fresh node's first claim are not ``from_disk``.

**A manager that took over from its replica waits for OFFERs.** The same wait, for every
dispatch, holds after a crash takeover from a replica (``stale``): one not caught up with the
last manager's log (the node joined moments ago and the table was still on its way) may lack
any task's newer state, or its only one; and one caught up at an older sequence, its last deltas
lost, cannot tell what it missed: a member may hold the newest result of a task, and a dispatch
from the older state would repeat that count (the simulator found it: a link dropped the
manager's last deltas to the successor, the other member's OFFER took 0.3 s, and the first run
started from the count before its newest). Before, only a successor not caught up waited. The
members' OFFERs to a caught-up successor are small (only what is newer than its position: in a
settled cluster, nothing) and come within a round trip; a member that never offers is waited
for at most as below, and a dead one only until it is no longer a live member. A member builds
its OFFER when it follows the new manager, which takes a member of a big table ~1 s of parsing
on a loaded machine; the new manager took ~1 s to load that table
too, so a fixed 1 s wait from its first look lost the race now and then (the ledger started
over from ``init``, or from an older state). So a member whose build always sends an OFFER
(every build that announces ``TABLE_MARK``: ``always_offers``) is waited for up to
``OFFER_WAIT_SURE_MS`` (a live member offers; only a lost OFFER costs the whole wait), any
other up to ``OFFER_WAIT_MS``. Any merge HANDOVER counts as its sender's OFFER, and after a
heal the one of the manager our replica followed counts as the OFFER of each member its table
covers (:mod:`clerk._covers`, :meth:`Adoption.handed_over_by`): a heal's first OFFERs lost held
every dispatch ~10 s; a member that manager was itself still waiting for is waited for. A
member whose OFFER was lost on a link that was down sends it again once the link is up
(``OfferAgain``, :mod:`clerk._core`, "OFFERs again"); a second OFFER merges idempotently.
A node that is not a member but that a restarted manager heard from while it waited for its
recorded members (``expected``, :func:`takeover_waits`; :mod:`clerk._joining`, "Restarts") is
waited for as a member, at most ``OFFER_WAIT_MS`` (it may not come: it is not listed).

**Which state wins** is never decided here by terms or slots: every load, merge and takeover
goes through lineage and version (:mod:`clerk._lineage`, rows in :mod:`clerk._record`). A
run in flight started from the state of its row: a merge that replaces that state marks it
``rebased`` (its result is then dropped, see :mod:`clerk._running`), and so does a load that
keeps our own better state under a loaded row's run (a manager re-claiming with a stale
replica: that run's late result would otherwise replace the kept state). A merged record
claiming a slot beyond the one current ``FUTURE_SKEW_MS`` (5 s) from now is refused: no real
manager can have run the future (the margin is for clocks apart: clerk._lead).

**Definitions change** (rolling deploys): :mod:`clerk._newdefs`.

**Draining.** A leaving manager dispatches nothing more but still applies the results of its
runs in flight (:meth:`Adoption.drain`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from clerk._control import merge_run_history
from clerk._covers import Covers
from clerk._lead import FUTURE_SKEW_MS, MAX_DISPATCH_LEAD_MS
from clerk._lineage import better
from clerk._newdefs import DefsUpdate
from clerk._record import TaskRecord, merge_rows, unpack_table
from clerk._schedstate import _Activation, _packed_size

__all__ = ["CATCH_UP_GUARD_MS", "OFFER_WAIT_MS", "OFFER_WAIT_SURE_MS", "Adoption",
           "takeover_stale", "takeover_waits"]

#: ``catch_up = "last"`` never runs a slot that fell due this shortly before a crash takeover:
#: the dead manager may have dispatched it in its last moments, before a heartbeat carried that
#: (a slot due earlier was dispatched at its time and replicated within milliseconds, so the
#: table knows). A crash is taken over in ~50 ms and a freeze in < 1 s; 5 s leaves room for a
#: loaded machine's stalls. Such a slot is skipped, as without catch_up: at most once holds.
CATCH_UP_GUARD_MS = 5000
#: Before it calls ``init`` for a task without state, the manager waits for every live member
#: to offer the rows of its data directory (OFFER: sent as soon as it follows the manager, so
#: it normally comes within a round trip), or for this long after it first saw the member (an
#: OFFER lost, or a node of an older version that sends none). ``init`` runs only when no
#: member holds a state; 1 s is 10 heartbeats, far above a loaded machine's round trip.
OFFER_WAIT_MS = 1000
#: ... and for a member whose build always sends an OFFER when it follows a manager (see the
#: module docstring): it is alive (a silent member is dropped after ``member_timeout``), so
#: its OFFER comes, once it has parsed its copy of the table (~1 s for 4,000 tasks on a
#: loaded machine). Only a lost OFFER costs this much: a task without a state starts 10 s
#: late, rather than from ``init`` while a member holds its state.
OFFER_WAIT_SURE_MS = 10_000


def takeover_stale(quorum: bool, graceful: bool, log_complete: bool, replica_rows: bool) -> bool:
    """``Adoption.stale`` at an activation, the one rule of the runner and the simulator (see
    "A manager that took over from its replica"): a crash takeover (not a hand-over's table),
    in the default mode, whose own new log holds no table yet (a claim's log fills only once
    it schedules) and whose replica holds rows: caught up with the last manager's log or not."""
    return not quorum and not graceful and not log_complete and replica_rows


def takeover_waits(sched: Adoption, core: Any, graceful: bool, now: float) -> None:
    """The real runner's activation: ``sched.stale`` (:func:`takeover_stale`) and the nodes
    it waits for as members though they are not (yet): the recorded members its node heard
    from since a restart (``core``: a :class:`clerk._corestate.CoreState`)."""
    sched.stale = takeover_stale(core.quorum is not None, graceful, core.table_log.complete,
                                 bool(core.replica.items()))
    sched.expected = core.take_rejoin_heard(now)


def _nothing_new(raw: Any, mine: TaskRecord | None) -> bool:
    """A merged row that cannot change ours: the same state (lineage, version, branch) and
    nothing further along. Checked on the raw dict, so that the OFFERs every follower sends
    a new manager (mostly the very rows it already holds) cost microseconds per row, not a
    full parse: 20 followers' OFFERs of 1000 tasks cost ~90 ms each without it."""
    if mine is None or not isinstance(raw, dict):
        return False
    try:
        hist = raw.get("history")
        tip = hist[-1] if isinstance(hist, list) and hist else None
        return (raw.get("has_state") is mine.has_state and raw.get("version") == mine.version
                and raw.get("origin") == mine.origin
                and tip == (mine.history[-1] if mine.history else None)
                and type(raw.get("slot", -1)) is int and raw.get("slot", -1) <= mine.slot
                and type(raw.get("dispatched", -1)) is int
                and raw.get("dispatched", -1) <= mine.dispatched
                and type(raw.get("decided", -1)) is int
                and raw.get("decided", -1) <= mine.decided
                and type(raw.get("runs", 0)) is int and raw.get("runs", 0) <= mine.runs
                and type(raw.get("conflicts", 0)) is int
                and raw.get("conflicts", 0) <= mine.conflicts
                # the operator's facts (clerk._control): the same register and runs
                and raw.get("pause") == mine.pause
                and raw.get("run_history") in (None, mine.run_history.text()))
    except TypeError:
        return False


class Adoption(DefsUpdate):
    """Load, merge, OFFERs, activation, definitions and draining (see the module docstring)."""

    #: Set by the shell at an activation: this table is only the data directory's (see the
    #: module docstring, "A manager that starts from its own disk").
    from_disk: bool = False
    #: Set by the shell at an activation: this table is a replica that was not caught up
    #: with the last manager's log (see the module docstring, "A manager whose replica was
    #: behind").
    stale: bool = False
    #: ... and until when (wall ms) its dispatches wait for the members' OFFERs.
    _from_disk_until: float = 0.0
    #: Set by the shell: the last manager this node followed (not itself; "": none), the
    #: one whose table a ``stale`` takeover's replica lagged (:meth:`handed_over_by`).
    followed: str = ""

    def _disk_held(self, wall_ms: float) -> bool:
        """Does a dispatch of a state wait for the members' OFFERs (``from_disk``,
        ``stale``)?"""
        return (self.from_disk or self.stale) and wall_ms < self._from_disk_until

    def load(self, table: Any) -> None:
        """Adopt a replicated table (as a follower, or before taking over): the manager's rows,
        except that a state of ours that is better by lineage and version is kept (a row read
        from our data directory that the manager has not merged yet)."""
        table = unpack_table(table)
        if not isinstance(table, Mapping):
            return
        self.all_dirty = self.runs_dirty = True
        tasks = table.get("tasks")
        if isinstance(tasks, Mapping):
            for name, raw in tasks.items():
                if isinstance(name, str):
                    self._load_row(name, raw)
        self._load_runs(table.get("node_runs"))

    def _load_row(self, name: str, raw: Any) -> None:
        rec = TaskRecord.from_json(raw, name)
        if rec is not None:
            mine = self.records.get(name)
            if mine is not None and better(mine, rec):
                rec.take_state(mine)
                self.kept_own.add(name)
                if self.active:
                    self._reload_own(rec, mine)
                elif rec.running is not None:  # it started from the state not kept
                    rec.running = {**rec.running, "rebased": True}
            else:
                self.kept_own.discard(name)
            self.records[name] = rec  # kept even without a definition (see above)

    def _reload_own(self, rec: TaskRecord, mine: TaskRecord) -> None:
        """A manager reloading its own table (it claims again, default mode: no
        ``deactivate``; the runner loads its last table log, which lacks the rows changed
        within the replication gap) keeps its better state (``rec`` has taken it), and with
        it what its own row knows of the runs: a run the log shows in flight whose slot our
        row saw end has ended (its result is in the state kept). Shown in flight (rebased),
        it kept the task in flight until its deadline, and the run sent after it, offered
        by its node, waited behind it and lost its result (counted). Our own run in flight
        was sent from the state kept."""
        run, own = rec.running, mine.running
        if (run is not None and int(run.get("slot", -1)) > mine.slot
                and (own is None or own.get("run") != run.get("run"))):
            rec.running = {**run, "rebased": True}  # it started from the state not kept
        else:
            rec.running = own
        rec.slot = max(rec.slot, mine.slot)
        rec.dispatched = max(rec.dispatched, mine.dispatched)
        rec.decided = max(rec.decided, mine.decided)
        # And the runs it saw end: a resent result of a slot the kept state holds is known.
        rec.run_history = merge_run_history(rec.run_history, mine.run_history, self.history_cap)

    def _load_runs(self, runs: Any) -> None:
        if isinstance(runs, Mapping):
            self.node_runs = {k: v for k, v in runs.items() if type(v) is int}

    def load_rows(self, items: Sequence[tuple[str, str | None]], start: int, deadline: float,
                  clock: Callable[[], float] = time.perf_counter) -> int:
        """:meth:`load` of the table made of ``items`` (key and row text, as a replica or a
        table log holds them: :mod:`clerk._replica`), from ``items[start]`` until
        ``deadline`` (``clock`` time). Returns where to continue (``len(items)``: done).

        A takeover loads the whole table before it schedules (10,000 tasks: ~0.5 s of
        parsing in one piece); row by row, in slices, the loop runs between them."""
        if start == 0:
            self.all_dirty = self.runs_dirty = True
        i, n = start, len(items)
        while i < n:
            key, text = items[i]
            i += 1
            if text is None:
                continue
            try:
                raw = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if key.startswith("t:"):
                self._load_row(key[2:], raw)
            elif key == "k:node_runs":
                self._load_runs(raw)
            # (each row ~30 us to parse and build: looked at every 8 rows, a slice overran
            # its budget by a quarter of a millisecond and more on a loaded machine)
            if clock() > deadline:
                break
        return i

    def follow_rows(self, items: Sequence[tuple[str, str | None]],
                    seen: dict[str, str | None]) -> int:
        """:meth:`load_rows` of those ``items`` whose text is not the very object ``seen``
        holds for their key (a replica keeps a row's text object until the row changes), then
        ``seen`` made the items' keys and texts: a follower brought up to its replica again
        parses only the rows changed since (10,000 tasks: every row was ~0.5 s). Returns how
        many it loaded."""
        changed = [(k, t) for k, t in items if seen.get(k) is not t] if seen else list(items)
        if changed:
            self.load_rows(changed, 0, math.inf)
            seen.update(changed)
        if len(seen) > len(items):  # rows gone from the replica: ``seen`` holds exactly its
            seen.clear()
            seen.update(items)
        return len(changed)

    def merge(self, table: Any, wall: float | None = None, source: str = "",
              committed: bool = False) -> bool:
        """Merge another table (a partition healed, or a member's OFFER of its durable rows):
        per task the state by lineage and version, the schedule by the furthest slot (see
        :func:`clerk._record.merge_rows`); conflicts go to ``conflicts_out``. True if anything
        changed. With ``wall``, a record claiming a slot beyond the one current
        ``FUTURE_SKEW_MS`` from now is refused: no real manager can have run the future (the
        margin is for clocks apart), and a forged table must not push a task's next slot out
        of reach. Not with ``committed``: rows a majority of voters hold (quorum mode's phase
        1), which no clock offset may drop (their slots past ours are skipped here, as their
        reservations are: clerk._writeahead); refused, a manager whose clock ran more than
        that ahead lost its committed states at the next takeover
        (tests/unit/test_quorum_skew.py)."""
        table = unpack_table(table)
        changed = False
        if not isinstance(table, Mapping) or not isinstance(table.get("tasks"), Mapping):
            return False
        wall_ms = (wall or 0.0) * 1000
        for name, raw in table["tasks"].items():
            mine = self.records.get(name)
            if _nothing_new(raw, mine):
                continue
            self.dirty.add(name)
            rec = TaskRecord.from_json(raw, name)
            if rec is None or not isinstance(name, str):
                continue
            if name not in self.defs:
                # A task no live member has loaded now: its state is kept (and replicated)
                # until a definition comes back, by the same lineage rules.
                rec.running = None
                if mine is None:
                    self.records[name] = rec
                    changed = True
                    self._resize(name)
                else:
                    row_changed, conflict = merge_rows(name, mine, rec, wall_ms, source)
                    changed |= row_changed
                    if conflict is not None:
                        self.conflicts_out.append(conflict)
                    if row_changed:
                        self._resize(name)  # (its state counts in the budget too)
                continue
            if mine is None:
                continue
            d = self.defs[name]
            if wall is not None and not committed and name in self._grid and (
                max(rec.slot, rec.dispatched, rec.decided)
                > self._slot_at(d, wall_ms + FUTURE_SKEW_MS) + 1  # (clock skew: clerk._lead)
            ):
                continue
            if self._merge_pause(name, rec.pause, wall):
                changed = True
            runs = merge_run_history(mine.run_history, rec.run_history, self.history_cap)
            if runs is not mine.run_history:
                mine.run_history = runs
                changed = True
            version = (mine.origin, mine.version, mine.has_state)
            row_changed, conflict = merge_rows(name, mine, rec, wall_ms, source)
            if conflict is not None:
                self.conflicts_out.append(conflict)
            if not row_changed:
                continue
            changed = True
            if (mine.origin, mine.version, mine.has_state) != version:
                self._resize(name)
            if (self.active or self.activating) and name in self._grid:
                nxt = max(self.next_slot.get(name, 0), mine.dispatched + 1, mine.slot + 1,
                          mine.decided + 1)
                if nxt != self.next_slot.get(name):
                    self.next_slot[name] = nxt
                    self._push(name)
        return changed

    def _resize(self, name: str) -> None:
        """The task's state changed: what it takes of the states' budget."""
        rec = self.records[name]
        size = _packed_size(rec.state) if rec.has_state else 0
        self._states_total += size - self._state_bytes.get(name, 0)
        self._state_bytes[name] = size

    def offer_from(self, node: str) -> None:
        """``node``'s durable rows are merged: an ``init`` no longer waits for it."""
        self.offered.add(node)
        self._init_wait_ms = 0.0

    def handed_over_by(self, node: str, covers: Covers | None = None) -> frozenset[str]:
        """A merge HANDOVER part from ``node`` (a manager that stepped down to us) is merged:
        it counts as its OFFER once every part is (at once without ``covers``: an older
        build); to a ``stale`` takeover whose replica followed ``node``, so do the members
        its table covers (:mod:`clerk._covers`). Returns the latter (none before)."""
        covered = frozenset() if covers is None else self._cover_parts.add(node, covers)
        if covers is None or covered:
            self.offer_from(node)
        if not covered or not self.stale or self.from_disk or node != self.followed:
            return frozenset()
        for member in covered:
            self.offer_from(member)
        return covered

    def _init_held(self, members: Mapping[str, Iterable[str]], wall_ms: float) -> float:
        """Until when (wall ms) an ``init`` (any run, ``from_disk``) must wait for members'
        OFFERs; 0 if it need not."""
        until = 0.0
        if not self.await_offers:
            return until
        nodes: Iterable[str] = members
        if self.expected:  # (not members yet: clerk._joining, "Restarts")
            nodes = [*members, *(n for n in self.expected if n not in members)]
        for node in nodes:
            if node in self.offered:
                continue
            since = self._member_since.setdefault(node, wall_ms)
            wait = (OFFER_WAIT_SURE_MS if node in members and self.always_offers(node)
                    else OFFER_WAIT_MS)
            if wall_ms < since + wait:
                until = max(until, since + wait)
        return until

    def activate(self, wall: float, graceful: bool,
                 claim: tuple[int, str] | None = None) -> None:
        """Become the scheduler under ``claim`` (term, own name): decide each task's next slot
        (see the module docstring). In one step: :meth:`begin_activation` and
        :meth:`activate_step` without a deadline."""
        self.begin_activation(wall, graceful, claim)
        self.activate_step(math.inf)

    def begin_activation(self, wall: float, graceful: bool,
                         claim: tuple[int, str] | None = None, ahead_ms: float = 0.0,
                         ahead_of: Mapping[str, float] | None = None,
                         table_of: str | None = None) -> None:
        """Start becoming the scheduler under ``claim`` at ``wall``; the work is done by
        :meth:`activate_step`, in slices (10,000 tasks are ~200 ms of it on a loaded
        machine: the loop runs between slices). Until it is done the scheduler is not
        ``active``: it dispatches nothing and applies no result, and nothing may load or
        merge into the table meanwhile (the shell holds OFFERs, RESULTs and merges).

        ``ahead_ms``: how far this node's clock is ahead of the manager's it followed
        (clerk._clockskew; 0: not, or unknown). The table's runs in flight carry that
        manager's deadlines, in its time base: read on ours they would time out that much
        early, and the next slot go beside a run still going (a run's update lost: review13,
        tests/integration/test_review13_skew_handover.py); they time out that much later.
        (Behind, they time out later by the offset: never early.)

        ``ahead_of``: the same, by name, for each manager this node followed lately
        (clerk._clockskew.SkewEstimator.ahead_by_manager): for the runs members offer, whose
        times are as the manager that sent them sent them (:meth:`sender_base_ms`); and for
        the rows, by the larger of ``ahead_ms`` and ``ahead_of[table_of]``, the manager whose
        table this is (review17: tests/unit/test_review17_table_base.py)."""
        self._ahead_of = {k: max(0.0, v) for k, v in (ahead_of or {}).items()
                          if isinstance(k, str) and math.isfinite(v)}
        ahead_ms = max(ahead_ms, self._ahead_of.get(table_of, 0.0) if table_of else 0.0)
        self._ahead_ms = max(0.0, ahead_ms) if math.isfinite(ahead_ms) else 0.0
        self.active = False
        self.all_dirty = self.runs_dirty = True
        if claim is not None:
            self.claim = claim
            if self.stale:
                # A takeover from a replica waits for the OFFERs made to this claim: a
                # manager that claims again (a higher-term ELECTION, no ``deactivate``)
                # still held the members that offered to its previous claim, and did not
                # wait for their OFFERs now, which list the runs its reload forgot.
                self.offered.clear()
                self._member_since.clear()
                self._cover_parts.clear()
            self.offered.add(claim[1])  # our own durable rows were loaded at start
        self._from_disk_until = (wall * 1000 + OFFER_WAIT_SURE_MS if self.stale
                                 else wall * 1000 + OFFER_WAIT_MS if self.from_disk else 0.0)
        self._heap = []
        self._deferred.clear()
        self._inflight = {}
        self._state_bytes = {}
        self._states_total = 0
        self._activation = _Activation(wall * 1000, graceful, list(self.defs),
                                       list(self.records))

    def activate_step(self, deadline: float,
                      clock: Callable[[], float] = time.perf_counter) -> bool:
        """Continue the activation until ``deadline`` (``clock`` time); True once the
        scheduler is active (the result is the same however it is sliced: each task's
        decision depends on its own row and the activation's ``wall`` only)."""
        job = self._activation
        if job is None:
            return self.active
        while True:
            defs, records = job.defs, job.records
            while job.at_def < len(defs):
                name = defs[job.at_def]
                job.at_def += 1
                self._activate_task(name, job.wall_ms, job.graceful)
                if clock() > deadline:
                    return False
            inflight, sizes = self._inflight, self._state_bytes
            while job.at_record < len(records):
                name = records[job.at_record]
                job.at_record += 1
                rec = self.records[name]
                if rec.running is not None:
                    ends = float(rec.running["deadline"])
                    shift = self.their_base_ms(rec.running.get("claim"))
                    if shift:
                        # (another manager's time base) The row says it in ours from now on:
                        # the status's running.deadline and started, and a successor's
                        # takeover, which moves it by its own offset to us.
                        ends += shift
                        run = dict(rec.running)
                        run["deadline"] = ends
                        if isinstance(run.get("started"), (int, float)):
                            run["started"] = float(run["started"]) + shift
                        rec.running = run
                        self.dirty.add(name)
                    bound = self._bounds.get(name)
                    if bound is not None and bound[0] == rec.running["run"]:
                        ends = min(ends, bound[1])  # (a claim again: bound_run)
                    inflight[name] = ends
                if rec.has_state:
                    size = _packed_size(rec.state)
                    self._states_total += size - sizes.get(name, 0)
                    sizes[name] = size
                if clock() > deadline:
                    return False
            # Tasks and rows only ever join at the end of ``defs`` and ``records``.
            if len(self.defs) == len(defs) and len(self.records) == len(records):
                break
            defs.extend(list(self.defs)[len(defs):])
            records.extend(list(self.records)[len(records):])
        self._activation = None
        self.active = True
        self.all_dirty = self.runs_dirty = True
        return True

    def their_base_ms(self, claim: Any) -> float:
        """How much later a run of ``claim`` (its row's ``[term, manager]``) ends in our time
        base than its times say: ``ahead_ms`` of :meth:`begin_activation` for a run another
        manager sent (its times are in that one's time base), 0 for our own."""
        if not self._ahead_ms or (isinstance(claim, (list, tuple)) and len(claim) == 2
                                  and claim[1] == self.claim[1]):
            return 0.0
        return self._ahead_ms

    def sender_base_ms(self, claim: Any) -> float:
        """:meth:`their_base_ms` for a run's times as the manager of ``claim`` sent them (a
        member's OFFER: clerk._clockskew.AsSent): how far we are ahead of *that* manager, if
        we followed it lately (``ahead_of``). After two crash takeovers in a row the manager
        we followed last took over from the one that sent the run, and our offset to it is
        not the one to the sender: moved by 0 where the sender was 4 s behind, the run timed
        out 3 s early and the next slot went beside it (review15:
        tests/unit/test_review15_second_takeover.py). The table's rows are in the time base
        of the manager whose table it is (each activation moves them into its own), so they
        keep :meth:`their_base_ms`. A sender we never followed: that too (the best we know)."""
        if (isinstance(claim, (list, tuple)) and len(claim) == 2 and isinstance(claim[1], str)
                and claim[1] != self.claim[1]):
            known = self._ahead_of.get(claim[1])
            if known is not None:
                return known
        return self.their_base_ms(claim)

    def _activate_task(self, name: str, wall_ms: float, graceful: bool) -> None:
        """One task's part of an activation: its next slot, a skipped failover window, a
        catch-up, an instant run; then its place in the heap."""
        d = self.defs[name]
        rec = self.records[name]
        if name not in self._grid:
            self.next_slot[name] = 0
        else:
            done = max(rec.slot, rec.dispatched)
            if rec.running is not None:
                done = max(done, int(rec.running.get("slot", -1)))
            # Slots up to ``decided`` were counted by a manager before (skipped while a run
            # was in flight moves neither slot nor dispatched): never decided, counted or
            # caught up again.
            counted = max(done, rec.decided)
            current = self._slot_at(d, wall_ms)
            if graceful:
                self.next_slot[name] = counted + 1 if counted >= 0 else current + 1
            else:
                # The dead manager may have sent slots due up to its lead ahead (any
                # lead: MAX_DISPATCH_LEAD_MS) without a heartbeat telling us.
                current = self._slot_at(d, wall_ms + MAX_DISPATCH_LEAD_MS)
                self.next_slot[name] = max(counted + 1, current + 1)
                if done >= 0 and current > counted and not rec.paused:
                    # The failover window: due while no manager was known, not run.
                    missed = self._grid[name].count(counted + 1, current + 1)
                    late = self._slot_at(d, wall_ms - CATCH_UP_GUARD_MS)
                    if d.catch_up == "last" and d.enabled and late > counted:
                        self.catch_up_pending[name] = late  # runs at the first tick
                        missed -= 1
                    rec.counts["skipped"] += missed
                    rec.decided = current
        fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
        if d.instant and d.enabled and fresh and name not in self.gone and not rec.paused:
            self.instant_pending.add(name)
        self._push(name)

    def drain(self) -> None:
        """Stop dispatching; keep applying results (see ``draining``)."""
        self.draining = True
        self.instant_pending.clear()
        self._deferred.clear()

    def deactivate(self) -> None:
        """No longer the scheduler (an activation under way ends too)."""
        self.active = False
        self._activation = None
        self.draining = False
        self.instant_pending.clear()
        self._instant_waiting.clear()
        self.catch_up_pending.clear()
        self._heap = []
        self._deferred.clear()
        self._inflight = {}
        self.offered.clear()
        self._member_since.clear()
        self._cover_parts.clear()
        self.expected.clear()
        self._bounds.clear()
