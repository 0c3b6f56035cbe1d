"""Membership and joining: how a node gets into a cluster, and how a manager keeps its table.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` calls
them. Rules:

* **Joining.** A node with seeds sends JOIN to each seed not yet in its list, every
  ``join_retry``, until a manager welcomes it (WELCOME with a claim: it follows the claim and
  JOINs its holder) or ``join_timeout`` passes with no manager (it becomes a candidate). A node
  without seeds is the manager of a cluster of one. A node that has not joined yet takes no
  part in elections (it answers ELECTION with a JOIN, :mod:`clerk._election`), so a restarted
  node that knows nobody cannot win with an empty member list.
* **Restarts.** A node restarted from a data directory that recorded other members (the
  live members of its list at its last write, :mod:`clerk._store`) does not run alone from
  its copy of the table after ``join_timeout``: any of them may hold a newer copy, and a
  node that ran alone from an older one repeated counts the cluster had already produced
  (a full-cluster restart where one node found nobody within 0.5 s). It JOINs its seeds and
  those members, and calls an election only once it has heard from every one of them (any
  message: a JOIN, a WELCOME, an ELECTION), or ``rejoin_timeout`` after its start (a member
  gone for good, a cluster of one whose seeds never come). A manager that welcomes it ends
  the wait at once (it follows it, as any joiner). Until then it stays out of elections
  (a joiner answers ELECTION with a JOIN): the manager is elected among nodes that are all
  up, whose OFFERs then bring it the best copy among them before it dispatches
  (:mod:`clerk._adopt`, "A manager that starts from its own disk"). A node restarting into a
  cluster whose manager is up, or starting without a data directory, joins as before.
* **Heartbeats.** A manager sends HEARTBEAT every ``heartbeat_interval`` to every member; the
  member list rides along only to members that have not acknowledged the current epoch (each
  member's tasks by digest to a node that reads it, :mod:`clerk._tasksets`; a node asks for a
  set it lacks, :func:`fetch_sets`), and
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
* **Lost members outlive their manager.** Followers note the members their manager's list
  dropped (for when they take over), a manager keeps probing (COORDINATOR with its claim) the
  members it lost and its seeds for ``LOST_HORIZON``, an ex-manager keeps probing the members
  it lost as "orphans", and followers send their manager's claim to seeds that are not
  members. A link that comes back up (``PeerUp``) to a lost member or a seed gets our claim at
  once, not at the next probe.
* **Stall fence.** A manager whose loop did not run for longer than ``manager_timeout``
  dispatches nothing until a member acknowledges a heartbeat sent after the stall
  (``dispatch_ok``; the rules are in :mod:`clerk._fence`). That round carries the member
  list, so members acknowledge it at once, however rarely they ACK an idle heartbeat.
* **Hostile input** (``--insecure``). JOINs beyond ``MAX_PROBATION`` admitted members that have
  not acknowledged yet are dropped (a flood of forged names; a real joiner retries); member
  lists learned outside a manager's heartbeat are taken up to ``MAX_LEARN`` rows; a REFUSE from
  anyone but our manager, or a seed while joining (the other cases of a duplicate name:
  :mod:`clerk._dupname`), is dropped.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from clerk._corestate import LOST_HORIZON, MAX_LOST, CoreState
from clerk._coretypes import INF, MemberDown, MemberUp, Refused, Role
from clerk._dupname import refuse_accepted
from clerk._histdelta import reads_hist
from clerk._membership import Member
from clerk._messages import (
    Ack,
    Coordinator,
    Heartbeat,
    Join,
    MemberInfo,
    Refuse,
    TableDelta,
    TasksQuery,
    TasksReply,
    Welcome,
    reads_raw_rows,
)
from clerk._replica import TABLE_RESEND, TABLE_WINDOW_CHARS
from clerk._tasksets import reads_digests

__all__ = [
    "ACKS_PER_TIMEOUT",
    "MAX_LEARN",
    "MAX_PROBATION",
    "acknowledge",
    "adopt",
    "give_up_waiting",
    "fetch_sets",
    "heard",
    "heartbeat_round",
    "learn",
    "lists_me",
    "m_ack",
    "m_join",
    "m_refuse",
    "m_tasks_query",
    "m_tasks_reply",
    "on_peer_up",
    "probe",
    "probe_seeds",
    "remember",
    "send_joins",
    "send_table",
    "table_position",
    "stalled",
]

#: At most this many members admitted by JOIN and not yet heard from again (forged JOIN floods).
MAX_PROBATION = 32
#: A follower whose heartbeats bring nothing new ACKs this many times per ``member_timeout``
#: (every 0.5 s at the defaults; the manager heartbeats every 0.1 s). ACKs are the manager's
#: only sign of life of an idle member, and each costs the manager's loop a wake-up, a
#: receive, a decode and a core step: ten a second per member were most of its CPU per member
#: (``tools/bench_replication.py --cpu``). Four per timeout leave a member's loop 3/4 of the
#: member timeout (1.5 s, was 1.9 s) of stall before it is dropped as silent; a crash is
#: noticed at once by the connection (``PeerDown``), a pause by the member timeout or within
#: ~2 s by the connection (ZeroMQ's PING a second, ``clerk._transport``), whichever is first.
ACKS_PER_TIMEOUT = 4
#: Member lists learned before (or besides) a manager's are taken up to this many rows.
MAX_LEARN = 1024


def learn(core: CoreState, infos: tuple[MemberInfo, ...], now: float) -> None:
    """``members.learn``, within ``MAX_LEARN`` rows: member lists arrive in messages, and
    a forged one may hold 100,000 entries that we would heartbeat and probe."""
    room = MAX_LEARN - len(core.members)
    if len(infos) > room:
        core.drop("member_table_full", f"{len(infos)} members offered, room for "
                                       f"{max(0, room)}")
        infos = infos[:max(0, room)]
    core.members.learn(infos, now)


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
    core.send(msg.sender.address, Ack(core.me, core.term, msg.seq, *said))


def send_joins(core: CoreState, now: float) -> None:
    """JOIN every seed not yet in our list, and every member our data directory recorded
    that we have not heard from yet; retry after ``join_retry``."""
    awaited = set(core._awaited.values())
    for seed in core.seeds:
        if core.members.by_address(seed) is None and seed not in awaited:
            core.send(seed, Join(core.me, core.term, core.tasks))
    for address in sorted(awaited):
        core.send(address, Join(core.me, core.term, core.tasks))
    core._next_retry = now + core.timings.join_retry


def remember(core: CoreState, members: Mapping[str, str]) -> None:
    """Before the start: the other members (name -> address) our data directory recorded;
    we wait for them before we run alone (see "Restarts" above). Nothing with
    ``rejoin_timeout`` 0 (the wait is off)."""
    if core.timings.rejoin_timeout <= 0:
        return
    core._awaited = {name: addr for name, addr in list(members.items())[:MAX_LEARN]
                     if name != core.me.name and addr != core.me.address}


def heard(core: CoreState) -> None:
    """A member we waited for is up (its name left ``_awaited``): with none left, we call
    the election at the join timeout (now, if it passed: ``CoreState.elect_at``)."""
    if not core._awaited:
        core._rejoin_until = -INF


def give_up_waiting(core: CoreState) -> None:
    """Election time: whoever we still waited for is not coming (``rejoin_timeout``)."""
    core._awaited = {}
    core._rejoin_until = -INF


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
    beats: dict[tuple[int, int, int, int, bool], list[Heartbeat]] = {}
    for row in core.members.others():
        # The list (0: none), with each member's entries (1) or by digest (2).
        form = 0 if row.acked_epoch == epoch else (
            2 if reads_digests(row.peer.incarnation) else 1)
        base, room = table_position(core, row, now)
        key = (form, base, room, _patches(row, base), reads_raw_rows(row.peer))
        chain = beats.get(key)
        if chain is None:
            chain = beats[key] = _chain(core, form, base, room, key[3], key[4])
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
           hist: int = 0, raw: bool = False) -> list[Heartbeat]:
    """One heartbeat (the list if ``form``: 1 with the entries, 2 by digest; the first
    delta), then one per further delta of the window (``hist``: see ``_patches``; ``raw``:
    the rows after the body, to a member that reads them: ``reads_raw_rows``)."""
    deltas = core.table_log.window(base, room, hist, raw) if room > 0 else []
    members = core.members.infos(digests=form == 2) if form else None
    first = Heartbeat(core.me, core.term, core._seq, core.members.epoch, members,
                      deltas[0] if deltas else None)
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


def adopt(core: CoreState, infos: tuple[MemberInfo, ...], now: float,
          welcomed: bool = False) -> None:
    """Take the manager's member list. Members it no longer lists go into our own
    ``_lost``: if we take over later we keep probing them, so the knowledge of a
    partitioned-off side does not die with the manager that dropped it. From now on this
    node has been part of a cluster (``CoreState.joined``: its claims are never lone)."""
    core.joined = True
    for row in core.members.replace_all(infos, now):
        if row.name != core.me.name:
            core._lost[row.peer.address] = now
    fetch_sets(core, now, welcomed)
    if core._lost:
        present = {row.peer.address for row in core.members}
        horizon = now - LOST_HORIZON
        for addr, when in list(core._lost.items()):
            if addr in present or when < horizon:
                del core._lost[addr]


def probe_seeds(core: CoreState, now: float) -> None:
    """Follower: send our manager's claim to seeds that are not members, and to the
    members we lost while we were a manager ourselves (our successor never heard of
    them). If one follows another manager (a healed partition nobody else remembers),
    claim order merges the two clusters."""
    if core._orphans:
        present = {row.peer.address for row in core.members}
        horizon = now - LOST_HORIZON
        for addr, when in list(core._orphans.items()):
            if addr in present or when < horizon:
                del core._orphans[addr]
    if core._claim is not None:
        for addr in dict.fromkeys((*core.seeds, *core._orphans)):
            if core.members.by_address(addr) is None:
                core.send(addr, Coordinator(core.me, core.term, core._claim))
    core._next_probe = now + core.probe_jitter()


def probe(core: CoreState, now: float) -> None:
    """Manager: send our claim to seeds and lost members: heals partitions, merges managers."""
    horizon = now - LOST_HORIZON
    for addr, when in list(core._lost.items()):
        if when < horizon:
            del core._lost[addr]
    claim = core.my_claim()
    if len(core._lost) > MAX_LOST:
        for addr in sorted(core._lost, key=core._lost.__getitem__)[:-MAX_LOST]:
            del core._lost[addr]
    for addr, when in list(core._told.items()):
        if when < now - 2 * core.timings.probe_interval:
            del core._told[addr]
    for addr in (*core.seeds, *core._lost):
        if core.members.by_address(addr) is None:
            core.tell(addr, now)
            core.send(addr, Coordinator(core.me, core.term, claim))
    core._next_probe = now + core.timings.probe_interval


def on_peer_up(core: CoreState, address: str) -> None:
    """A link came (back) up. If it leads to a node outside our member list that we probe
    anyway (a lost member, a seed, an orphan), send it the probe now: a healed partition
    then merges as soon as TCP reconnects, not up to a probe interval later."""
    if core.members.by_address(address) is not None:
        return
    if core.role is Role.MANAGER and (address in core._lost or address in core.seeds):
        core.tell(address, core._fence.last_event)
        core.send(address, Coordinator(core.me, core.term, core.my_claim()))
    elif core.role is Role.FOLLOWER and core._claim is not None and (
            address in core.seeds or address in core._orphans):
        core.send(address, Coordinator(core.me, core.term, core._claim))


def m_join(core: CoreState, msg: Join, now: float) -> None:
    """JOIN: a manager admits (or refuses) the joiner and WELCOMEs it; anyone else WELCOMEs it
    with the claim it follows, so the joiner finds the manager."""
    sender = msg.sender
    if core.role is Role.MANAGER:
        row = core.members.get(sender.name)
        if (row is None or row.peer.incarnation != sender.incarnation) and (
                len(core._probation) >= MAX_PROBATION):
            core.drop("join_flood", f"JOIN from {sender.name!r}: {MAX_PROBATION} joiners "
                                    "have not acknowledged yet")
            return
        adm = core.members.admit(sender, msg.tasks, now, core.timings.member_timeout)
        if adm.outcome == "refused":
            core.send(sender.address, Refuse(core.me, core.term, adm.reason))
            return
        row = core.members.get(sender.name)
        assert row is not None
        core._lost.pop(sender.address, None)
        row.acked_epoch = core.members.epoch
        core.send(sender.address, Welcome(core.me, core.term, core.my_claim(),
                                          list_for(core, sender.incarnation),
                                          core.members.epoch))
        if adm.outcome in ("added", "replaced"):
            row.reset_table()
        send_table(core, row, now)  # the table in chunks, now (a retried JOIN: if not sent)
        if adm.outcome in ("added", "replaced"):
            core._probation[sender.name] = now
            core._out.append(MemberUp(row.info(), adm.outcome))
        return
    if core.role in (Role.JOINING, Role.CANDIDATE):
        learn(core, (MemberInfo(sender.name, sender.address, sender.incarnation,
                                sender.priority, True, msg.tasks),), now)
    if core.role in (Role.LEAVING, Role.STOPPED):
        return
    core.send(sender.address, Welcome(core.me, core.term, core._claim,
                                      list_for(core, sender.incarnation), core.members.epoch))


def m_refuse(core: CoreState, msg: Refuse, now: float) -> None:
    """REFUSE from our manager, from a seed while joining or electing, or, as a manager of
    nobody, from a seed or a node we sent our claim to (:func:`clerk._dupname.refuse_accepted`:
    a duplicate name that elected itself): stop."""
    s, claim = msg.sender, core._claim
    ours = (claim is not None and core.role is Role.FOLLOWER and s.name == claim.name
            and s.address == claim.address and msg.term == claim.term)
    if not ours and not refuse_accepted(core, msg):
        core.drop("refuse_stranger", f"REFUSE from {s.name!r} at {s.address!r}: not our "
                                     "manager, nor a seed while joining")
        return
    core.stop(f"refused by {msg.sender.name}: {msg.reason}")
    core._out.insert(0, Refused(msg.reason))


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


# --- task sets by reference (clerk._tasksets) ---------------------------------------------------


def list_for(core: CoreState, incarnation: str) -> tuple[MemberInfo, ...]:
    """The member list as the node of ``incarnation`` reads it: by digest if it can."""
    return core.members.infos(digests=reads_digests(incarnation))


def lists_me(core: CoreState, infos: tuple[MemberInfo, ...]) -> bool:
    """Does this list hold this node, with the tasks it announces?"""
    me = core.me
    for m in infos:
        if m.name == me.name and m.incarnation == me.incarnation:
            if m.digest is None:
                return m.tasks == core.tasks
            return (m.digest, m.started) == core.members.own_form()
    return False


def fetch_sets(core: CoreState, now: float, welcomed: bool = False) -> None:
    """Ask for the sets of the digests our rows wait for, that were not asked for within
    ``FETCH_RETRY``: the members that announce the digest in turn, each node starting at its
    own place among them (a new build's first node is asked by every other member once: not
    all of the manager), then our manager; nodes that read digests only (an older build
    drops TASKS_QUERY). ``welcomed``: the list came in our WELCOME: the members may not list
    us yet (they drop a query from a stranger), so the manager is asked first. Fetches nobody
    waits for any more are dropped."""
    sets = core.members.sets
    sets.fresh = False
    wanted = core.members.wanted()
    for digest in [d for d in sets.fetches if d not in wanted]:
        del sets.fetches[digest]
    if not wanted:
        core.members.wanting = False
        core.members.trim_sets()
        return
    claim = core._claim
    manager = None if claim is None else core.members.get(claim.name)
    last = [manager.peer.address] if (manager is not None and manager.name != core.me.name
                                      and reads_digests(manager.peer.incarnation)) else []
    start = zlib.crc32(core.me.name.encode())
    for digest, rows in wanted.items():
        if digest in sets.sets:  # held since the rows began waiting (TaskSets.add)
            core.members.resolved(digest)
            continue
        attempt = sets.due(digest, now)
        if attempt is None:
            continue
        owners = sorted(r.peer.address for r in rows if r.alive and r.name != core.me.name
                        and reads_digests(r.peer.incarnation) and r.peer.address not in last)
        holders = owners[start % len(owners):] + owners[:start % len(owners)] if owners else []
        holders = last + holders if welcomed else holders + last
        if holders:
            core.send(holders[attempt % len(holders)], TasksQuery(core.me, core.term, digest))


def m_tasks_query(core: CoreState, msg: TasksQuery, now: float) -> None:
    """TASKS_QUERY: a member (or our manager) asks for a set we hold: all its parts."""
    s = msg.sender
    row = core.members.get(s.name)
    if row is None or row.peer.incarnation != s.incarnation:
        core.drop("tasks_query_stranger", f"TASKS_QUERY from {s.name!r} at {s.address!r}: "
                                          "not a member")
        return
    sets = core.members.sets
    if msg.digest not in sets.sets:
        core.members.own_form()  # (our own set is held once its digest is known)
    parts = sets.parts(msg.digest)
    if parts is None:
        return  # not held here: the asker asks another holder after FETCH_RETRY
    for i, part in enumerate(parts, 1):
        core.send(s.address, TasksReply(core.me, core.term, msg.digest, i, len(parts), part))


def m_tasks_reply(core: CoreState, msg: TasksReply, now: float) -> None:
    """TASKS_REPLY: a part of a set we asked for; the rows waiting for it take it whole."""
    outcome = core.members.sets.part(msg.digest, msg.part, msg.parts, msg.tasks)
    if outcome == "done":
        core.members.resolved(msg.digest)
    elif outcome != "more":
        core.drop(f"tasks_reply_{outcome}", f"TASKS_REPLY from {msg.sender.name!r} for "
                                            f"{msg.digest[:40]!r}: {outcome}")
