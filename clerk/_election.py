"""Election: which manager a node follows, the bully election, and every change of role.

Functions over a :class:`~clerk._corestate.CoreState`; :class:`~clerk._core.NodeCore` routes
ELECTION, OK, COORDINATOR, WELCOME, HEARTBEAT and LEAVE here. Roles and transitions::

    JOINING --welcome(manager)--> FOLLOWER --manager silent or disconnected--> CANDIDATE
    JOINING --join timeout, no manager--> CANDIDATE     (an ELECTION does not make it one)
    CANDIDATE --no OK from higher nodes--> MANAGER     (term = highest term seen + 1;
                                                        0 if lone, until it has a member)
    CANDIDATE --OK, then COORDINATOR--> FOLLOWER
    MANAGER --sees a higher claim--> FOLLOWER           (hands its table over first)
    MANAGER --leave--> LEAVING --successor's COORDINATOR (+ MERGED) or timeout--> STOPPED
    FOLLOWER --leave--> STOPPED

Rules:

* **Follow the highest claim** (:mod:`clerk._claims`, :func:`on_claim`). A manager that sees a
  higher claim steps down to it (:func:`clerk._handover.step_down_to`). Never a claim held by
  a second node in a live member's name (:mod:`clerk._dupname`).
* **Bully.** A node that suspects the manager sends ELECTION to every live node ranked above
  it by ``(priority, name)`` and also to the suspect itself (a live manager answers OK with its
  claim, so a spurious disconnect event cannot depose it). No OK within ``election_timeout``:
  it becomes manager with ``term = highest term seen + 1`` and broadcasts COORDINATOR. An OK:
  it waits ``coordinator_timeout`` for the winner, then starts over (only an OK from a node
  ranked above counts: the probed suspect may answer from below). When the manager's
  connection closed (``PeerDown``, the crash fast path) and the suspect is the only node to
  ask, the wait is ``election_timeout * DISCONNECT_PROBE`` (25 ms by default): a crashed
  manager is replaced in tens of milliseconds, and a live one still answers in time. Lower
  nodes wait ``min(nodes above, STAGGER_STEPS) * election_timeout / 5`` before calling the
  election, so the highest survivor usually announces itself first and nobody else sends.
* **No preemption of a healthy manager.** A node that heard from its manager within
  ``vouch_window`` answers an ELECTION with OK carrying that manager's claim and does not start
  an election of its own; a newcomer that ranks higher simply follows the existing manager.
  A node that has not joined yet takes no part in elections (it answers ELECTION with a
  JOIN), so a restarted node that knows nobody cannot win with an empty member list.
* **Lone claims** (:mod:`clerk._claims`). A candidate that was never part of a cluster and
  knows no live member claims at term 0 (:func:`is_lone`): below every claim made with
  members, so meeting an established cluster it follows that cluster's manager instead of
  deposing it. Once it has a live member it claims again at the highest term seen + 1
  (:func:`graduate`, after every event: ``NodeCore.handle``).
* **Late relays of a dead claim.** A candidate ignores its suspect's claim relayed by a third
  node (:func:`second_hand_suspect`): only the suspect itself or a higher claim brings it back.
"""

from __future__ import annotations

from clerk import _quorumcore
from clerk._claims import LONE_TERM
from clerk._corestate import CoreState
from clerk._coretypes import INF, LeftUnlisted, ManagerChanged, MemberDown, Refused, Role
from clerk._dupname import duplicate_claim
from clerk._handover import (
    leave_as_manager,
    leaving_saw,
    step_down_to,
    successor_down,
    successor_took_over,
    take_back_merge,
)
from clerk._heartbeats import acknowledge, heartbeat_round
from clerk._joining import adopt, learn
from clerk._joining import probe as probe_lost
from clerk._membership import Member
from clerk._messages import (
    Ack,
    Claim,
    Coordinator,
    Election,
    Heartbeat,
    Join,
    Leave,
    MemberInfo,
    Ok,
    Welcome,
    reads_table_at,
)
from clerk._replica import ReplicaLog
from clerk._setfetch import list_for, lists_me

__all__ = [
    "DISCONNECT_PROBE",
    "STAGGER_STEPS",
    "become_manager",
    "follow",
    "graduate",
    "is_lone",
    "m_coordinator",
    "m_election",
    "m_heartbeat",
    "m_leave",
    "m_ok",
    "m_welcome",
    "on_claim",
    "on_peer_down",
    "send_elections",
    "start_election",
    "take_claim",
]

#: Lower-ranked candidates wait ``min(nodes above, STAGGER_STEPS) * election_timeout / 5``.
STAGGER_STEPS = 10
#: After its manager's connection closed, a node whose only target is that manager (it is the
#: highest survivor) waits ``election_timeout * DISCONNECT_PROBE`` for its OK, not the whole
#: ``election_timeout``: a live manager (a spurious disconnect) answers in about a millisecond, a
#: dead one never does. Below one stagger step, so lower nodes are still waiting when the
#: winner announces itself.
DISCONNECT_PROBE = 1 / 6


def on_claim(core: CoreState, claim: Claim, now: float) -> bool:
    """Learn of a manager claim; follow it if it is the highest. True if we follow it."""
    if duplicate_claim(core, claim, now):
        # Held by a second node in a live member's name, relayed (its own messages never
        # get here): never followed, whatever its term (clerk._dupname).
        core.drop("duplicate_claim", f"claim {claim.key} at {claim.address}: the name is "
                                     "held by a live member at another address")
        return False
    core.see_term(claim.term)
    if claim.name == core.me.name:
        if core.role is not Role.MANAGER:
            return False  # see_term made sure our next candidacy goes above it
        mine = core.my_claim()
        if claim.key > mine.key:
            # A claim in our name above ours: our previous incarnation's (we restarted and
            # lost its term). Whoever saw it refuses us as stale, so claim again, higher.
            become_manager(core, now)
            return False
        return claim.key == mine.key
    if core.highest is not None and claim.key < core.highest.key:
        # Stale: never follow it, and tell its holder about the newer claim.
        if core.role is Role.MANAGER and (
                claim.address in core.seeds or claim.address in core._lost
                or core.members.by_address(claim.address) is not None):
            core.tell(claim.address, now)  # not for strangers: see _handover.accept_merge
        # (Not if we know its holder is gone: a live manager would follow a dead claim.
        # Unless the stale claim is the holder's own name: a restarted incarnation, which
        # must hear of its old claim to claim again above it.)
        if claim.name == core.highest.name or not core.known_dead(core.highest):
            core.send(claim.address, Coordinator(core.me, core.term, core.highest))
        return False
    if core.role in (Role.LEAVING, Role.STOPPED):
        core.raise_highest(claim)
        leaving_saw(core, claim, now)
        return False
    current = core._claim
    if current is not None and claim.key == current.key:
        return True
    if current is None or claim.key > current.key:
        follow(core, claim, now)
        return True
    core.send(claim.address, Coordinator(core.me, core.term, current))
    return False


def follow(core: CoreState, claim: Claim, now: float) -> None:
    """Follow ``claim`` (the highest seen): become its FOLLOWER and announce ourselves."""
    old = core._claim
    if core.role is Role.MANAGER:
        step_down_to(core, claim, now)  # two managers met: the lower one (us) hands over
    elif old is not None and old.name != claim.name:
        # Tell our previous manager that it has been superseded.
        core.send(old.address, Coordinator(core.me, claim.term, claim))
    core.raise_highest(claim)
    core.role = Role.FOLLOWER
    core._claim = claim
    core._fence.clear()
    core.parts_in.keep_only(claim.name, claim.term)  # (another manager's: clerk._handparts)
    core.term = claim.term
    core.heard_manager(now)
    core._epoch_seen = -1
    core._phase = ""
    core._suspect = ""
    core._deadline = INF
    core._next_heartbeat = INF
    core._next_probe = now + core.probe_jitter()
    # Announce ourselves; a manager that does not know us answers with its member list.
    core.send(claim.address, Ack(core.me, core.term, 0, -1))
    core._acked_at, core._ack_said, core._unacked_chars = now, (-1, -1, ""), 0
    core._acked_seq = -1
    core._out.append(ManagerChanged(claim.name, claim.term, False))


def start_election(
    core: CoreState, now: float, suspect: str, probe: bool = True, disconnected: bool = False
) -> None:
    """Become a candidate. ``suspect`` is the manager we gave up on; with ``probe`` it also
    gets an ELECTION (a live one answers OK with its claim). Nodes ranked lower wait a
    little longer before calling the election (``_stagger``), so in the common case the
    highest survivor announces itself first and nobody else sends anything.
    ``disconnected``: the suspect's connection closed, so a short wait for its OK will do
    (``DISCONNECT_PROBE``)."""
    if core.role in (Role.MANAGER, Role.LEAVING, Role.STOPPED):
        return
    was_following = core._claim is not None
    if core._claim is not None and core._claim.name == suspect:
        core._suspect_addr = core._claim.address
    elif suspect != core._suspect:
        row = core.members.get(suspect) if suspect else None
        core._suspect_addr = row.peer.address if row is not None else ""
    core.role = Role.CANDIDATE
    core._claim = None
    core._suspect = suspect
    core._probe_suspect = probe and bool(suspect)
    core._disconnected = disconnected
    core._hinted = set()
    if was_following:
        core._out.append(ManagerChanged(None, core.term, False))
    delay = stagger(core, len(higher(core)))
    if delay <= 0:
        send_elections(core, now)
    else:
        core._phase = "wait"
        core._deadline = now + delay


def stagger(core: CoreState, above: int) -> float:
    return min(above, STAGGER_STEPS) * core.timings.election_timeout / 5


def higher(core: CoreState) -> list[Member]:
    me_rank = core.me.rank
    q = core.quorum
    return [
        r for r in core.members.others()
        if r.alive and r.peer.rank > me_rank and r.name != core._suspect
        and (q is None or r.name in q.voters)  # quorum mode: only voters may win
    ]


def send_elections(core: CoreState, now: float) -> None:
    targets = [row.peer.address for row in higher(core)]
    # Probe the suspect even if it is not in our list: a node that followed a manager
    # on a third party's word (WELCOME) and whose JOIN was lost has no list yet, and
    # must not depose a live manager just because it never heard of the members.
    if core._probe_suspect and core._suspect_addr and core._suspect_addr not in targets:
        targets.append(core._suspect_addr)
    if not targets:
        become_manager(core, now)
        return
    for address in targets:
        core.send(address, Election(core.me, core.term, core._suspect))
    core._phase = "ok"
    wait = core.timings.election_timeout
    if core._disconnected and targets == [core._suspect_addr]:
        wait *= DISCONNECT_PROBE
    core._deadline = now + wait


def become_manager(
    core: CoreState, now: float, members: tuple[MemberInfo, ...] | None = None
) -> None:
    """Claim the cluster: term = highest seen + 1, COORDINATOR to every member, a heartbeat
    round and a probe at once. ``members``: a leaving manager's list, taken first. In quorum
    mode the claim first needs a majority of voters' promises (:func:`_quorumcore.claim`)."""
    if core.quorum is not None:
        if members is not None:
            adopt(core, members, now)
        _quorumcore.claim(core, now)
        return
    take_claim(core, now, members)


def take_claim(core: CoreState, now: float, members: tuple[MemberInfo, ...] | None = None,
               term: int | None = None) -> None:
    """:func:`become_manager` itself; quorum mode's phase 1 passes the ``term`` of the ballot
    it was promised."""
    lone = is_lone(core, members, term)
    if members is not None:
        adopt(core, members, now)
    if core._suspect:
        core.members.mark_dead(core._suspect)
    if lone:
        core.term = LONE_TERM  # below every claim made with members (clerk._claims)
    elif term is None:
        core.max_term += 1
        core.term = core.max_term
    else:
        core.see_term(term)
        core.term = term
    core.joined = core.joined or not lone
    core.new_log(keep=core.role is Role.MANAGER)
    core.role = Role.MANAGER
    core._fence.clear()  # a fresh claim: every node that followed another one heard it
    core.parts_in.clear()  # (a hand-over's parts we hold can no longer be taken: _handparts)
    claim = core.my_claim()
    core._claim = claim
    core.raise_highest(claim)
    core._phase = ""
    core._suspect = ""
    core._deadline = INF
    # Where the table we continue from stands (our replica, if caught up with its log): a
    # member then offers us only the rows it holds beyond it (clerk._replica.offer_keys).
    at = core.replica.position()
    for row in core.members.others():
        row.acked_epoch = -1
        row.last_seen = now  # every member gets a full timeout to acknowledge us
        core.send(row.peer.address, Coordinator(core.me, core.term, claim,
                                                at if reads_table_at(row.peer) else None))
    core._out.append(ManagerChanged(core.me.name, core.term, True))
    take_back_merge(core)  # (after ManagerChanged: the layer loads, then merges)
    core._next_heartbeat = now  # first heartbeat right away
    heartbeat_round(core, now)
    # Probe at once, too: a node that gave up joining because no seed answered (all were
    # down) finds the cluster as soon as a seed is back, instead of a probe interval later.
    # Costs nothing in the usual takeover: seeds already in our list are not probed.
    probe_lost(core, now)


def is_lone(core: CoreState, members: tuple[MemberInfo, ...] | None, term: int | None) -> bool:
    """Would our claim now be a lone one (:mod:`clerk._claims`, "Lone claims")? A candidate
    that was never part of a cluster (``CoreState.joined``: it never took a manager's member
    list, nor claimed with members) and has no live member in its table; not a hand-over's
    successor (``members``), nor a ballot of quorum mode (``term``), nor a node without
    seeds claiming at its start (a cluster of one by its configuration: the first node that
    the others join)."""
    return (members is None and term is None and core.quorum is None
            and core.role is Role.CANDIDATE and not core.joined
            and not any(r.alive for r in core.members.others()))


def graduate(core: CoreState, now: float) -> None:
    """A lone manager that has a live member now (a joiner it admitted, a lone node that
    stepped down to it) claims again at the highest term seen + 1, at once: its cluster's
    claim must rank above the next lone node's (:mod:`clerk._claims`, "Lone claims")."""
    if (core.role is Role.MANAGER and core.term == LONE_TERM and core.quorum is None
            and any(r.alive for r in core.members.others())):
        take_claim(core, now)


def on_peer_down(core: CoreState, address: str, now: float) -> None:
    """A connection closed: our manager's starts an election with a short probe of it; a
    manager marks the member down; anyone else marks it dead."""
    row = core.members.by_address(address)
    if row is None or now < core.distrust_down_until:
        return  # (a disconnect right after our own freeze: see _heartbeats.resumed)
    if core.role is Role.FOLLOWER and row.name == core.manager:
        # The connection closed: most likely the process is gone, but a TCP reset of a
        # live manager looks the same, so it still gets a (short) probe.
        core.members.mark_dead(row.name)
        start_election(core, now, suspect=row.name, disconnected=True)
    elif core.role is Role.MANAGER:
        if core.members.mark_dead(row.name):
            core._out.append(MemberDown(row.name, "disconnected"))
    else:
        core.members.mark_dead(row.name)
        successor_down(core, row.name, now)  # (leaving: the next member at once)


def m_welcome(core: CoreState, msg: Welcome, now: float) -> None:
    """WELCOME: a manager's (follow it, take its list) or a relay's (follow the claim it names,
    JOIN its holder); one without a claim only teaches a joiner or candidate the members."""
    claim = msg.manager
    if claim is None:
        if core.role in (Role.JOINING, Role.CANDIDATE):
            learn(core, msg.members, now)
        return
    if (claim.name == core.me.name and claim.address != core.me.address
            and core.role is Role.JOINING):
        # The cluster's manager holds our name at another address: we are a duplicate
        # (a restart of that manager comes back at its own address). Without this the
        # joiner never JOINs (it cannot follow a claim in its own name), elects itself
        # after join_timeout, and the two re-claim above each other forever.
        reason = (f"the name {core.me.name!r} is already used by the manager at "
                  f"{claim.address}; {core.me.address} was refused")
        core.stop(f"refused by {msg.sender.name}: {reason}")
        core._out.insert(0, Refused(reason))
        return
    if claim.name == msg.sender.name:
        if on_claim(core, claim, now) and core.role is Role.FOLLOWER:
            core.heard_manager(now)  # (its own word: CoreState.manager_due)
            adopt(core, msg.members, now, welcomed=True)
            core._epoch_seen = msg.epoch
            if not lists_me(core, msg.members):
                # It answers a JOIN of ours older than our tasks (sent before our workers
                # were ready; or one a later JOIN overtook): the manager lists what it said,
                # and once we ACK this epoch (a heartbeat right behind it, answered by a busy
                # loop) no heartbeat brings the list again.
                core.send(claim.address, Join(core.me, core.term, core.tasks))
        return
    if second_hand_suspect(core, claim, msg.sender.name):
        return
    already = core._claim is not None and core._claim.key == claim.key
    if on_claim(core, claim, now) and not already:
        if core.role is Role.FOLLOWER:
            core._unheard = core.timings.join_timeout  # (a relay's word: manager_due)
        core.send(claim.address, Join(core.me, core.term, core.tasks))


def m_heartbeat(core: CoreState, msg: Heartbeat, now: float) -> None:
    """HEARTBEAT: follow its claim if it is the highest; a follower takes the list it carries,
    re-JOINs if the list misses or misstates it, applies the table's changes
    (:mod:`clerk._replica`), and acknowledges both, or, for a heartbeat that brought
    nothing, only every so often (:func:`clerk._heartbeats.acknowledge`)."""
    s = msg.sender
    if not on_claim(core, Claim(msg.term, s.priority, s.name, s.address), now):
        return
    if core.role is not Role.FOLLOWER:
        return
    core.heard_manager(now)
    core._holder_seen = (Claim(msg.term, s.priority, s.name, s.address).key, s.incarnation)
    if msg.wall_ms is not None:  # (clerk._clockskew)
        core.clock_skew.sample(f"{s.name}/{s.incarnation}", msg.wall_ms, now)
    if msg.members is not None:
        adopt(core, msg.members, now)
        core._epoch_seen = msg.epoch
        if not lists_me(core, msg.members):
            core.send(s.address, Join(core.me, core.term, core.tasks))
    if msg.table is not None:
        if core.table_log.log:
            # We were a manager: our own last table is the base the new log's rows replace.
            if core.table_log.complete:
                core.replica.take(core.table_log.items())
            core.table_log = ReplicaLog()
        core.replica.apply(msg.table)
        if core.replica.caught_up and core.replica.log == msg.table.log:
            core.table_from = s.name
    acknowledge(core, msg, now)


def m_election(core: CoreState, msg: Election, now: float) -> None:
    """ELECTION: a manager answers OK with its claim (and claims above a higher term); a follower
    vouches for a manager heard recently; a joiner stays out (JOIN); a candidate answers OK."""
    s = msg.sender
    if core.role in (Role.LEAVING, Role.STOPPED):
        return
    if core.role is Role.MANAGER:
        if msg.term > core.term:
            # The candidate knows a term above ours (a manager that is gone, or it would
            # have deposed us by now): claim above it, or the candidate must refuse us.
            become_manager(core, now)
        core.send(s.address, Ok(core.me, core.term, core.my_claim()))
        if core.members.touch(s.name, s.incarnation, now) is None:
            core.send(s.address, Heartbeat(core.me, core.term, core._seq,
                                            core.members.epoch, list_for(core, s.incarnation),
                                            None))
        return
    if core.role is Role.FOLLOWER:
        fresh = now - core._last_heard <= core.timings.vouch_window
        if fresh or msg.suspect != core.manager:
            core.send(s.address, Ok(core.me, core.term, core._claim))
            return
        core.send(s.address, Ok(core.me, core.term, None))
        start_election(core, now, suspect=core.manager or "")
        return
    if core.role is Role.JOINING:
        # Not a member yet: stay out of the election. A newcomer that knows nothing of
        # the cluster would win at once if it ranks high (it knows nobody above it), and
        # its near-empty member list would then replace everyone's. Ask the candidate
        # for the list instead; the winner's COORDINATOR (or a WELCOME) brings us in.
        learn(core, (MemberInfo(s.name, s.address, s.incarnation, s.priority,
                                       True, ()),), now)
        core.send(s.address, Join(core.me, core.term, core.tasks))
        return
    core.send(s.address, Ok(core.me, core.term, None))  # already a candidate
    if core._phase == "wait":
        send_elections(core, now)  # a lower node is waiting on us: no point waiting


def m_ok(core: CoreState, msg: Ok, now: float) -> None:
    """OK: a claim in it may be followed; an OK from a node ranked above makes a candidate wait
    for the winner's COORDINATOR."""
    if msg.manager is not None:
        if on_claim(core, msg.manager, now):
            return
        h = core.highest
        if (core.role is Role.CANDIDATE and h is not None and msg.manager.key < h.key
                and msg.manager.name != h.name and core.known_dead(h)):
            # A live manager below a claim whose holder is gone: we must not follow it
            # and must not stand down on it (it will never announce a higher claim by
            # itself). Our ELECTION carries a term above the dead claim's (which may be
            # higher by rank only), so the manager claims above it. Once per manager
            # and candidacy: if it does not, we complete our candidacy instead.
            if msg.manager.address not in core._hinted:
                core._hinted.add(msg.manager.address)
                core.send(msg.manager.address,
                           Election(core.me, max(core.term, h.term + 1), core._suspect))
            return
    # Only a higher node's OK means "stand down, I will run": the probed suspect may answer
    # from below (restarted as a new incarnation, or no longer a manager) and must not
    # stall us; waiting on it would leave nobody to win.
    if (core.role is Role.CANDIDATE and core._phase == "ok"
            and msg.sender.rank > core.me.rank
            and (core.quorum is None or msg.sender.name in core.quorum.voters)):
        core._phase = "coord"
        jitter = core.rng.uniform(0.0, core.timings.election_timeout)
        core._deadline = now + core.timings.coordinator_timeout + jitter


def m_coordinator(core: CoreState, msg: Coordinator, now: float) -> None:
    """COORDINATOR: a claim to follow if it is the highest (or a leaving manager's successor),
    and, from the claimant itself, where its table stands (``CoreState.manager_table``)."""
    if core.role is Role.LEAVING and msg.claim.name == core._successor:
        successor_took_over(core, msg, now)
        return
    if second_hand_suspect(core, msg.claim, msg.sender.name):
        return
    if msg.table is not None and msg.sender.name == msg.claim.name:
        core._announced = (msg.claim.key, msg.table)  # (read on following it: manager_table)
    if on_claim(core, msg.claim, now) and msg.sender.name == msg.claim.name:
        core._holder_seen = (msg.claim.key, msg.sender.incarnation)  # (clerk._leftmember)


def second_hand_suspect(core: CoreState, claim: Claim, sender: str) -> bool:
    """A candidate hears, from someone other than its holder, the claim of the manager it
    gave up on (no higher than it knew): ignore it. Such relays are often late (ZeroMQ
    delivers messages queued during a reconnect up to 100 ms after the fact), and
    following a dead manager again costs a whole manager timeout. Only the suspect itself
    (answering our probe) or a higher claim brings us back."""
    return (core.role is Role.CANDIDATE and claim.name == core._suspect
            and sender != claim.name and core.highest is not None
            and claim.key <= core.highest.key)


def m_leave(core: CoreState, msg: Leave, now: float) -> None:
    """LEAVE: a manager removes the member; a follower whose manager leaves starts an election."""
    s = msg.sender
    row = core.members.get(s.name)
    if row is None or row.peer.incarnation != s.incarnation:
        if core.role is Role.MANAGER and core.quorum is None:
            # Maybe a node that left as a member, after its OFFER (clerk._leftoffers).
            core._out.append(LeftUnlisted(s))
            return
        core.drop("not_member", f"LEAVE from {s.name!r} ({s.incarnation!r}): not a member")
        return
    if core.role is Role.MANAGER:
        core.members.remove(s.name)
        core._out.append(MemberDown(s.name, "left"))
    elif core.role is Role.FOLLOWER and s.name == core.manager:
        start_election(core, now, suspect=s.name)
    else:
        core.members.mark_dead(s.name)
        if core.role is Role.LEAVING and s.name == core._successor:
            # The member it handed over to left before taking over (it never will): hand
            # over to the next live member, or stop if none is left. Else it waited out
            # handover_timeout, and the results it applied meanwhile went to that member
            # only: a count on its own disk alone, repeated by a full restart without it.
            leave_as_manager(core, now)
