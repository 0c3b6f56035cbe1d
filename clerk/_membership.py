"""The member table: who is in the cluster, where, which incarnation, alive or not.

Pure data, no I/O; time comes in as ``now``. The manager's table is authoritative: it admits
joiners, marks members dead (socket-monitor fast path) and drops silent ones, and bumps
``epoch`` on every change so heartbeats only carry the list to members that have not seen the
latest epoch (epochs of different managers never meet, since a follower forgets the epoch it
saw whenever it follows a new claim). The task table has its own sequence and is acknowledged
apart (:mod:`clerk._replica`): a change of the table no longer moves ``epoch``, so
``list_epoch`` now always equals it (kept for the readers that ask for the list's own
epoch). Each row also holds where the table's replication to that member stands
(``acked_table``, ``sent_table``, ``sent_at``, ``sent_chars``). A follower's table is a
copy replaced wholesale from the manager's heartbeats; before any manager exists (cluster
formation) nodes also record the peers they hear of, which is what the bully election runs over.

A row's tasks (the entries its member announced) travel by reference to nodes that read it
(:mod:`clerk._tasksets`): :meth:`MemberTable.infos` gives either form, the table computes a
row's digest once per change of its entries, and a row told a digest whose set this node does
not hold yet keeps its entries (``want``) until :meth:`MemberTable.resolved`.

Admission rules for a JOIN from ``name`` (incarnation ``inc``, address ``addr``):

* same name, same incarnation: a repeat of the same node; refreshed.
* same name, same address, new incarnation: the node restarted (the old process cannot still
  hold the port); the entry is replaced.
* same name, different address, and the existing entry is alive and was heard from within the
  member timeout: two live nodes claim one name; the newcomer is refused with the reason.
* otherwise (the old entry is dead or silent): replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from clerk._messages import MemberInfo, Peer
from clerk._tasksets import TaskSets, split

__all__ = ["Admission", "Member", "MemberTable", "duplicate_reason"]


def duplicate_reason(name: str, holder: Peer, is_me: bool, address: str) -> str:
    """Why a node at ``address`` that calls itself ``name`` is refused: ``holder`` (this
    node, if ``is_me``) holds the name. Names the name and both addresses."""
    who = "this node" if is_me else "a live node"
    return (f"the name {name!r} is already used by {who} at {holder.address} "
            f"(incarnation {holder.incarnation}); {address} was refused")


@dataclass(slots=True)
class Member:
    """A mutable row of the table (internal; :class:`MemberInfo` is what travels)."""

    peer: Peer
    tasks: tuple[str, ...]
    alive: bool
    last_seen: float
    acked_epoch: int = -1
    # Replication of the table to this member (clerk._replica): the change sequence it
    # acknowledged, the last one sent, when, and the row text sent since its last ACK.
    acked_table: int = -1
    sent_table: int = -1
    sent_at: float = float("-inf")
    sent_chars: int = 0
    #: Positions of the table log this member was sent by a delta that reached the log's
    #: end as it stood (clerk._histdelta): from one of these, rows' histories go as patches.
    snaps: set[int] = field(default_factory=set)
    #: The digest and start time of ``tasks`` (clerk._tasksets; None: not computed yet),
    #: and the ones announced whose set this node does not hold yet (None: none).
    digest: str | None = None
    started: float | None = None
    want: tuple[str, float | None] | None = None
    #: The member's clock offset to ours as its last ACK reported it (ms; clerk._clockskew).
    clock_ms: float | None = None

    def reset_table(self) -> None:
        """A new table log: this member holds nothing of it yet."""
        self.acked_table = self.sent_table = -1
        self.sent_at, self.sent_chars = float("-inf"), 0
        self.snaps.clear()

    @property
    def name(self) -> str:
        return self.peer.name

    def info(self) -> MemberInfo:
        p = self.peer
        return MemberInfo(p.name, p.address, p.incarnation, p.priority, self.alive, self.tasks)

    def set_tasks(self, tasks: tuple[str, ...]) -> None:
        """New entries (from a JOIN or a list that carries them): the digest is redone."""
        if tasks is not self.tasks:
            self.tasks = tasks
            self.digest = self.started = None
        self.want = None


@dataclass(frozen=True, slots=True)
class Admission:
    """Outcome of :meth:`MemberTable.admit`: ``added``, ``replaced``, ``refreshed`` or
    ``refused`` (with ``reason``)."""

    outcome: str
    reason: str = ""


class MemberTable:
    """Members by name, plus an ``epoch`` that changes whenever the list does."""

    def __init__(self, me: Peer, tasks: tuple[str, ...], now: float,
                 sets: TaskSets | None = None) -> None:
        self.me = me
        self.sets = sets if sets is not None else TaskSets()
        #: Some row may wait for a set (cleared by clerk._setfetch.fetch_sets when none does).
        self.wanting = False
        self.epoch = 0
        self.list_epoch = 0  # the epoch of the last change of the list (not of the table)
        self._rows: dict[str, Member] = {me.name: Member(me, tasks, True, now)}

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._rows.values()))

    def get(self, name: str) -> Member | None:
        return self._rows.get(name)

    def by_address(self, address: str) -> Member | None:
        for row in self._rows.values():
            if row.peer.address == address:
                return row
        return None

    def others(self) -> list[Member]:
        return [r for r in self._rows.values() if r.name != self.me.name]

    def infos(self, digests: bool = False) -> tuple[MemberInfo, ...]:
        """The list, each row with its entries, or (``digests``) by reference."""
        rows = sorted(self._rows.values(), key=lambda r: r.name)
        if not digests:
            return tuple(r.info() for r in rows)
        out = []
        for r in rows:
            p = r.peer
            digest, started = r.want if r.want is not None else self.form(r)
            out.append(MemberInfo(p.name, p.address, p.incarnation, p.priority, r.alive, (),
                                  digest, started))
        return tuple(out)

    def form(self, row: Member) -> tuple[str, float | None]:
        """``(digest, started)`` of the row's entries (computed once per change of them; the
        set is then held, so this node can answer for it)."""
        if row.digest is None:
            digest, base, row.started = split(row.tasks)
            self.sets.add(digest, base)
            row.digest = digest
        return row.digest, row.started

    def own_form(self) -> tuple[str, float | None]:
        return self.form(self._rows[self.me.name])

    def _take(self, row: Member, info: MemberInfo) -> bool:
        """Give ``row`` the tasks ``info`` announces; True if they changed."""
        if info.digest is None:
            if row.want is None and row.tasks == info.tasks:
                return False  # (the same entries: the same object, for the resolver)
            row.set_tasks(info.tasks)
            return True
        said = (info.digest, info.started)
        if row.want == said:
            return False
        if row.want is None and self.form(row) == said:
            return False
        self.own_form()  # (our own set is held: a member of our build needs no fetch)
        got = self.sets.entries(info.digest, info.started)
        if got is None:
            row.want = said
            self.wanting = self.sets.fresh = True
            return False
        row.tasks, row.want = got, None
        row.digest, row.started = said
        return True

    def wanted(self) -> dict[str, list[Member]]:
        """digest -> the rows waiting for its set."""
        out: dict[str, list[Member]] = {}
        for row in self._rows.values():
            if row.want is not None:
                out.setdefault(row.want[0], []).append(row)
        return out

    def resolved(self, digest: str) -> bool:
        """The set of ``digest`` arrived: the rows that wait for it take it. True if any."""
        changed = False
        for row in self._rows.values():
            if row.want is not None and row.want[0] == digest:
                got = self.sets.entries(*row.want)
                if got is not None:
                    row.tasks = got
                    row.digest, row.started = row.want
                    row.want = None
                    changed = True
        if changed:
            self._changed()
        return changed

    def trim_sets(self) -> None:
        """Let the sets no row refers to go, once there are too many (:meth:`TaskSets.trim`:
        a manager through many deploys held every set it ever heard of)."""
        if not self.sets.crowded(len(self._rows)):
            return
        used: list[tuple[str, float | None]] = []
        for r in self._rows.values():
            if r.digest is not None:
                used.append((r.digest, r.started))
            if r.want is not None:
                used.append(r.want)
        self.sets.trim(used)

    def _changed(self) -> None:
        self.epoch += 1
        self.list_epoch = self.epoch
        self.trim_sets()

    def set_tasks(self, name: str, tasks: tuple[str, ...]) -> bool:
        """Change a row's advertised tasks; True if it changed."""
        row = self._rows.get(name)
        if row is None or row.tasks == tasks:
            return False
        row.set_tasks(tasks)
        self._changed()
        return True

    def admit(
        self, peer: Peer, tasks: tuple[str, ...], now: float, member_timeout: float
    ) -> Admission:
        """Apply the admission rules (module docstring) to a JOIN from ``peer``."""
        row = self._rows.get(peer.name)
        if row is None:
            self._rows[peer.name] = Member(peer, tasks, True, now)
            self._changed()
            return Admission("added")
        if row.peer.incarnation == peer.incarnation:
            changed = (row.tasks != tasks or row.want is not None or not row.alive
                       or row.peer != peer)
            if row.tasks != tasks:
                row.set_tasks(tasks)
            row.want = None
            row.peer, row.alive, row.last_seen = peer, True, now
            if changed:
                self._changed()
            return Admission("refreshed")
        if peer.name == self.me.name or (
            row.peer.address != peer.address
            and row.alive
            and now - row.last_seen < member_timeout
        ):
            return Admission("refused", duplicate_reason(
                peer.name, row.peer, peer.name == self.me.name, peer.address))
        self._rows[peer.name] = Member(peer, tasks, True, now)
        self._changed()
        return Admission("replaced")

    def learn(self, peers: Iterable[MemberInfo], now: float) -> None:
        """Record peers heard of before a manager exists (never replaces a live entry)."""
        for info in peers:
            row = self._rows.get(info.name)
            if info.name == self.me.name or (row is not None and row.alive):
                continue
            peer = Peer(info.name, info.address, info.incarnation, info.priority)
            row = self._rows[info.name] = Member(peer, (), info.alive, now)
            self._take(row, info)
            self._changed()

    def replace_all(self, infos: Iterable[MemberInfo], now: float) -> list[Member]:
        """Adopt the manager's list (keeping our own row as we know it). Returns the rows it
        dropped (members the manager no longer lists), so the caller can remember them."""
        old = self._rows
        me = self.me.name
        rows: dict[str, Member] = {me: old[me]}
        for info in infos:
            name = info.name
            if name == me:
                continue
            prev = old.get(name)
            if prev is not None:
                p = prev.peer
                if (p.incarnation == info.incarnation and p.address == info.address
                        and p.priority == info.priority):
                    # The same node: update the row in place (keeps last_seen). This loop
                    # runs for every member on every list change, so it avoids allocating.
                    self._take(prev, info)
                    prev.alive = info.alive
                    rows[name] = prev
                    continue
            peer = Peer(name, info.address, info.incarnation, info.priority)
            row = rows[name] = Member(peer, (), info.alive, now)
            self._take(row, info)
        self._rows = rows
        self._changed()
        return [row for name, row in old.items() if name not in rows]

    def touch(self, name: str, incarnation: str, now: float) -> Member | None:
        """Note that ``name`` (this incarnation) was heard from; revive it if marked dead."""
        row = self._rows.get(name)
        if row is None or row.peer.incarnation != incarnation:
            return None
        row.last_seen = now
        if not row.alive:
            row.alive = True
            self._changed()
        return row

    def mark_dead(self, name: str) -> bool:
        row = self._rows.get(name)
        if row is None or not row.alive or name == self.me.name:
            return False
        row.alive = False
        row.clock_ms = None  # (revived, it shows again with its next ACK: clerk._clockskew)
        self._changed()
        return True

    def remove(self, name: str) -> Member | None:
        if name == self.me.name:
            return None
        row = self._rows.pop(name, None)
        if row is not None:
            self._changed()
        return row

    def expire(self, now: float, timeout: float) -> list[Member]:
        """Remove members not heard from for ``timeout`` seconds; return them."""
        gone = [r for r in self.others() if now - r.last_seen > timeout]
        for row in gone:
            del self._rows[row.name]
        if gone:
            self._changed()
        return gone
