"""Joining: how a node gets into a cluster, and how a manager finds the members it lost.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` calls
them (a manager's heartbeats and its members' ACKs are :mod:`clerk._heartbeats`; member lists
with task sets by reference, :mod:`clerk._setfetch`). Rules:

* **Joining.** A node with seeds sends JOIN to each seed not yet in its list, every
  ``join_retry``, until a manager welcomes it (WELCOME with a claim: it follows the claim and
  JOINs its holder) or ``join_timeout`` passes with no manager (it becomes a candidate). A node
  without seeds is the manager of a cluster of one. A node that has not joined yet takes no
  part in elections (it answers ELECTION with a JOIN, :mod:`clerk._election`), so a restarted
  node that knows nobody cannot win with an empty member list. A lone manager (term 0,
  :mod:`clerk._claims`) that admits a joiner claims again before it WELCOMEs it: the joiner
  never hears the lone claim its holder gives up in the same step.
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
  cluster whose manager is up, or starting without a data directory, joins as before. The
  recorded members it heard from (``rejoin_heard``) may still follow a manager that died
  meanwhile and so not be among the members when it claims: its claim announces itself to
  them too (they are in ``_lost``, probed at the claim), and each takeover of its within
  ``REJOIN_HEARD_S`` of hearing from them waits for the OFFERs of those still not members as
  for a member's (at most ``OFFER_WAIT_MS``; ``Scheduler.expected``: not only the first, so
  that a claim superseded at once does not leave the next one without the wait; the cost is
  that bound, at most, per takeover).
  Before, such a node (its run's result unsent, its manager dead) heard of the claim only
  when its own election found it, after the new manager had sent the next slots from the
  state before (a count repeated, counted as a conflict:
  ``tests/unit/test_offer_review_sim.py``, ``SILENT``).
* **Lost members outlive their manager.** Followers note the members their manager's list
  dropped (for when they take over), a manager keeps probing (COORDINATOR with its claim) the
  members it lost and its seeds for ``LOST_HORIZON``, an ex-manager keeps probing the members
  it lost as "orphans", and followers send their manager's claim to seeds that are not
  members. A link that comes back up (``PeerUp``) to a lost member or a seed gets our claim at
  once, not at the next probe.
* **Hostile input** (``--insecure``). JOINs beyond ``MAX_PROBATION`` admitted members that have
  not acknowledged yet are dropped (a flood of forged names; a real joiner retries); member
  lists learned outside a manager's heartbeat are taken up to ``MAX_LEARN`` rows; a REFUSE from
  anyone but our manager, or a seed while joining (the other cases of a duplicate name:
  :mod:`clerk._dupname`), is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from clerk._corestate import LOST_HORIZON, MAX_LOST, CoreState
from clerk._coretypes import INF, MemberUp, Refused, Role
from clerk._dupname import refuse_accepted
from clerk._heartbeats import send_table
from clerk._messages import Coordinator, Join, MemberInfo, Peer, Refuse, Welcome
from clerk._setfetch import fetch_sets, list_for

__all__ = [
    "MAX_LEARN",
    "MAX_PROBATION",
    "adopt",
    "give_up_waiting",
    "heard",
    "learn",
    "m_join",
    "m_refuse",
    "on_peer_up",
    "probe",
    "probe_seeds",
    "remember",
    "send_joins",
]

#: At most this many members admitted by JOIN and not yet heard from again (forged JOIN floods).
MAX_PROBATION = 32
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
    ``rejoin_timeout`` 0 (the wait is off). Kept apart (``recorded``) either way: a manager
    tells a recorded member that sends it a RESULT without being listed its claim
    (:mod:`clerk._leftoffers`), and no other stranger."""
    core.recorded = {name: addr for name, addr in list(members.items())[:MAX_LEARN]
                     if name != core.me.name and addr != core.me.address}
    if core.timings.rejoin_timeout <= 0:
        return
    core._awaited = {name: addr for name, addr in list(members.items())[:MAX_LEARN]
                     if name != core.me.name and addr != core.me.address}


def heard(core: CoreState, peer: Peer, now: float) -> None:
    """A member we waited for is up (its name left ``_awaited``): with none left, we call
    the election at the join timeout (now, if it passed: ``CoreState.elect_at``). It goes
    into ``rejoin_heard``, and into ``_lost`` (a claim of ours probes it at once: see
    "Restarts")."""
    if len(core.rejoin_heard) < MAX_LEARN:
        core.rejoin_heard[peer.name] = now
        core._lost[peer.address] = now
    if not core._awaited:
        core._rejoin_until = -INF


def give_up_waiting(core: CoreState) -> None:
    """Election time: whoever we still waited for is not coming (``rejoin_timeout``)."""
    core._awaited = {}
    core._rejoin_until = -INF


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


def m_join(core: CoreState, msg: Join, now: float,
           graduate: Callable[[CoreState, float], None]) -> None:
    """JOIN: a manager admits (or refuses) the joiner and WELCOMEs it; anyone else WELCOMEs it
    with the claim it follows, so the joiner finds the manager. A lone manager that admits
    its first live member claims again first (``graduate``: :func:`clerk._election.graduate`,
    passed in by NodeCore, as that module sits above this one), so that its WELCOME carries
    the claim it keeps, never the lone one it gives up in the same step."""
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
        if adm.outcome in ("added", "replaced"):
            row.reset_table()
            core._probation[sender.name] = now
            core._out.append(MemberUp(row.info(), adm.outcome))
        graduate(core, now)  # (a lone manager's claim with its first member: before WELCOME)
        row.acked_epoch = core.members.epoch
        core.send(sender.address, Welcome(core.me, core.term, core.my_claim(),
                                          list_for(core, sender.incarnation),
                                          core.members.epoch))
        send_table(core, row, now)  # the table in chunks, now (a retried JOIN: if not sent)
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

