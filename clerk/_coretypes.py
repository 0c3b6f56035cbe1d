"""The core's vocabulary: its roles, the events it takes and the effects it returns.

Pure data, no rules: :class:`~clerk._core.NodeCore` takes an :data:`Event` and returns a list
of :data:`Effect` values for the shell to carry out (``Send``) or report (the rest). Everything
here is re-exported by :mod:`clerk._core`, the import path the shells and tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clerk._messages import Execute, Json, MemberInfo, Message, Peer

__all__ = [
    "INF",
    "Deliver",
    "Dropped",
    "Effect",
    "Event",
    "LeaveRequested",
    "LeftHeard",
    "LeftUnlisted",
    "ManagerChanged",
    "MemberDown",
    "MemberUp",
    "OfferAgain",
    "PeerDown",
    "PeerUp",
    "QuorumChanged",
    "Received",
    "Refused",
    "Role",
    "Send",
    "StaleExecute",
    "Start",
    "StateHandedOver",
    "Stopped",
    "Tick",
    "VoterWrite",
    "WriteCommitted",
]

INF = float("inf")


class Role(StrEnum):
    JOINING = "joining"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    MANAGER = "manager"
    LEAVING = "leaving"
    STOPPED = "stopped"


# --- events (inputs) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin: join through the seeds, or become the manager of a cluster of one."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; check timers (the shell ticks at :meth:`NodeCore.next_deadline`)."""


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded message from a peer."""

    msg: Message


@dataclass(frozen=True, slots=True)
class PeerDown:
    """The connection to ``address`` closed (socket-monitor fast path for crashed peers)."""

    address: str


@dataclass(frozen=True, slots=True)
class PeerUp:
    """A connection to ``address`` was (re-)established (socket monitor): after a partition
    heals, the moment to tell a node we lost about our claim, rather than at the next probe."""

    address: str


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    """Leave the cluster gracefully (a manager hands over first)."""


Event = Start | Tick | Received | PeerDown | PeerUp | LeaveRequested


# --- effects (outputs) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to the node whose mailbox is at ``to`` (``host:port``)."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class ManagerChanged:
    manager: str | None
    term: int
    is_me: bool


@dataclass(frozen=True, slots=True)
class OfferAgain:
    """The link to the manager this node follows came (back) up (``PeerUp``): the task layer
    sends that manager its OFFER again. The first may have been lost while the link was down
    (sent at the claim, queued at most ``clerk._transport.PENDING_TTL``), and a new manager
    may hold its dispatches until every live member's OFFER is in (clerk._adopt): up to
    ``OFFER_WAIT_SURE_MS``. A second OFFER is merged idempotently."""

    manager: str
    address: str


@dataclass(frozen=True, slots=True)
class LeftHeard:
    """A node that left as a member (stopped) heard of a manager above the claim it knew
    (its COORDINATOR: that manager still lists it, as its LEAVE died with the one before or
    never went). The task layer gives it what this node still holds, as a follower does,
    if anything: its OFFER (the runs in flight here) and its unacknowledged results; then
    this node's LEAVE (``NodeCore.leave_again``), so that manager removes it ("left": its
    runs in flight end by their results) instead of dropping it as silent and failing them."""

    manager: str
    address: str


@dataclass(frozen=True, slots=True)
class LeftUnlisted:
    """Manager, default mode: a LEAVE from a node that is not a member (that incarnation). A
    node that left as a member gives a manager that does not list it its OFFER, its results
    and then this LEAVE (``LeftHeard``): the task layer merges that node's OFFER it held (an
    OFFER at our term from a node not admitted is held until it joins) as a node that left's
    (:mod:`clerk._leftoffers`). Nothing else changes: it is in no member list."""

    sender: Peer


@dataclass(frozen=True, slots=True)
class MemberUp:
    info: MemberInfo
    how: str  # "added" | "replaced" | "revived"


@dataclass(frozen=True, slots=True)
class MemberDown:
    name: str
    reason: str  # "disconnected" | "silent" | "left"


@dataclass(frozen=True, slots=True)
class StateHandedOver:
    """A manager handed its replicated state to us (graceful leave or a merge). ``confirm``:
    the MERGED to send once the task layer merged ``state`` into the table it schedules (or
    took it: quorum mode), never before (clerk._handover, "Merges are confirmed")."""

    sender: str
    state: Json
    merge: bool
    confirm: Send | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """A message for the layer above (EXECUTE that passed the fence, RESULT, STATUS...)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class StaleExecute:
    """An EXECUTE from a claim below the highest this node has seen was refused (the node
    counts it as ``stale`` and logs it; the refusal was already sent to its holder)."""

    msg: Execute
    reason: str


@dataclass(frozen=True, slots=True)
class Stopped:
    reason: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message was dropped as hostile or impossible (``reason`` is a counter key)."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class VoterWrite:
    """Quorum mode, a voter's register changed: make ``record`` durable (replace the voter file
    atomically, fsync), and only then carry out ``then`` (the PROMISE/ACCEPTED sends, which
    may be addressed to this very node: deliver those like any message). Writes are applied
    in order; consecutive ones may be coalesced (write the last record, then carry out every
    ``then`` in order). If the node dies first, ``then`` never happens."""

    record: dict[str, Any]
    then: tuple[Effect, ...]


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    """Quorum mode: this node's view of the quorum changed (the shell logs it)."""

    ok: bool
    reachable: tuple[str, ...]
    voters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WriteCommitted:
    """Quorum mode, manager: its write ``seq`` (from :meth:`NodeCore.quorum_write`) is held
    by a majority of voters, durably."""

    seq: int


Effect = (
    Send | ManagerChanged | MemberUp | MemberDown | StateHandedOver | Deliver | Refused | Stopped
    | Dropped | StaleExecute | VoterWrite | QuorumChanged | WriteCommitted | OfferAgain
    | LeftHeard | LeftUnlisted
)
