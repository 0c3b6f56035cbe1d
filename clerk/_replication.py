"""The task layer's copies of the table: replication to the members, OFFERs, the data directory.

* **Replication** (manager): the whole table goes to every member with a heartbeat after each
  change, paced so it takes at most ~1/``REPLICATE_SHARE`` of the loop (a burst of results is
  coalesced into one table rather than one table per result).
* **OFFERs** (member): each manager this node follows gets the rows it holds with a state (its
  data directory's, merged with the replica): only those beyond the shared replica for a
  fellow member taking over, every row for a manager from elsewhere. Sent even when empty (it
  says "nothing here", so ``init`` need not wait). The manager merges an OFFER only from a
  member; one from a node not admitted yet is held (at most ``MAX_HELD_OFFERS``) until its
  ``MemberUp``.
* **The data directory** (:mod:`clerk._store`) holds the table this node holds: the
  replicated one as it came (no second serialization), or a leaving manager's own last table
  (results of its runs in flight); writes are coalesced and paced.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from clerk._lineage import better
from clerk._messages import Offer
from clerk._record import TaskRecord, pack_table, unpack_table
from clerk._runnerdefs import Definitions

__all__ = ["MAX_HELD_OFFERS", "REPLICATE_SHARE", "Replication"]

#: Replication (the whole table to every member) may take at most ~1/REPLICATE_SHARE of the
#: manager's loop, and of each follower's: after a round that cost ``c`` seconds, the next
#: waits ``c * (REPLICATE_SHARE - 1)``. With a few tasks that is a few ms (every result is
#: replicated at once); with 1000 tasks it coalesces the results of tens of milliseconds
#: instead of flooding every member with the whole table per result.
REPLICATE_SHARE = 10
#: OFFERs kept for nodes that follow this manager but are not admitted yet: a joiner's JOIN
#: and OFFER leave together, so one or two are held at a time; the bound is for forgeries.
MAX_HELD_OFFERS = 64


class Replication(Definitions):
    """Replication, OFFERs and persistence (see the module docstring)."""

    if TYPE_CHECKING:  # provided by clerk._routing
        def _log_conflicts(self) -> None: ...

    def _offer(self, to: str, now: float, only_beyond_replica: bool = False) -> None:
        """Send the new manager the rows we hold with a state (our data directory's, merged
        with the replica): it keeps the most advanced lineage any member holds, and calls
        ``init`` only when no member has a state. Sent even when empty: it says "nothing
        here", so the manager's ``init`` need not wait."""
        replicated = self.agent.core.replicated
        beyond: set[str] | None = None
        if only_beyond_replica:
            table = unpack_table(replicated)
            theirs = table.get("tasks") if isinstance(table, dict) else None
            theirs = theirs if isinstance(theirs, dict) else {}
            beyond = set()
            for name, rec in self.scheduler.records.items():
                other = TaskRecord.from_json(theirs.get(name))
                if rec.has_state and (other is None or better(rec, other)):
                    beyond.add(name)
        self.scheduler.load(replicated)
        rows = {name: rec.to_json() for name, rec in self.scheduler.records.items()
                if rec.has_state and (beyond is None or name in beyond)}
        for row in rows.values():
            row["running"] = None
        self.agent.send(to, Offer(self.agent.me, self.agent.core.term,
                                  pack_table({"tasks": rows})), now)

    def on_offer(self, msg: Offer, now: float, wall: float) -> None:
        """A member's rows: merge them (manager only)."""
        if not self.agent.core.is_manager:
            return
        changed = self.scheduler.merge(msg.state, wall, source=msg.sender.name)
        self.scheduler.offer_from(msg.sender.name)
        self._log_conflicts()
        if changed and self.scheduler.active:
            self._replicate(now)

    def hold_offer(self, msg: Offer) -> None:
        """An OFFER from a node not admitted yet: kept (the newest per name, at most
        MAX_HELD_OFFERS) until it becomes a member."""
        self._held_offers.pop(msg.sender.name, None)
        self._held_offers[msg.sender.name] = msg
        while len(self._held_offers) > MAX_HELD_OFFERS:
            del self._held_offers[next(iter(self._held_offers))]

    def on_member_up(self, name: str, incarnation: str, now: float) -> None:
        msg = self._held_offers.pop(name, None)
        if msg is not None and msg.sender.incarnation == incarnation:
            self.on_offer(msg, now, self.agent.clock.wall())

    def _replicate(self, now: float, force: bool = False) -> None:
        """Send the table to every member now, or soon (see REPLICATE_SHARE)."""
        core = self.agent.core
        if not core.is_manager:
            return
        if not force and now < self._replicate_after:
            self._replicate_dirty = True
            return
        self._replicate_dirty = False
        clock = self.agent.clock
        began = clock.monotonic()
        core.set_replicated(pack_table(self.scheduler.table()))
        self.agent.apply(core.heartbeat_now(now), now)
        cost = clock.monotonic() - began
        self._replicate_after = now + cost * (REPLICATE_SHARE - 1)

    def replicate_now(self, now: float) -> None:
        """Replicate the table at once (an operator's command is answered after this)."""
        self._replicate(now, force=True)

    def persist(self, now: float, final: bool = False) -> None:
        """Write the table we hold to the data directory when it changed (coalesced: see
        clerk._store); ``final``: now, whatever the pacing (a stop)."""
        store = self.store
        if store is None:
            return
        replicated = self.agent.core.replicated
        if replicated is not self._persisted:
            self._persisted = replicated
            store.mark()
        if self.scheduler.active and self._replicate_dirty:
            store.mark()
        if not (store.due(now) or (final and store.next_deadline() != math.inf)):
            return
        began = time.perf_counter()
        sched = self.scheduler
        if sched.active and (sched.draining or not self.agent.core.is_manager):
            # A leaving manager's own last table (results of its runs in flight): only here.
            table = sched.table()
            for row in table["tasks"].values():
                row["running"] = None
            text: Any = table
        elif sched.active and self._replicate_dirty and not final:
            store.defer(self._replicate_after)  # replicated soon: that table is the one
            return
        elif sched.active and self._replicate_dirty:
            text = sched.table()
        elif replicated is None:
            store.skip()  # nothing from a manager yet: the disk already holds what we have
            return
        elif isinstance(replicated, dict) and replicated.get("packed") == 1:
            text = "".join(replicated.get("chunks") or ())  # as replicated: no reserialize
        else:
            text = replicated
        store.write(text, now, spent=time.perf_counter() - began)
