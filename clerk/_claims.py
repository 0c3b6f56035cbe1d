"""Claims and the term bound: which manager a node may follow, and which terms it accepts.

Rules:

* **Claims.** A manager's claim is ``(term, priority, name)``; claims are totally ordered and
  every node follows the highest claim it has seen. A claim below the highest seen is stale:
  it is never followed (this is also the fencing rule for EXECUTE) and its holder is told
  about the higher claim, so a paused-then-resumed manager steps down at its first heartbeat
  (not if the higher claim's holder is known to be gone: a live manager would follow a dead
  claim; a restarted holder is still told, and a manager that sees a claim in its own name
  above its own, or an ELECTION with a term above its own, claims again above it). Following
  a claim is a role change: it lives in :mod:`clerk._election` (``on_claim``).
* **Lone claims.** A node that elects itself knowing nobody (a candidate that was never part
  of a cluster in this incarnation, i.e. never took a manager's member list nor claimed with
  members, and has no live member in its table: a fresh node whose seeds did not answer
  within ``join_timeout``, because its links were slow to come up or it was cut off at its
  start; one that followed a claim on a relay's word and never heard from its holder before
  the manager timeout; a restarted node that waited out ``rejoin_timeout``) claims at
  ``LONE_TERM`` (0), not at the highest term seen + 1. Every claim a cluster ever made with
  members is at a term of 1 or more, so a lone claim is below all of them whatever the
  node's priority and name, in every build (the order itself is unchanged: an older node
  orders it the same way, nothing new is on the wire). When the lone node meets an
  established cluster it follows the cluster's manager and hands it its table (its states
  lose to the cluster's lineage by the lineage rules); before, its claim at term 1 beat a
  manager of term 1 (a cluster that never failed over) whose name sorts lower, and a healthy
  manager with members and history stepped down to a node with none. A lone manager that
  gets a live member (a joiner, or a lone node that stepped down to it) claims again at once
  at the highest term seen + 1 (:func:`clerk._election.graduate`): a cluster formed around a
  lone node (the first node of a cluster started at once, up before its seeds) is not left
  at term 0, where the next lone node with a higher name would depose it. Two lone nodes
  that meet resolve by name at term 0, then the winner claims again with its new member: a
  cluster whose nodes all started alone still agrees on one manager. Quorum mode's ballots
  are not affected, nor is a node without seeds (a cluster of one by its configuration).
* **Term bound.** Let ``H`` be the highest term this node has seen (or its *horizon*, if that
  is higher). A message whose term, or whose claim's term, is above ``H + MAX_TERM_JUMP`` is
  dropped (``Dropped("term_jump")``), and the horizon moves up by ``MAX_TERM_JUMP``, at most once
  per ``probe_interval``. So the terms a node accepts grow by at most ``MAX_TERM_JUMP`` per
  accepted message plus ``MAX_TERM_JUMP`` per second: a stranger (``--insecure``) or a buggy
  peer cannot push the cluster's terms to the 64-bit limit, where no node could ever claim a
  higher term again (it would take 2**43 messages, or 2**43 seconds of horizon moves; without
  the bound, one message), and a blind spray of far-future terms is never followed. Legitimate
  clusters do not hit the bound: a node claims ``highest seen + 1``, so two nodes' terms differ
  by the elections one ran without the other hearing of them, and a partitioned side would need
  a million elections to get that far ahead. If one ever does, it still merges: it keeps
  probing and heartbeating, and each second the other side's horizon comes ``MAX_TERM_JUMP``
  closer until its term is accepted (the simulator tests this with a tiny bound).
"""

from __future__ import annotations

import dataclasses

from clerk._messages import Claim, Message, Peer

__all__ = ["LONE_TERM", "MAX_TERM_JUMP", "TermBound", "claim_of", "message_term"]

#: The term of a lone claim: a node that elected itself knowing nobody (see "Lone claims").
LONE_TERM = 0

#: The most a message's term may exceed the highest term seen (see "Term bound" above).
MAX_TERM_JUMP = 1 << 20


def claim_of(sender: Peer, term: int) -> Claim:
    """The claim a manager message from ``sender`` at ``term`` stands for."""
    return Claim(term, sender.priority, sender.name, sender.address)


#: The fields of a message that may relay a claim (its term counts too).
_CLAIM_FIELDS = ("claim", "manager", "ballot", "promised")
#: Message class -> whether it has none of them (every message asks: an EXECUTE, a
#: heartbeat, a RESULT_ACK has none, and its term is its own).
_PLAIN: dict[type, bool] = {}


def _plain(cls: type) -> bool:
    if not dataclasses.is_dataclass(cls):
        return False
    names = {f.name for f in dataclasses.fields(cls)}
    return not any(name in names or hasattr(cls, name) for name in _CLAIM_FIELDS)


def message_term(msg: Message) -> int:
    """The highest term a message carries: its own, or that of the claim it relays."""
    term = msg.term
    cls = type(msg)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = _plain(cls)
    if plain:
        return term
    claim = getattr(msg, "claim", None) or getattr(msg, "manager", None)
    if isinstance(claim, Claim):
        term = max(term, claim.term)
    for name in ("ballot", "promised"):  # quorum mode's PREPARE ... REJECT
        claim = getattr(msg, name, None)
        if isinstance(claim, Claim):
            term = max(term, claim.term)
    return term


class TermBound:
    """The term bound of one node (module docstring): the horizon and when it last moved."""

    def __init__(self, jump: int = MAX_TERM_JUMP) -> None:
        self.jump = jump
        self.horizon = 0  # accept terms up to max(max_term, horizon) + jump
        self.horizon_at = -float("inf")  # when the horizon last moved

    def limit(self, max_term: int) -> int:
        """The highest term a message may carry when this node has seen ``max_term``."""
        return max(max_term, self.horizon) + self.jump

    def admits(self, term: int, max_term: int, now: float, interval: float) -> bool:
        """Is ``term`` within the bound? If not, the horizon moves up by ``jump`` (at most
        once per ``interval`` seconds) and the caller drops the message."""
        limit = self.limit(max_term)
        if term <= limit:
            return True
        if now - self.horizon_at >= interval:
            self.horizon, self.horizon_at = limit, now
        return False
