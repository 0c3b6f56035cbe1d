"""Merge and hand-over: how a manager's table and state pass to another manager.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` routes
HANDOVER and leave requests to them, :mod:`clerk._election` calls :func:`step_down_to`. Rules:

* **Partitions heal.** Two managers that meet resolve by claim order (:mod:`clerk._claims`):
  the lower one hands its member list and state to the higher one (HANDOVER), tells its
  members the winner's claim, and follows it (:func:`step_down_to`). The members it lost are in
  no list the winner gets: it keeps probing them as orphans (:mod:`clerk._joining`).
* **Merge HANDOVER.** A manager takes a merge HANDOVER only from a member, a member it lost
  (it probes those with its claim: a partition's other side) or a node it sent its claim to,
  with a claim below its own (:func:`accept_merge`); anything else is dropped and counted
  (``handover_stranger``). Before, a lost member was not enough: a winner that dropped the
  old manager's row (silent for the member timeout since the takeover) between the old
  manager's step-down and its HANDOVER's arrival, and had not probed it again yet, dropped
  the table.
* **Merges are confirmed.** The winner answers each merge HANDOVER part with MERGED (its
  :func:`part_id`; only to a node whose incarnation says it reads it) once its task layer
  merged it into the table it schedules (``StateHandedOver.confirm``), not when it arrives:
  a winner still loading its table holds the parts until it is loaded, and one that loses
  its claim (or dies) meanwhile drops them unconfirmed, so the loser sends them again to the
  manager it follows next. Before, they were confirmed on arrival and lost then. The stepped-down
  manager keeps each part until it is confirmed and sends the unconfirmed ones again (without
  the member list, which may be stale by then) to the manager it follows
  (:func:`retry_merge`): after ``MERGE_RETRY`` s, then twice as long each time up to
  ``MERGE_RETRY_MAX``, for ``MERGE_GIVE_UP`` s at most; to a winner of an older build (it
  never confirms) ``MERGE_OLD_RESENDS`` times at most once we know its build. Before, such a
  winner got the whole table ten times in a minute (~50 MB at 10,000 tasks). ZeroMQ does not deliver
  across a reconnect: at a heal the old manager often steps down within ~50 ms into a
  connection that is closed ~200 ms later (the stale one from before the partition), and
  what it had queued there was lost with the table's facts only it carried (an operator's
  pause). A merge is idempotent (rows by lineage and version, a conflict counted once per
  branch), so a part merged twice (its MERGED lost, or a winner of an older build, which
  never confirms) changes nothing the second time. Parts are kept while we are a candidate;
  if we claim again instead (the winner's connection closed and we won the election that
  followed: seen on a real cluster), they go into our own new table
  (:func:`take_back_merge`); a new step-down adds its parts to them.
* **Passed on.** A follower that gets a HANDOVER not from the manager it knows as current (it
  stepped down since) passes it on to the manager it follows, once per node (:func:`forward`,
  ``FORWARD_MEMORY``): followers can briefly follow each other in a loop after restarts, and
  the message would circle at network speed.
* **Graceful leave.** A leaving manager sends HANDOVER (members and replicated state) to the
  highest-ranked live member (:func:`leave_as_manager`), which takes over with a new term at
  once. A big table's hand-over carries only the rows the successor has not acknowledged (a
  delta); a successor too far behind for one (nothing of our log acknowledged: it joined, or
  we took over, moments ago) gets the whole table in parts of at most the message limit
  (:mod:`clerk._handparts`, a successor with ``PARTS_MARK``) and takes over once it has them
  all. Its successor says in its COORDINATOR to the leaver where its replica stands
  (``Coordinator.table``, from a build with ``HANDED_MARK``). The leaver stops when that is
  the end of its log (or it sent the whole table); else (the delta was refused for a gap, or
  the successor's replica was not where its ACK said) it sends the rows the successor lacks
  as a merge HANDOVER, confirmed and sent again as a stepped-down manager's
  (:func:`successor_took_over`), and stops once they are confirmed (``LEAVE_MERGE_WAIT`` at
  most). Before, those rows (the last results, an operator's last command) were lost. The
  same when another manager took over without its hand-over (an election while the
  successor was silent, its COORDINATOR lost: :func:`leaving_saw`), with the whole table.
  A successor whose connection closes before it took over (a crash) is replaced at once by
  the next live member (:func:`successor_down`); one that does not take over within
  ``handover_timeout`` (its HANDOVER lost on a closing connection, a frozen process) too,
  the members not tried yet first, ``LEAVE_PICKS`` hand-overs at most
  (:func:`leave_timeout`). Before, the leaver stopped after ``handover_timeout`` and the
  next manager took over from its replica without the leaver's last updates. A follower
  that leaves sends LEAVE to its manager and stops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from clerk._codec import EncodeError, encode
from clerk._corestate import CoreState
from clerk._coretypes import Role, Send, StateHandedOver
from clerk._covers import add_covers, covers_chars
from clerk._handparts import handover_parts, is_part, wire_bytes
from clerk._joining import learn
from clerk._membership import Member
from clerk._messages import (
    Claim,
    Coordinator,
    Handover,
    Json,
    Leave,
    MemberInfo,
    Merged,
    TableAt,
    reads_merged,
    reads_parts,
    says_handed,
)
from clerk._record import PACK_CHUNK
from clerk._replica import table_text
from clerk._tasksets import reads_digests

__all__ = [
    "FORWARD_MEMORY",
    "LEAVE_MERGE_WAIT",
    "LEAVE_PICKS",
    "MERGE_GIVE_UP",
    "MERGE_OLD_RESENDS",
    "MERGE_RETRY",
    "MERGE_RETRY_MAX",
    "accept_merge",
    "forward",
    "from_current_manager",
    "leave",
    "leave_as_manager",
    "leave_timeout",
    "leaving_saw",
    "m_merged",
    "members_chars",
    "part_id",
    "retry_merge",
    "step_down_to",
    "successor_down",
    "successor_took_over",
    "table_parts",
    "take_back_merge",
]

#: How many HANDOVERs a follower remembers having passed on (each is passed on once; a table
#: of 10,000 tasks is ~9 of them).
FORWARD_MEMORY = 64
#: A merge HANDOVER part not confirmed (MERGED) goes again after this many seconds: past a
#: heal's reconnections (a stale connection is closed within ~1 s, ZeroMQ reconnects within
#: 0.2 s after), and the winner's merge of a big table (~0.1 s per part on a loaded machine).
MERGE_RETRY = 1.0
#: ... then twice as long each time, up to this.
MERGE_RETRY_MAX = 8.0
#: ... and not after this many seconds since the step-down (a winner of an older build never
#: confirms: it gets the table 10 times, at 0, 1, 3, 7, 15, 23 ... 55 s; each merge idempotent).
MERGE_GIVE_UP = 60.0
#: A winner of an older build (no ``MERGE_MARK``: it never confirms) gets the parts again this
#: many times at most, once we know its build (its row in the list it sends us): past a heal's
#: reconnections, without the ten sends of ``MERGE_GIVE_UP`` (each the whole table: ~5 MB at
#: 10,000 tasks, merged again each time).
MERGE_OLD_RESENDS = 1
#: A leaving manager hands over at most this many times (its successor did not take over in
#: ``handover_timeout``: to the next live member not tried yet, else the same one again).
LEAVE_PICKS = 3
#: A leaving manager waits at most this long for MERGED of the rest of its table (a successor
#: that took over without it loads its table first: ~1 s at 10,000 tasks on a loaded machine;
#: sent at 0, 1 and 3 s). With ``LEAVE_PICKS`` hand-overs before, a leave stays well within
#: the node's 15 s for its agent to stop (``clerk._node.AGENT_SHUTDOWN_MS``).
LEAVE_MERGE_WAIT = 5.0


def table_parts(items: list[tuple[str, str | None]], limit: int,
                first: int | None = None) -> list[Json]:
    """The rows ``items`` (key, row text) packed (:func:`clerk._record.pack_table`'s form) as
    tables of at most ``limit`` bytes of text each, as encoded in a message (``first``: of
    the first one, which may then be None: no room for a row), a row longer than that alone;
    none for no rows. Made from the rows' text without parsing them."""
    groups: list[list[tuple[str, str | None]]] = [[]]
    budget = limit if first is None else first
    used = 0
    for key, text in items:
        if text is None:
            continue
        # The key's quotes, the colon and the comma, as encoded in the message: the packed
        # text is escaped again inside a JSON string (clerk._handparts.wire_bytes). Counted
        # in characters, a part of rows full of quotes was up to twice the limit.
        size = wire_bytes(key) + wire_bytes(text) + 2
        if used + size > budget and (groups[-1] or len(groups) == 1 and budget < limit):
            groups.append([])
            budget, used = limit, 0
        groups[-1].append((key, text))
        used += size
    out: list[Json] = []
    for group in groups:
        if not group:
            out.append(None)  # (only the first: it had no room)
            continue
        text = table_text(group)
        out.append({"packed": 1, "chunks": [text[i:i + PACK_CHUNK]
                                            for i in range(0, len(text), PACK_CHUNK)]})
    return [] if out == [None] else out


def members_chars(members: tuple[MemberInfo, ...]) -> int:
    """About how long the JSON of a member list is (its task lists make it long: 10,000 task
    names are ~0.3 MB per member)."""
    return sum(len(m.name) + len(m.address) + len(m.incarnation) + 80
               + sum(len(t) + 3 for t in m.tasks) for m in members)


def step_down_to(core: CoreState, claim: Claim, now: float) -> None:
    """We are a manager and met a higher claim: hand our table to the winner, and tell our
    own members who the manager is now. Otherwise they would learn it only if the winner took
    our list (it may drop a HANDOVER it cannot vouch for) or after our heartbeats stop and
    their manager timeout runs out (0.7 s).

    The table goes in as many HANDOVERs as keep each within the message limit
    (``core.part_chars`` of text; the first carries the member list and the rows that fit
    beside it, the others no members): 10,000 tasks, ~5 MB, are ~9; one HANDOVER of it was
    never sent. Each is a table of its own rows: the winner merges each as it comes, row by
    row by lineage and version (``Scheduler.merge``), so a part that never comes loses only
    its rows' progress, never corrupts another's, and a node of an older build reads each as
    a merge HANDOVER, as before (nothing new on the wire)."""
    source = core.table_log if core.table_log.complete else core.replica
    # By digest to a winner we know reads them (a member); one we do not know (most merges:
    # the other side's manager) gets the entries, as an older build reads them.
    winner = core.members.by_address(claim.address)
    members = core.members.infos(
        digests=winner is not None and reads_digests(winner.peer.incarnation))
    # The members whose rows our table covers (clerk._covers): in each part, so its budget
    # is that much less. Only those that follow us still: they acknowledged us since our
    # claim (or our last stall) and within a manager timeout; one silent longer may have
    # followed another manager since (a partition), and hold its rows. (Quorum mode: a
    # winner does not merge the table.)
    horizon = now - core.timings.manager_timeout
    live = {r.name for r in core.members.others()
            if r.alive and r.acked_epoch >= 0 and r.last_seen >= horizon} | {core.me.name}
    covered = [n for n in core.covers() if n in live] if core.quorum is None else []
    limit = core.part_chars - (covers_chars(covered) if covered else 0)
    room = max(0, limit - members_chars(members))
    parts = add_covers(table_parts(source.items(), limit, room), covered, core.term) or [None]
    for i, part in enumerate(parts):
        msg = Handover(core.me, core.term, members if i == 0 else (), part)
        core.send(claim.address, msg)
        core._merge_out[part_id(part)] = msg  # until MERGED (module docstring)
    core._merge_to.add(claim.address)
    core._merge_wait = MERGE_RETRY
    core._merge_rounds = 0
    core._merge_retry = now + MERGE_RETRY
    core._merge_until = now + MERGE_GIVE_UP
    # The members we lost are in no list the winner gets: keep probing them.
    core._orphans.update(core._lost)
    for row in core.members.others():
        if row.alive and row.peer.address != claim.address:
            core.send(row.peer.address, Coordinator(core.me, claim.term, claim))


def accept_merge(core: CoreState, msg: Handover, now: float) -> None:
    """Manager: a lower manager stepped down to us: merge its members and state. Only from a
    member or a node we sent our claim to, with a claim below ours."""
    s = msg.sender
    row = core.members.get(s.name)
    known = (row is not None and row.peer.incarnation == s.incarnation
             and row.peer.address == s.address) or s.address in core._told
    known = known or s.address in core._lost  # (probed with our claim: the other side)
    known = known or s.address == core._took_from  # (a leaver's rest: successor_took_over)
    if not known or (msg.term, s.priority, s.name) >= core.my_claim().key:
        core.drop("handover_stranger", f"HANDOVER from {s.name!r} at {s.address!r}: "
                                       "not a member, nor a manager we deposed")
        return
    if is_part(msg.state):
        # A part of a graceful hand-over's table (clerk._handparts): not a table of its own.
        core.drop("handover_part", f"a hand-over part from {s.name!r}: not a table")
        return
    if isinstance(msg.state, dict) and msg.state.get("delta") == 1:
        # A graceful hand-over's rows beyond a replica (a leaving manager handed over to a
        # member that follows us by now): no table to merge. The leaver sends us its whole
        # table when it sees our claim (leaving_saw).
        core.drop("handover_delta", f"a hand-over delta from {s.name!r}: not a table")
        return
    learn(core, msg.members, now)
    confirm = (Send(s.address, Merged(core.me, core.term, part_id(msg.state)))
               if reads_merged(s) else None)
    core._out.append(StateHandedOver(s.name, msg.state, True, confirm))


def part_id(state: Json) -> str:
    """A merge HANDOVER part's identity, for its MERGED: a digest of its whole text (~1 ms
    for a part of ~600 KB; its first row alone could be shared by two parts, when task names
    are long), or of its JSON if it is not packed."""
    h = hashlib.blake2b(digest_size=8)
    chunks = state.get("chunks") if isinstance(state, dict) else None
    if isinstance(chunks, list) and all(isinstance(c, str) for c in chunks):
        for chunk in chunks:
            h.update(chunk.encode())
    else:
        h.update(json.dumps(state, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def retry_merge(core: CoreState, now: float) -> None:
    """Follower: send the merge HANDOVER parts not confirmed yet again, to the manager we
    follow (module docstring, "Merges are confirmed"); give up after ``MERGE_GIVE_UP``."""
    if not core._merge_out or now >= core._merge_until:
        clear_merge(core)
        return
    claim = core._claim if core.role is Role.FOLLOWER else None
    if core.role is Role.LEAVING:
        claim = core._leave_to  # (the rest of a leaving manager's table: successor_took_over)
    if claim is not None:
        row = core.members.get(claim.name)
        if (row is not None and row.peer.address == claim.address
                and not reads_merged(row.peer) and core._merge_rounds >= MERGE_OLD_RESENDS):
            clear_merge(core)  # (an older build: it never confirms; bounded, see above)
            if core.role is Role.LEAVING:
                core.stop(f"left; handed over to {claim.name} (an older build: unconfirmed)")
            return
        core._merge_rounds += 1
        for msg in core._merge_out.values():
            # Without the member list: the one we had at the step-down may be stale by now
            # (the winner would learn nodes gone since); our live members followed the
            # winner on our word, the others we probe as orphans.
            core.send(claim.address, dataclasses.replace(msg, members=()))
            core.merge_resent += 1
        core._merge_to.add(claim.address)
    core._merge_wait = min(2 * core._merge_wait, MERGE_RETRY_MAX)
    core._merge_retry = now + core._merge_wait


def take_back_merge(core: CoreState) -> None:
    """We claim again with our merge HANDOVER not confirmed (the winner's connection closed
    and we won the election that followed, or the winner died): our table is the one its
    parts go into now (``StateHandedOver`` from ourselves, after ``ManagerChanged``: the task
    layer merges them once it has loaded the table it continues from)."""
    for msg in core._merge_out.values():
        core._out.append(StateHandedOver(core.me.name, msg.state, True))
    clear_merge(core)


def clear_merge(core: CoreState) -> None:
    core._merge_out.clear()
    core._merge_to.clear()
    core._merge_retry = core._merge_until = float("inf")


def m_merged(core: CoreState, msg: Merged, now: float) -> None:
    """MERGED: a part of our merge HANDOVER was merged; only from a node we sent it to or the
    manager we follow (anyone else's is dropped: it would stop a retry)."""
    if not core._merge_out:
        return  # nothing pending: a late or second MERGED (a part sent again) is moot
    claim = core._claim
    s = msg.sender
    if s.address not in core._merge_to and not (
            claim is not None and claim.name == s.name and claim.address == s.address):
        core.drop("merged_stranger", f"MERGED from {s.name!r} at {s.address!r}: "
                                     "we sent it no merge HANDOVER")
        return
    core._merge_out.pop(msg.part, None)
    if not core._merge_out:
        clear_merge(core)
        if core.role is Role.LEAVING:
            core.stop(f"left; handed over to {s.name}")


def from_current_manager(core: CoreState, msg: Handover) -> bool:
    """Is this HANDOVER from the manager we know as current (a graceful leave to us)?"""
    h = core.highest
    return h is not None and h.name == msg.sender.name and h.term == msg.term


def forward(core: CoreState, msg: Handover) -> None:
    """Not from the manager we know as current, so not a graceful leave: a manager that
    stepped down to us while we were still one (a merge) and we have stepped down since.
    Taking over would depose the real manager with a needless new term; pass the table and
    state on to the manager we follow instead, once per node."""
    s = msg.sender
    if is_part(msg.state):
        # A graceful hand-over's part, to us as a member that no longer follows the leaver:
        # never a merge (clerk._handparts); the leaver sends the manager its whole table
        # when it sees its claim (leaving_saw).
        core.drop("handover_part", f"a hand-over part from {s.name!r}: not passed on")
        return
    key = (s.name, s.incarnation, msg.term, _part_key(msg.state))
    if core.role is Role.FOLLOWER and core._claim is not None and key not in core._forwarded:
        core._forwarded[key] = None
        if len(core._forwarded) > FORWARD_MEMORY:
            del core._forwarded[next(iter(core._forwarded))]
        core.send(core._claim.address, msg)


def _part_key(state: Json) -> str:
    """Which part of a merge's table ``state`` is (its first row's key begins its text):
    each part of a table in several HANDOVERs is passed on once."""
    if isinstance(state, dict) and isinstance(state.get("chunks"), list) and state["chunks"]:
        first = state["chunks"][0]
        return first[:200] if isinstance(first, str) else ""
    return ""


def _state_chars(state: Json) -> int:
    """The text length of a hand-over's table (whole and packed, or the rows of a delta)."""
    if not isinstance(state, dict):
        return 0
    texts = state.get("chunks") if "chunks" in state else state.get("rows")
    return sum(len(t) for t in texts) if isinstance(texts, list) else 0


def _fits(core: CoreState, members: tuple[MemberInfo, ...], state: Json) -> bool:
    """Does a HANDOVER of ``state`` with ``members`` fit one message (its encoded bytes)?"""
    if _state_chars(state) > core.message_bytes:
        return False  # (a character is a byte at least: not encoded, ~5 MB at 10,000 tasks)
    try:
        encode(Handover(core.me, core.term, members, state), core.message_bytes)
    except EncodeError:
        return False
    return True


def leave_as_manager(core: CoreState, now: float) -> None:
    """Hand everything to the highest-ranked live member, then wait for its COORDINATOR."""
    live = [r for r in core.members.others() if r.alive
            and (core.quorum is None or r.name in core.quorum.voters)]  # quorum: voters only
    if not live:
        core.stop("left; no member to hand over to")
        return
    forms = {d: tuple(i for i in core.members.infos(digests=d) if i.name != core.me.name)
             for d in (False, True)}

    def members_for(row: Member) -> tuple[MemberInfo, ...]:
        return forms[reads_digests(row.peer.incarnation)]

    # The highest-ranked member whose hand-over fits one message, or that takes it in parts
    # (clerk._handparts): one too far behind for a delta (it joined moments ago, or we took
    # over moments ago) needs the whole table, over the limit from ~2,000 tasks. Before
    # parts, it never got it and took over later, by an election, with its replica as it
    # was. None does: the highest, as before. (Members handed over to already, silent
    # since, last: leave_timeout.)
    ranked = sorted(live, key=lambda r: (r.name not in core._leave_tried, r.peer.rank),
                    reverse=True)
    successor, state, in_parts = ranked[0], None, False
    for i, row in enumerate(ranked):
        candidate = core.handover_state(row)
        if i == 0:
            state = candidate
        if _fits(core, members_for(row), candidate):
            successor, state = row, candidate
            break
        if reads_parts(row.peer):
            successor, state, in_parts = row, core.replicated_packed(), True
            break
    members = members_for(successor)
    whole_at = None
    msgs = [Handover(core.me, core.term, members, state)]
    if in_parts and isinstance(state, dict):
        log = core.table_log
        whole_at = TableAt(log.log, log.seq) if log.complete else None
        try:
            msgs = handover_parts(core.me, core.term, members, "".join(state["chunks"]),
                                  str(core._leave_picks), core.message_bytes, whole_at)
        except ValueError:  # (a limit that holds no text beside a HANDOVER's fields)
            whole_at = None
    for msg in msgs:
        core.send(successor.peer.address, msg)
    core.role = Role.LEAVING
    core._successor = successor.name
    core._deadline = now + core.timings.handover_timeout
    core._leave_tried.add(successor.name)
    core._leave_picks += 1
    core._leave_sent = whole_at  # (in parts: where its replica then stands, _handparts)
    if isinstance(state, dict) and state.get("delta") == 1:
        core._leave_sent = TableAt(state["log"], state["upto"])  # (where it brings it)


def successor_took_over(core: CoreState, msg: Coordinator, now: float) -> None:
    """LEAVING: our successor's COORDINATOR. Stop, unless it says that its replica is not at
    the end of our log after a hand-over that carried a delta: then send it the rows it lacks
    (module docstring, "Graceful leave")."""
    core.raise_highest(msg.claim)
    if core._leave_to is not None:
        return  # the rest is on its way already (a COORDINATOR again)
    row = core.members.get(core._successor)
    if core._leave_sent is None or core.quorum is not None or row is None \
            or not says_handed(row.peer):
        # (Quorum mode: every result is on a majority of voters, and the successor's phase 1
        # took them; an older build does not say where its replica stands.)
        core.stop(f"left; handed over to {core._successor}")
        return
    if msg.sender.name != msg.claim.name or msg.table is None:
        # A member's relay of the claim, or the successor telling us of it (our claim is
        # stale to it): its answer to our HANDOVER says where its replica stands (else
        # leave_timeout sends the whole table).
        return
    if msg.table == core._leave_sent:
        core.stop(f"left; handed over to {core._successor}")
        return
    send_rest(core, msg.claim, msg.table if msg.table.log else None, now)


def leaving_saw(core: CoreState, claim: Claim, now: float) -> None:
    """LEAVING: a claim above ours other than our successor's: a manager took over without
    our hand-over (elected while our successor was silent). Send it our whole table."""
    if (core.role is Role.LEAVING and core._leave_to is None and core.quorum is None
            and claim.name != core._successor and claim.key > core.my_claim().key):
        send_rest(core, claim, None, now)


def send_rest(core: CoreState, claim: Claim, at: TableAt | None, now: float) -> None:
    """LEAVING: the rows of our table that the manager of ``claim`` may lack (those changed
    after ``at`` if it is of our log, else every row), as a merge HANDOVER in parts, kept until
    confirmed (:func:`retry_merge`); we stop when all are (:func:`m_merged`)."""
    log = core.table_log
    source = log if log.complete else core.replica
    items = source.items()
    if at is not None and log.complete and at.log == log.log:
        changed = log.changed_after(at.seq)
        items = [(k, t) for k, t in items if k in changed]
    parts = table_parts(items, core.part_chars)
    if not parts:
        core.stop(f"left; handed over to {claim.name}")
        return
    for part in parts:
        msg = Handover(core.me, core.term, (), part)
        core.send(claim.address, msg)
        core._merge_out[part_id(part)] = msg
    core._leave_to = claim
    core._merge_to.add(claim.address)
    core._merge_wait = MERGE_RETRY
    core._merge_rounds = 0
    core._merge_retry = now + MERGE_RETRY
    core._merge_until = core._deadline = now + LEAVE_MERGE_WAIT


def successor_down(core: CoreState, name: str, now: float) -> None:
    """LEAVING: the connection of member ``name`` closed (marked dead): if it is the successor
    and it has not taken over, hand over to the next live member at once. With none left, we
    wait on (a connection also closes under a process frozen past ZeroMQ's heartbeats: it may
    still take over when it runs again; leave_timeout)."""
    if core.role is Role.LEAVING and name == core._successor and core._leave_to is None \
            and (core.highest is None or core.highest.name != name) \
            and any(r.alive for r in core.members.others()):
        leave_as_manager(core, now)


def leave_timeout(core: CoreState, now: float) -> None:
    """LEAVING past the deadline: the rest of our table is not confirmed (stop); a manager
    took over that we did not send it to (send it); else our successor did not take over:
    the next live member, ``LEAVE_PICKS`` times at most (module docstring)."""
    if core._leave_to is not None:
        core.stop(f"left; {core._leave_to.name} did not confirm the rest of the table in time")
        return
    h = core.highest
    if h is not None and h.key > core.my_claim().key and core.quorum is None:
        send_rest(core, h, None, now)  # (its COORDINATOR to us was lost: every row)
        return
    if core._leave_picks < LEAVE_PICKS and core.quorum is None:
        leave_as_manager(core, now)
        return
    core.stop(f"left; successor {core._successor} did not confirm in time")


def leave(core: CoreState, now: float) -> None:
    """``LeaveRequested``: a manager hands over first; a follower says goodbye and stops."""
    if core.role is Role.MANAGER:
        leave_as_manager(core, now)
        return
    core._left_as_member = True
    if core.highest is not None:
        seen = core._holder_seen
        holder = core.members.get(core.highest.name)
        core._left_holder = (seen[1] if seen is not None and seen[0] == core.highest.key
                             else holder.peer.incarnation if holder is not None else "")
    if core.role is Role.FOLLOWER and core._claim is not None:
        core.send(core._claim.address, Leave(core.me, core.term))
    core.stop("left")


