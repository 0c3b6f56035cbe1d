"""Quorum mode in the core: election gating, the voter's answers, the manager's writes.

Functions over a :class:`~clerk._corestate.CoreState` whose ``quorum`` is a
:class:`QuorumState` (``None`` in the default mode, where nothing here ever runs). The
registers' rules and the proof are in :mod:`clerk._quorum`. Rules owned here:

* **Only voters are candidates.** The bully order stays, among voters only (a non-voter gets no
  ELECTION and its OK stands nobody down). A voter that wins the bully (:func:`claim`) is not
  manager yet: it PREPAREs a ballot ``(highest term seen + 1, priority, name)`` (role CANDIDATE,
  phase ``"prepare"``), resending to the voters that have not answered every
  ``election_timeout``; with PROMISEs from a majority it takes the claim with that very term
  (COORDINATOR, heartbeats: :func:`clerk._election.take_claim`). No majority within
  ``manager_timeout``: it starts an election again. A non-voter that would have won sends
  ELECTION to every voter it knows the address of and waits ``NON_VOTER_WAIT`` for a voter's
  claim, then asks again.
* **Voters answer** only a PREPARE/ACCEPT whose ballot is the sender's own claim. Every change of
  the register is a :class:`~clerk._coretypes.VoterWrite` whose ``then`` holds the answer:
  nothing is promised or acknowledged before it is durable. A voter's own PROMISE and ACCEPTED
  reach it the same way (a send to itself), so its own vote also counts only once durable.
* **Stickiness** (Raft's pre-vote / leader stickiness): a voter that heard from its manager
  within ``vouch_window`` (a FOLLOWER), or a manager whose quorum is ok, refuses a PREPARE from
  anyone but that manager with a REJECT carrying that manager's claim (below the PREPARE's
  ballot: that is how a candidate tells it from a promise's REJECT), and the candidate follows
  it, unless it is the manager it gave up on (:func:`_m_reject`). Refusing a promise is always
  safe: safety rests only on what a voter *did* promise or accept, never on a promise being
  given (at worst no ballot completes phase 1: liveness). A dead manager is still replaced
  as fast: its closed connection makes its followers candidates (``PeerDown``), and a silent
  one is not heard within ``vouch_window``, far below ``manager_timeout``. A healthy manager
  (quorum ok) that a voter refuses with a higher promise claims again above it instead of
  handing over to its holder: the voter's own (a candidacy it made while cut off, now given
  up), or any other node's (at start-up, several voters PREPARE at once; one that promised a
  candidate which then followed the winner's COORDINATOR refuses the winner's first ACCEPT
  with that abandoned ballot, and the whole cluster moved to a node that was no manager). If
  that ballot's holder really is the manager a majority follows, its voters vouch for it
  against the new PREPARE, and this node follows it then (one round trip later).
* **Ballots.** A candidate's own PROMISE must be among the majority's (:class:`Proposer`
  ``own``): its voter file holds every ballot it used before a write under it, so a restart
  claims above it. A candidate that cannot reach a majority retries with the same ballot while
  nothing higher was seen (:func:`claim`): a voter cut off for long comes back with the
  cluster's term + 1, not with a term raised every ``manager_timeout``.
* **Re-claim.** A manager that claims again (check-quorum, or a voter's own promise above
  its ballot) passes through CANDIDATE, so the new claim's table log does not keep its table
  the way a manager claiming above a higher term does: it keeps it here, as its replica.
  Otherwise the replica would still be the table of the manager it followed before its own
  ballot, whose run in flight (long over) its next activation would adopt.
* **Check-quorum.** A manager that has not heard from a majority of voters (itself included)
  within ``manager_timeout`` steps down and PREPAREs again (``"claim"``): a minority side has
  no manager, its followers elect, and nobody there is ever promised a majority.
* **REJECT** (a voter promised a higher ballot): the candidate or manager of the rejected
  ballot stops (its quorum is ``lost``) and treats the higher promise as a claim
  (:func:`clerk._election.on_claim`): it follows it if it is the highest, and claims again
  above it if it is a claim in its own name (a previous incarnation's).
* **Writes** (:func:`write`, the manager only): ACCEPT to every voter; the write commits on a
  majority of ACCEPTED (:class:`~clerk._coretypes.WriteCommitted`). Writes without their
  majority are resent every ``heartbeat_interval`` to the voters that have not answered.
* **Quorum view** (:func:`status`): reachable = the voters heard from within
  ``manager_timeout`` (this node, if a voter; a follower also counts the voters alive in its
  manager's list while its manager is heard); ``ok`` = a majority reachable and, for a
  manager or a candidate, its ballot not rejected and no write waiting for its majority
  longer than ``manager_timeout``. A change is a :class:`~clerk._coretypes.QuorumChanged`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clerk._corestate import CoreState
from clerk._coretypes import (
    INF,
    ManagerChanged,
    QuorumChanged,
    Role,
    Send,
    VoterWrite,
    WriteCommitted,
)
from clerk._messages import (
    Accept,
    Accepted,
    Claim,
    Election,
    Message,
    Prepare,
    Promise,
    Reject,
)
from clerk._quorum import Outcome, Proposer, QuorumState, chunk_rows
from clerk._record import pack_table, unpack_table

__all__ = ["MAX_PARTS", "NON_VOTER_WAIT", "Outcome", "Proposer", "QuorumState", "claim",
           "from_self", "heard", "next_deadline", "observe", "on_message", "status", "tick",
           "write"]



#: A non-voter without a manager asks the voters again every ``manager_timeout *
#: NON_VOTER_WAIT`` (350 ms by default), plus its bully round (at most ~0.25 s): its asks are
#: less than ``manager_timeout`` apart, so the voters it can reach stay in its view (voters
#: heard within ``manager_timeout``), and a voter's new claim is found within half a second
#: even if its COORDINATOR was lost. A few messages per round per non-voter.
NON_VOTER_WAIT = 0.5
#: The most parts one PROMISE may come in: 4096 parts of ``ROWS_BUDGET`` (256 KiB) are 1 GiB
#: of rows, far beyond any register; a bound so a forged ``parts`` cannot make us wait forever.
MAX_PARTS = 4096


def _q(core: CoreState) -> QuorumState:
    q = core.quorum
    assert q is not None
    return q


def _voter_address(core: CoreState, name: str) -> str:
    if name == core.me.name:
        return core.me.address
    row = core.members.get(name)
    if row is not None:
        return row.peer.address
    # Not in our list (a voter restarted while cut off has joined nobody): where we last
    # heard it from. Without this such a voter PREPAREs only itself, and as the highest node
    # it answers every ELECTION with OK: no manager, ever (simulator, 3 voters, a restart then
    # a one-way cut of the highest).
    return _q(core).addresses.get(name, "")


def _ours(core: CoreState, ballot: Claim) -> Proposer | None:
    p = _q(core).proposer
    return p if p is not None and p.ballot == ballot.key else None


# --- the candidate ---------------------------------------------------------------------------


def claim(core: CoreState, now: float) -> None:
    """Won the bully (or must claim above a higher term): PREPARE a new ballot. A non-voter
    waits for a voter's COORDINATOR instead (module docstring)."""
    q = _q(core)
    if not q.is_voter:
        # Ask every voter whose address we know, even one marked dead here (a restarted
        # non-voter may hold a list in which everyone is dead, and it never becomes manager to
        # probe them): a follower vouches for its live manager, a manager answers with its
        # claim, a candidate with OK; so this node finds the cluster again and hears from the
        # voters it can reach (its quorum view).
        for name in q.voters:
            row = core.members.get(name)
            if row is not None:
                core.send(row.peer.address, Election(core.me, core.term, core._suspect))
        core.role = Role.CANDIDATE
        core._claim = None
        core._phase = "coord"
        core._deadline = now + core.timings.manager_timeout * NON_VOTER_WAIT
        return
    if core.role is Role.MANAGER:
        core._out.append(ManagerChanged(None, core.term, False))
        if core.table_log.complete:
            # Our own last table stays the one we hold (module docstring, "Re-claim").
            core.replica.take(core.table_log.items())
    core.role = Role.CANDIDATE
    core._claim = None
    _give_up(q)
    retry = q.unused
    q.unused = None
    promised = q.register.promised if q.register is not None else None
    if (retry is not None and retry == (core.max_term, core.me.priority, core.me.name)
            and (core.highest is None or retry > core.highest.key)
            and (promised is None or retry >= promised)
            and len(reachable(core, now)) < q.need):
        # A retry while cut off from the majority: the same ballot (nothing was written under
        # it, no higher claim or promise seen since), so a voter cut off for long comes back
        # with the cluster's term + 1. (With a majority in reach a retry takes a new ballot
        # as before: equal-term ballots of several candidates must not stall each other.)
        core.term = retry[0]
    else:
        core.max_term += 1
        core.term = core.max_term
    ballot = core.my_claim()
    q.proposer = Proposer(ballot.key, q.voters, now, own=core.me.name)
    q.rejected = False
    core._phase = "prepare"
    core._deadline = now + core.timings.election_timeout
    q.prepare_until = now + core.timings.manager_timeout
    _send_prepares(core, ballot, now)


def _give_up(q: QuorumState) -> None:
    """Drop the current proposer; remember its ballot for a retry if phase 1 never completed
    (nothing was written under it) and nobody refused it."""
    p = q.proposer
    if p is not None and not p.ready and not q.rejected:
        q.unused = p.ballot
    q.proposer = None


def _send_prepares(core: CoreState, ballot: Claim, now: float) -> None:
    q = _q(core)
    p = q.proposer
    assert p is not None
    for name in q.voters:
        if name in p.promises:
            continue
        if name == core.me.name:
            _m_prepare(core, Prepare(core.me, ballot.term, ballot), now)
            continue
        address = _voter_address(core, name)
        if address:
            core.send(address, Prepare(core.me, ballot.term, ballot))


def tick(core: CoreState, now: float) -> Outcome:
    """Timers of quorum mode: a candidate's PREPARE resends and give-up (``"elect"``); a
    manager's resends."""
    q = _q(core)
    if core.role is Role.CANDIDATE and core._phase == "prepare":
        if now >= q.prepare_until:
            _give_up(q)
            return "elect"
        _send_prepares(core, core.my_claim(), now)
        core._deadline = now + core.timings.election_timeout
        return None
    if core.role is Role.MANAGER and len(reachable(core, now)) < q.need:
        return "claim"  # check-quorum: a manager cut off from the majority steps down
    if core.role is Role.MANAGER and now >= q.next_resend:
        p = q.proposer
        q.next_resend = INF
        if p is None:
            return None
        for seq, w in list(p.pending.items()):
            if now - w.sent_at >= core.timings.heartbeat_interval:
                outcome = _send_accepts(core, p, seq, w.rows, skip=w.acks)
                if outcome is not None:
                    return outcome
        if p.pending:
            q.next_resend = now + core.timings.heartbeat_interval
    return None


def next_deadline(core: CoreState) -> float:
    q = _q(core)
    return q.next_resend if core.role is Role.MANAGER else INF


# --- the manager's writes --------------------------------------------------------------------


def write(core: CoreState, rows: Mapping[str, Any], now: float) -> list[int]:
    """Manager: write ``rows`` (task -> ``{"reserved": slot or None[, "record": ...]}``); the
    seqs of the writes it took (more than one if the rows exceed one message). Empty if this
    node is not a manager with a ready ballot."""
    q = _q(core)
    p = q.proposer
    if core.role is not Role.MANAGER or p is None or not p.ready:
        return []
    seqs = []
    for part in chunk_rows(rows):
        seq = p.write(part, now)
        seqs.append(seq)
        outcome = _send_accepts(core, p, seq, part, skip=set())
        if outcome is not None:
            q.deferred = outcome  # our own register promised a higher ballot
            break
    if q.next_resend == INF:
        q.next_resend = now + core.timings.heartbeat_interval
    return seqs


def _send_accepts(core: CoreState, p: Proposer, seq: int, rows: Mapping[str, Any],
                  skip: set[str]) -> Outcome:
    q = _q(core)
    ballot = core.my_claim()
    packed = pack_table(rows)
    outcome: Outcome = None
    for name in q.voters:
        if name in skip:
            continue
        msg = Accept(core.me, ballot.term, ballot, seq, packed)
        if name == core.me.name:
            outcome = _m_accept(core, msg, q.now)
        else:
            address = _voter_address(core, name)
            if address:
                core.send(address, msg)
    return outcome


# --- messages --------------------------------------------------------------------------------


def heard(core: CoreState, msg: Message, now: float) -> None:
    """Note a message from a voter (its sign of life for the quorum view)."""
    q = _q(core)
    if msg.sender.name in q.voters:
        q.heard[msg.sender.name] = now
        q.addresses[msg.sender.name] = msg.sender.address


def on_message(core: CoreState, msg: Message, now: float) -> Outcome:
    """Handle a PREPARE, PROMISE, ACCEPT, ACCEPTED or REJECT; what the election must do."""
    handler = _HANDLERS[type(msg)]
    return handler(core, msg, now)  # type: ignore[no-any-return]


def _sender_ballot_ok(core: CoreState, msg: Prepare | Accept) -> bool:
    b = msg.ballot
    if b.name != msg.sender.name or b.address != msg.sender.address:
        core.drop("quorum_ballot", f"{type(msg).__name__} from {msg.sender.name!r} for "
                                   f"another node's ballot {b.key}")
        return False
    return True


def _voter_write(core: CoreState, then: tuple[Send, ...]) -> None:
    reg = _q(core).register
    assert reg is not None
    core._out.append(VoterWrite(reg.record(), then))


def _reject(core: CoreState, msg: Prepare | Accept, now: float) -> Outcome:
    reg = _q(core).register
    assert reg is not None and reg.promised is not None
    t, prio, name = reg.promised
    promised = Claim(t, prio, name, reg.promised_at)
    reject = Reject(core.me, core.term, msg.ballot, promised)
    if msg.sender.name == core.me.name:
        return _m_reject(core, reject, now)  # our own ballot, refused by our own register
    core.send(msg.sender.address, reject)
    return None


def _vouch(core: CoreState, msg: Prepare, now: float) -> Claim | None:
    """The manager this voter vouches for against ``msg``'s sender (module docstring,
    "Stickiness"): its manager, heard within ``vouch_window``; or itself, a manager whose
    quorum is ok. None: no vouch, the PREPARE is answered by the register's rule."""
    sender = msg.sender.name
    if core.role is Role.FOLLOWER:
        c = core._claim
        if (c is not None and c.name != sender
                and now - core._last_heard <= core.timings.vouch_window):
            return c
        return None
    if core.role is Role.MANAGER and sender != core.me.name:
        p = _q(core).proposer
        if p is not None and p.ready and quorum_ok(core, now):
            return core.my_claim()
    return None


def _m_prepare(core: CoreState, msg: Prepare, now: float) -> Outcome:
    reg = _q(core).register
    if reg is None:
        core.drop("not_voter", f"PREPARE from {msg.sender.name!r}: this node is no voter")
        return None
    if not _sender_ballot_ok(core, msg):
        return None
    vouched = _vouch(core, msg, now)
    if vouched is not None and reg.admits(msg.ballot.key):
        # Stickiness: refuse, naming the manager we vouch for (nothing changed: no write).
        core.send(msg.sender.address, Reject(core.me, core.term, msg.ballot, vouched))
        return None
    if not reg.prepare(msg.ballot.key, msg.ballot.address):
        return _reject(core, msg, now)
    parts = chunk_rows(reg.rows_json())
    then = tuple(Send(msg.sender.address, Promise(core.me, core.term, msg.ballot, i, len(parts),
                                                  pack_table(rows)))
                 for i, rows in enumerate(parts))
    _voter_write(core, then)
    return None


def _m_accept(core: CoreState, msg: Accept, now: float) -> Outcome:
    reg = _q(core).register
    if reg is None:
        core.drop("not_voter", f"ACCEPT from {msg.sender.name!r}: this node is no voter")
        return None
    if not _sender_ballot_ok(core, msg):
        return None
    rows = unpack_table(msg.rows) if msg.rows is not None else {}
    if not isinstance(rows, Mapping):
        core.drop("quorum_rows", f"ACCEPT from {msg.sender.name!r}: malformed rows")
        return None
    if not reg.accept(msg.ballot.key, msg.seq, rows, msg.ballot.address):
        return _reject(core, msg, now)
    _voter_write(core, (Send(msg.sender.address,
                             Accepted(core.me, core.term, msg.ballot, msg.seq)),))
    return None


def _m_promise(core: CoreState, msg: Promise, now: float) -> Outcome:
    p = _ours(core, msg.ballot)
    if p is None or core.role is not Role.CANDIDATE or core._phase != "prepare":
        return None  # late, or for a ballot we gave up
    rows = unpack_table(msg.rows) if msg.rows is not None else {}
    if not isinstance(rows, Mapping) or not 1 <= msg.parts <= MAX_PARTS:
        core.drop("quorum_rows", f"PROMISE from {msg.sender.name!r}: malformed rows")
        return None
    if p.on_promise(msg.sender.name, msg.part, msg.parts, rows):
        return p.ballot[0]
    return None


def _m_accepted(core: CoreState, msg: Accepted, now: float) -> Outcome:
    q = _q(core)
    p = _ours(core, msg.ballot)
    if p is None or core.role is not Role.MANAGER:
        return None
    for seq in p.on_accepted(msg.sender.name, msg.seq, now):
        core._out.append(WriteCommitted(seq))
    if not p.pending:
        q.next_resend = INF
    return None


def _m_reject(core: CoreState, msg: Reject, now: float) -> Outcome:
    q = _q(core)
    if _ours(core, msg.ballot) is None or msg.promised.key == msg.ballot.key:
        return None
    if msg.promised.key < msg.ballot.key:
        # A vouch (stickiness): a live manager below our ballot; follow it, unless it is
        # the manager we gave up on (the voter has not heard it is gone yet: we resend).
        c = msg.promised
        if (core.role is not Role.CANDIDATE or core._phase != "prepare" or not c.address
                or c.name in (core.me.name, core._suspect) or core.known_dead(c)):
            return None
        return c
    if (core.role is Role.MANAGER and msg.promised.name != core.me.name
            and quorum_ok(core, q.now)):
        # A voter promised a ballot above ours that is no manager we heard of (a candidacy
        # given up: the voter's own while cut off, or a start-up rival that followed us): a
        # healthy manager claims again above it instead of handing over to a node that may
        # not even be a candidate any more (module docstring, "Stickiness").
        core.see_term(msg.promised.term)
        return "claim"
    q.rejected = True
    if not msg.promised.address:  # (a record without the holder's address: learn the term)
        core.see_term(msg.promised.term)
        return None
    return msg.promised


_HANDLERS: dict[type, Any] = {
    Prepare: _m_prepare,
    Promise: _m_promise,
    Accept: _m_accept,
    Accepted: _m_accepted,
    Reject: _m_reject,
}


def from_self(msg: Message) -> bool:
    """A message in this node's own name that is not a forgery: its own PROMISE or ACCEPTED,
    sent to itself once its vote was durable."""
    return isinstance(msg, Promise | Accepted)


# --- the view --------------------------------------------------------------------------------


def reachable(core: CoreState, now: float) -> tuple[str, ...]:
    q = _q(core)
    window = core.timings.manager_timeout
    seen = {v for v, at in q.heard.items() if now - at <= window}
    if q.is_voter:
        seen.add(core.me.name)
    if core.role is Role.FOLLOWER and now - core._last_heard <= window:
        seen.update(v for v in q.voters if (row := core.members.get(v)) is not None
                    and row.alive)
    return tuple(v for v in q.voters if v in seen)


def quorum_ok(core: CoreState, now: float) -> bool:
    q = _q(core)
    if len(reachable(core, now)) < q.need:
        return False
    if core.role in (Role.MANAGER, Role.CANDIDATE) and q.proposer is not None:
        if q.rejected:
            return False
        oldest = q.proposer.oldest_pending()
        if oldest is not None and now - oldest > core.timings.manager_timeout:
            return False
    return True


def status(core: CoreState) -> dict[str, Any]:
    """``NodeCore.quorum_status()`` (see the interface in the module docstring)."""
    q = core.quorum
    if q is None:
        return {"mode": "available", "voters": [], "reachable": [], "quorum": None,
                "detail": "", "promised": None}
    now = q.now
    seen = reachable(core, now)
    ok = quorum_ok(core, now)
    missing = len(q.voters) - len(seen)
    detail = "" if ok else (f"{missing} of {len(q.voters)} voters unreachable"
                            if len(seen) < q.need else "writes not accepted by a majority")
    promised = q.register.promised if q.register is not None else None
    return {"mode": "quorum", "voters": list(q.voters), "reachable": list(seen),
            "quorum": "ok" if ok else "lost", "detail": detail,
            "promised": list(promised) if promised is not None else None}


def observe(core: CoreState, now: float) -> None:
    """After each step: a :class:`QuorumChanged` if the view changed."""
    q = _q(core)
    q.now = now
    view = (quorum_ok(core, now), reachable(core, now))
    if view != q.reported:
        q.reported = view
        core._out.append(QuorumChanged(view[0], view[1], q.voters))

