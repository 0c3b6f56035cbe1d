"""Member lists with each member's tasks by reference: the sets a node's rows wait for.

Functions over a :class:`~clerk._corestate.CoreState` (:mod:`clerk._joining` and
:mod:`clerk._heartbeats` send member lists; :class:`~clerk._core.NodeCore` routes the
messages here). A member list names each member's task set by digest to a node that reads
digests (:mod:`clerk._tasksets`); a node asks a holder for a set it lacks
(:func:`fetch_sets`: the members that announce it in turn, then the manager), and answers such
a question from a member with every part of the set (:func:`m_tasks_query`).
"""

from __future__ import annotations

import zlib

from clerk._corestate import CoreState
from clerk._messages import MemberInfo, TasksQuery, TasksReply
from clerk._tasksets import reads_digests

__all__ = ["fetch_sets", "list_for", "lists_me", "m_tasks_query", "m_tasks_reply"]


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

