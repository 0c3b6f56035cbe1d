"""Heartbeats: how a manager keeps its members' lists and tables, and how they acknowledge.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` and
:mod:`clerk._election` call them (joining a cluster is :mod:`clerk._joining`). Rules:

* **Heartbeats.** A manager sends HEARTBEAT every ``heartbeat_interval`` to every member; the
  member list rides along only to members that have not acknowledged the current epoch (each
  member's tasks by digest to a node that reads it, :mod:`clerk._tasksets`; a node asks for a
  set it lacks, :func:`clerk._setfetch.fetch_sets`), and
  the task table's changes only to members behind the table log, in bounded chunks
  (:mod:`clerk._replica`). A WELCOMEd joiner gets its first chunks with the WELCOME; one that
  does not acknowledge them is not sent the table again before ``TABLE_RESEND``. A member
  silent for ``member_timeout`` is marked down (``MemberDown("silent")``) and its address
  goes to ``_lost``.
* **ACKs when there is something to say** (:func:`acknowledge`). A follower acknowledges a
  heartbeat at once when it carries the member list (a manager that needs an answer sooner,
  e.g. after its own stall, sends the list) and when it is a voter in quorum mode
  (check-quorum counts the voters heard within ``manager_timeout``). What changed its table
  (or a table change it could not apply) it acknowledges at most once per
  ``heartbeat_interval``: a burst of replication rounds between two heartbeats costs the
  manager one ACK per member, and the next heartbeat (at most an interval later) carries the
  rest, since its ACK then says something the last one did not. Big changes are acknowledged
  at once (a quarter of the window's row text since the last ACK: a join, a takeover), and so
  is every further heartbeat of a round already acknowledged (the chunks of one window: the
  last one must not hold the window shut for an interval). A heartbeat that brings nothing
  is acknowledged only once the last ACK to that manager is ``member_timeout /
  ACKS_PER_TIMEOUT`` old. An unchanged cluster then costs the manager one ACK per member
  every 0.5 s, not every 100 ms, and the member timeout keeps its meaning: a member silent
  for that long is dropped.
* **Stall fence.** A manager whose loop did not run for longer than ``manager_timeout``
  dispatches nothing until a member acknowledges a heartbeat sent after the stall
  (``dispatch_ok``; the rules are in :mod:`clerk._fence`). That round carries the member
  list, so members acknowledge it at once, however rarely they ACK an idle heartbeat.
* **A frozen loop** (:func:`resumed`): for a member timeout after our own loop was stopped,
  a closed connection is not taken as a crash.
"""

from __future__ import annotations

from clerk._clockskew import reads_clock
from clerk._corestate import CoreState
from clerk._coretypes import MemberDown, MemberUp, Role
from clerk._histdelta import reads_hist
from clerk._membership import Member
from clerk._messages import Ack, Coordinator, Heartbeat, TableDelta, reads_raw_rows
from clerk._replica import TABLE_RESEND, TABLE_WINDOW_CHARS
from clerk._setfetch import list_for
from clerk._tasksets import reads_digests

__all__ = [
    "ACKS_PER_TIMEOUT",
    "RESUME_GAP",
    "acknowledge",
    "heartbeat_round",
    "m_ack",
    "resumed",
    "send_table",
    "stalled",
    "table_position",
]

#: A follower whose heartbeats bring nothing new ACKs this many times per ``member_timeout``
#: (every 0.5 s at the defaults; the manager heartbeats every 0.1 s). ACKs are the manager's
#: only sign of life of an idle member, and each costs the manager's loop a wake-up, a
#: receive, a decode and a core step: ten a second per member were most of its CPU per member
#: (``tools/bench_replication.py --cpu``). Four per timeout leave a member's loop 3/4 of the
#: member timeout (1.5 s, was 1.9 s) of stall before it is dropped as silent; a crash is
#: noticed at once by the connection (``PeerDown``), a pause by the member timeout or within
#: ~2 s by the connection (ZeroMQ's PING a second, ``clerk._transport``), whichever is first.
ACKS_PER_TIMEOUT = 4



def acknowledge(core: CoreState, msg: Heartbeat, now: float) -> None:
    """Follower, after applying ``msg`` from its manager: ACK it now, or not yet (the rules
    are in the module docstring)."""
    said = (core._epoch_seen, core.replica.seq, core.replica.log)
    since = now - core._acked_at
    t = core.timings
    if msg.table is not None:
        core._unacked_chars += _chars(msg.table)
    if not (msg.members is not None
            or (core.quorum is not None and core.quorum.is_voter)
            or since >= t.member_timeout / ACKS_PER_TIMEOUT
            or ((said != core._ack_said or msg.table is not None)
                and (since >= t.heartbeat_interval or msg.seq == core._acked_seq
                     or core._unacked_chars >= TABLE_WINDOW_CHARS // 4))):
        return
    core._ack_said, core._acked_at, core._acked_seq, core._unacked_chars = (
        said, now, msg.seq, 0)
    clock_ms = None  # our clock's offset, to a manager that reads it (clerk._clockskew),
    # from its own stamps (not a previous manager's still in the window)
    if (core.wall_ms is not None and reads_clock(msg.sender.incarnation)
            and core.clock_skew.source == f"{msg.sender.name}/{msg.sender.incarnation}"):
        off = core.clock_skew.offset(now, core.wall_ms() / 1000)
        clock_ms = None if off is None else round(off * 1000, 1)
    core.send(msg.sender.address, Ack(core.me, core.term, msg.seq, *said, clock_ms))


def heartbeat_round(core: CoreState, now: float) -> None:
    """Manager: mark silent members down, then heartbeat every member: the list only to those
    behind the current epoch, the table's changes only to those behind the log
    (:func:`send_table`)."""
    t = core.timings
    for row in core.members.expire(now, t.member_timeout):
        if core._probation.pop(row.name, None) is None:  # never acked: not worth a probe
            core._lost[row.peer.address] = now
        core._out.append(MemberDown(row.name, "silent"))
    for name, when in list(core._probation.items()):
        if when < now - t.member_timeout or name not in core.members:
            del core._probation[name]
    core._fence.expire(now)
    core._seq += 1
    epoch = core.members.epoch
    # Members in the same position share the same heartbeat objects (the agent encodes an
    # object once per batch of effects: see Agent.apply): in a steady cluster, one or two
    # distinct heartbeats per round whatever the number of members.
    beats: dict[tuple[int, int, int, int, bool, bool], list[Heartbeat]] = {}
    # The round's wall time, for members to estimate their clocks' offsets (clerk._clockskew).
    wall_ms = int(core.wall_ms()) if core.wall_ms is not None else None
    for row in core.members.others():
        # The list (0: none), with each member's entries (1) or by digest (2).
        form = 0 if row.acked_epoch == epoch else (
            2 if reads_digests(row.peer.incarnation) else 1)
        base, room = table_position(core, row, now)
        key = (form, base, room, _patches(row, base), reads_raw_rows(row.peer),
               wall_ms is not None and reads_clock(row.peer.incarnation))
        chain = beats.get(key)
        if chain is None:
            chain = beats[key] = _chain(core, form, base, room, key[3], key[4],
                                        wall_ms if key[5] else None)
        for beat in chain:
            core.send(row.peer.address, beat)
        _sent(core, row, chain, now)
    core._next_heartbeat = now + t.heartbeat_interval


def _chars(delta: TableDelta) -> int:
    """A delta's text (its rows, and their histories' patches if any)."""
    n = sum(len(p) for p in delta.rows)
    return n if delta.hist is None else n + sum(len(p) for p in delta.hist)


def table_position(core: CoreState, row: Member, now: float) -> tuple[int, int]:
    """Where the table's changes to ``row`` start, and how much row text it may get now:
    after what it was sent while that is recent and the window not full, else after what it
    acknowledged (-1: nothing to send now). See :mod:`clerk._replica`."""
    log = core.table_log
    if row.sent_table > row.acked_table and now - row.sent_at < TABLE_RESEND:
        room = TABLE_WINDOW_CHARS - row.sent_chars
        if row.sent_table >= log.seq or room <= 0:
            return -1, 0  # everything sent, or the window is full: wait for the ACK
        return row.sent_table, room
    if row.sent_table > row.acked_table:
        # The window again, from the acknowledged position: what the member holds may not
        # be what we think (a delta lost, or a patch it refused), so rows go whole from here
        # until a delta reaches the log's end again (clerk._histdelta).
        row.snaps.clear()
    if row.acked_table >= log.seq:
        return -1, 0
    row.sent_chars = 0
    return row.acked_table, TABLE_WINDOW_CHARS


def _patches(row: Member, base: int) -> int:
    """How rows' histories go to ``row`` from ``base`` (``ReplicaLog.delta``'s ``hist``): 0,
    only in the rows (an older build); 2, as patches from a position it holds exactly; 1,
    whole, with their identities (clerk._histdelta)."""
    if not reads_hist(row.peer.incarnation):
        return 0
    return 2 if base in row.snaps else 1


def _chain(core: CoreState, form: int, base: int, room: int,
           hist: int = 0, raw: bool = False, wall_ms: int | None = None) -> list[Heartbeat]:
    """One heartbeat (the list if ``form``: 1 with the entries, 2 by digest; the first
    delta), then one per further delta of the window (``hist``: see ``_patches``; ``raw``:
    the rows after the body, to a member that reads them: ``reads_raw_rows``)."""
    deltas = core.table_log.window(base, room, hist, raw) if room > 0 else []
    members = core.members.infos(digests=form == 2) if form else None
    first = Heartbeat(core.me, core.term, core._seq, core.members.epoch, members,
                      deltas[0] if deltas else None, wall_ms)
    return [first, *(Heartbeat(core.me, core.term, core._seq, core.members.epoch, None, d)
                     for d in deltas[1:])]


def _sent(core: CoreState, row: Member, chain: list[Heartbeat], now: float) -> None:
    end = core.table_log.seq
    for beat in chain:
        if beat.table is not None:
            if beat.table.upto == end:  # an uncut delta: the member then holds the log as is
                if len(row.snaps) >= 8:
                    row.snaps.discard(min(row.snaps))
                row.snaps.add(end)
            if row.sent_table <= row.acked_table:
                # A new window: its age (TABLE_RESEND) counts from here and from each ACK
                # that moves it on, not from each later change sent after it. Refreshed by
                # every send, the window of a member that refused a delta (a gap: a message
                # lost) was never sent again while the table kept changing (a 200 ms task):
                # its replica stayed short of the table for good (simulator, 1,000 fillers).
                row.sent_at = now
            row.sent_table = beat.table.upto
            row.sent_chars += _chars(beat.table)


def send_table(core: CoreState, row: Member, now: float) -> None:
    """Send ``row`` the table's changes it lacks now, within its window (a WELCOMEd joiner
    gets the first chunks at once, not at the next change)."""
    base, room = table_position(core, row, now)
    if room <= 0:
        return
    chain = [Heartbeat(core.me, core.term, core._seq, core.members.epoch, None, d)
             for d in core.table_log.window(base, room, _patches(row, base),
                                            reads_raw_rows(row.peer))]
    for beat in chain:
        core.send(row.peer.address, beat)
    _sent(core, row, chain, now)


def m_ack(core: CoreState, msg: Ack, now: float) -> None:
    """ACK: the member is alive and has this epoch; it may confirm a stalled manager's claim."""
    if core.role is not Role.MANAGER:
        return
    if msg.term > core.term:
        # The sender follows a newer manager; our claim makes it tell us who.
        core.send(msg.sender.address, Coordinator(core.me, core.term, core.my_claim()))
        return
    s = msg.sender
    row = core.members.get(s.name)
    was_dead = row is not None and not row.alive
    row = core.members.touch(s.name, s.incarnation, now)
    if row is not None:
        core._probation.pop(s.name, None)
    if row is None:
        # Not (or no longer) a member: the list we send makes it JOIN again.
        core.send(s.address, Heartbeat(core.me, core.term, core._seq, core.members.epoch,
                                       list_for(core, s.incarnation), None))
        return
    row.acked_epoch = msg.epoch
    row.clock_ms = msg.clock_ms
    acked = msg.table if msg.log == core.table_log.log else -1
    if acked < row.acked_table:
        row.snaps.clear()  # the member restarted its replica (or left our log)
    if acked >= row.sent_table or acked < row.acked_table:
        row.sent_chars = 0  # the window is acknowledged (or the member restarted its replica)
    elif acked > row.acked_table:
        row.sent_at = now  # the window moves on: its age counts from here (_sent)
    row.acked_table = acked
    if row.sent_table < acked:
        row.sent_table = acked
    core._fence.ack(msg.term, core.term, msg.seq)  # a member still follows us
    if was_dead:
        core._out.append(MemberUp(row.info(), "revived"))


def stalled(core: CoreState, now: float) -> None:
    """Our loop did not run for longer than a follower waits for us (:mod:`clerk._fence`):
    heartbeat at once, with the member list, which members ACK at once (:func:`acknowledge`);
    an ACK of this round or later confirms us."""
    live = [r for r in core.members.others() if r.alive]
    if not live:
        core._fence.count()  # nobody could have replaced us on our side, nobody to ask
        return
    for row in live:
        row.last_seen = now  # our silence, not theirs: each gets a full timeout to answer
        row.acked_epoch = -1  # the list: an ACK now, not at the member's next idle one
    core._fence.engage(core._seq + 1, now, core.timings.member_timeout)
    heartbeat_round(core, now)


#: A gap between two events of a node that is not the manager longer than this is its own loop
#: frozen, whatever its role: the agent's loop wakes at least once a second (its poll is capped
#: at 1 s) and no role's timers are further apart than ``join_retry``/``probe_interval`` (1 s),
#: so an idle node sees an event at least every ~1 s; 2.5 s leaves a loaded machine's lateness
#: room. (A manager heartbeats every 100 ms, so its own bound is the manager timeout.)
RESUME_GAP = 2.5


def resumed(core: CoreState, now: float) -> None:
    """Our own loop was frozen (a manager's gap past the manager timeout, any role's past
    ``RESUME_GAP``): for a member timeout, a closed connection is not taken as a crash.

    While we were stopped our peers' ZeroMQ heartbeats timed out and closed our links; the socket
    monitor reports each as down the moment we run again, and the links reconnect by themselves
    within milliseconds. Taken at face value, such a burst marks every member dead and, for a
    follower, starts an election on the 25 ms disconnect probe of its (live) manager: a resumed
    ex-manager then won an election of one, at a new term, and ran a slot on its stale table
    before it met the cluster again (tools/chaos.py, seed 2: one slot twice while connected and
    the counter 46 updates back). Real crashes inside the window are still found by the timeouts.
    """
    core.distrust_down_until = now + core.timings.member_timeout

