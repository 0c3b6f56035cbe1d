"""The cluster protocol's messages: frozen dataclasses, one per kind.

Every message starts with the same two fields: ``sender`` (who sent it: name, address,
incarnation, priority) and ``term`` (the sender's current term: the term of the manager it
follows, or of its own candidacy). The codec (:mod:`clerk._codec`) turns them into multipart
frames and back, validating every field against the annotations below.

Protocol at a glance (``->`` one message, ``=>`` to every member)::

    joiner  -> seed      JOIN(tasks)            any node answers WELCOME(manager claim, members)
    joiner  -> manager   JOIN                   manager answers WELCOME, or REFUSE(reason)
    manager => members   HEARTBEAT(seq, epoch, members if stale, table delta if behind,
                                   its wall clock: clerk._clockskew)
    member  -> manager   ACK(seq, epoch, table seq, table log, its clock's offset)
    node    -> higher    ELECTION(suspect)      answered OK(manager claim if one is healthy)
    winner  => members   COORDINATOR(claim, table at)  also sent to a stale manager to depose
                                                it; ``table``: where the winner's table stands
    node    -> holder    TASKS_QUERY(digest)    a member's task set by its digest, answered
                                                TASKS_REPLY(digest, part, parts, tasks)
    node    -> manager   LEAVE                  graceful exit of a member
    manager -> successor HANDOVER(members, state)  graceful exit of a manager, or a merge
    winner  -> loser     MERGED(part)           a merge HANDOVER's part was merged: the
                                                stepped-down manager stops sending it again
    manager -> node      EXECUTE(task, run, slot, state, timeout, due, deadline)  answered RESULT
    manager -> node      RESULT_ACK(task, run)  the result was applied: the node stops resending
    manager -> node      RUN_QUERY(task, run)   a new manager asks about a run it adopted
    member  -> manager   OFFER(state)           its durable task rows, on following a manager
    candidate -> voters  PREPARE(ballot)        quorum mode: answered PROMISE(ballot, part of
                                                parts, rows) or REJECT(ballot, promised)
    manager -> voters    ACCEPT(ballot, seq, rows)  answered ACCEPTED(ballot, seq) or REJECT
    client  -> any node  STATUS(snapshot, part)  answered STATUS_REPLY(status); a big one
                                                in parts, asked for one by one
    client  -> any node  CONTROL(op, task, via)  answered CONTROL_REPLY(ok, error, manager,
                                                result): pause/resume/trigger are applied by
                                                the manager (a follower answers with the
                                                manager's address to retry there); show by
                                                any node from its replica of the table
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "Accept",
    "Accepted",
    "Ack",
    "Claim",
    "Control",
    "ControlReply",
    "Coordinator",
    "Election",
    "Execute",
    "Handover",
    "Heartbeat",
    "Join",
    "Json",
    "Leave",
    "HANDED_MARK",
    "PARTS_MARK",
    "HIST_MARK",
    "RAW_ROWS_MARK",
    "MERGE_MARK",
    "MemberInfo",
    "Merged",
    "Message",
    "Offer",
    "Ok",
    "Peer",
    "Prepare",
    "Promise",
    "Refuse",
    "Reject",
    "Result",
    "ResultAck",
    "RunQuery",
    "Status",
    "StatusReply",
    "TABLE_MARK",
    "TableAt",
    "TableDelta",
    "TasksQuery",
    "TasksReply",
    "Welcome",
    "MESSAGE_KINDS",
    "OMIT_NONE",
    "reads_merged",
    "reads_parts",
    "reads_raw_rows",
    "reads_table_at",
    "says_handed",
]

#: Any JSON value (validated by the codec: JSON types only, bounded depth).
Json: TypeAlias = Any

#: Field metadata: the codec leaves the field out of the body while it is None, so a node of
#: an older build (which refuses a field it does not know) reads the message as before.
OMIT_NONE = {"omit_none": True}


@dataclass(frozen=True, slots=True)
class Peer:
    """A node's identity: ``name@host``, its mailbox ``host:port``, a per-start incarnation id
    (so a restarted node and a duplicate name can be told apart) and its election priority."""

    name: str
    address: str
    incarnation: str
    priority: int = 0

    @property
    def rank(self) -> tuple[int, str]:
        """Bully order: higher ``(priority, name)`` wins."""
        return (self.priority, self.name)


@dataclass(frozen=True, slots=True)
class Claim:
    """A manager's claim to the cluster: its term and identity.

    Claims are totally ordered by ``(term, priority, name)``; every node follows the highest
    claim it has seen. Two managers with the same term (possible after a partition) are thus
    resolved deterministically: the higher-ranked one wins.
    """

    term: int
    priority: int
    name: str
    address: str

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.term, self.priority, self.name)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One entry of the member list that the manager replicates."""

    name: str
    address: str
    incarnation: str
    priority: int
    alive: bool
    tasks: tuple[str, ...] = ()
    #: By reference (to a node that reads it, :mod:`clerk._tasksets`): the digest of the
    #: member's task set and its start time (``tasks`` then empty). Left out while None, so
    #: a node of an older build reads the row as before.
    digest: str | None = field(default=None, metadata=OMIT_NONE)
    started: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class Join:
    sender: Peer
    term: int
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Welcome:
    sender: Peer
    term: int
    manager: Claim | None
    members: tuple[MemberInfo, ...]
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Refuse:
    sender: Peer
    term: int
    reason: str


@dataclass(frozen=True, slots=True)
class TableDelta:
    """Rows of the manager's task table changed after ``base`` up to ``upto`` (change
    sequence numbers of the log ``log``), as the JSON text of one object split into strings
    (``rows``), plus the keys removed (``gone``). ``done``: after applying it the receiver
    holds the manager's whole table (the last chunk of a complete log). Rules:
    :mod:`clerk._replica`."""

    log: str
    base: int
    upto: int
    rows: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    done: bool = False
    #: The history of some of ``rows`` as what changed (:mod:`clerk._histdelta`): the JSON
    #: text of one object split into strings; only to a node that reads it (``+r``).
    hist: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    #: The rows' text goes on the wire as it is, after the HEARTBEAT's body (not a JSON
    #: string escaped inside it): ``rows`` is then that one text, ``tail`` its length in
    #: characters. Only to a node that reads it (:func:`reads_raw_rows`); left out while None.
    #: On the wire the body's ``rows`` is empty and the text follows the body's closing brace
    #: (:mod:`clerk._codec`, "Rows after the body").
    tail: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sender: Peer
    term: int
    seq: int
    epoch: int
    members: tuple[MemberInfo, ...] | None = None
    table: TableDelta | None = None
    #: The manager's wall clock when it made the round (ms): a member estimates its clock's
    #: offset from it (:mod:`clerk._clockskew`). Only to a member that reads it (its
    #: incarnation's ``CLOCK_MARK``); left out while None.
    wall_ms: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class Ack:
    sender: Peer
    term: int
    seq: int
    epoch: int
    #: The change sequence of the manager's table log this member holds up to, and that
    #: log's id (-1, "": none): the manager sends it what changed after it.
    table: int = -1
    log: str = ""
    #: The member's wall clock minus this manager's (ms, its estimate: clerk._clockskew), for
    #: the manager's status. Only to a manager that reads it (``CLOCK_MARK``); left out while
    #: None (no estimate).
    clock_ms: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class Election:
    sender: Peer
    term: int
    suspect: str = ""


@dataclass(frozen=True, slots=True)
class Ok:
    sender: Peer
    term: int
    manager: Claim | None = None


#: The end of the incarnation (before the batch mark) of a node that reads ``Coordinator.table``:
#: only such a node is sent one (a node learns it from the member list, like ``+b``).
TABLE_MARK = "+t"


def reads_table_at(peer: Peer) -> bool:
    """The node ``peer`` announced that it reads ``Coordinator.table``."""
    return TABLE_MARK in peer.incarnation


#: In the incarnation (before the batch mark) of a node that reads MERGED: only such a node is
#: sent one (an older build would drop an unknown kind as a malformed frame).
MERGE_MARK = "+m"


def reads_merged(peer: Peer) -> bool:
    """The node ``peer`` announced that it reads ``Merged``."""
    return MERGE_MARK in peer.incarnation


#: In the incarnation of a node that, taking over from a leaving manager, says in its COORDINATOR
#: to it where its replica stands (``Coordinator.table``; None: not caught up with any log):
#: the leaving manager then sends the rows it lacks (clerk._handover, "Graceful leave").
HANDED_MARK = "+h"


def says_handed(peer: Peer) -> bool:
    """The node ``peer`` announced that its COORDINATOR to a leaving manager says where its
    replica stands (``HANDED_MARK``)."""
    return HANDED_MARK in peer.incarnation


#: In the incarnation of a node that takes a graceful hand-over in parts (clerk._handparts):
#: only such a node is sent one (an older build would take a part for the whole table).
PARTS_MARK = "+p"


def reads_parts(peer: Peer) -> bool:
    """The node ``peer`` announced that it takes a graceful hand-over in parts."""
    return PARTS_MARK in peer.incarnation


#: In the incarnation of a node that reads ``TableDelta.hist`` (rows' histories as what
#: changed, :mod:`clerk._histdelta`): only such a node is sent one.
HIST_MARK = "+r"

#: In the incarnation of a node that reads a HEARTBEAT whose table delta's rows follow the
#: body unescaped (``TableDelta.tail``): only such a node is sent one; every node still reads
#: rows as JSON strings inside the body (an older manager's).
RAW_ROWS_MARK = "+j"


def reads_raw_rows(peer: Peer) -> bool:
    """The node ``peer`` announced that it reads rows after the body (``RAW_ROWS_MARK``)."""
    return RAW_ROWS_MARK in peer.incarnation


@dataclass(frozen=True, slots=True)
class TableAt:
    """Where a new manager's table stands: its replica of the log ``log`` caught up at
    ``seq`` (:meth:`clerk._replica.Replica.position`)."""

    log: str
    seq: int


@dataclass(frozen=True, slots=True)
class Coordinator:
    """A claim. ``table``, from the claimant itself to a node that reads it
    (:func:`reads_table_at`): where the table it continues from stands, so that a member
    offers it only the rows it lacks (:func:`clerk._replica.offer_keys`); None: unknown
    (every row)."""

    sender: Peer
    term: int
    claim: Claim
    table: TableAt | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class Leave:
    sender: Peer
    term: int


@dataclass(frozen=True, slots=True)
class Handover:
    sender: Peer
    term: int
    members: tuple[MemberInfo, ...]
    state: Json = None


@dataclass(frozen=True, slots=True)
class Merged:
    """A manager merged one part of the table a stepped-down manager handed it (a merge
    HANDOVER; ``part``: :func:`clerk._handover.part_id` of its state): the stepped-down
    manager stops sending that part again (:mod:`clerk._handover`, "Merges are confirmed")."""

    sender: Peer
    term: int
    part: str


@dataclass(frozen=True, slots=True)
class Execute:
    sender: Peer
    term: int
    task: str
    run_id: str
    slot: int
    state: Json
    timeout_ms: int
    init: bool = False  # no state exists yet: call init(state) first (state holds the args)
    #: The slot's scheduled wall time and the run's deadline (ms since the epoch; 0: not
    #: given). A node drops an EXECUTE that arrives after its deadline or more than one
    #: interval after its due time (``stale``): a delayed run is never started late.
    due_ms: int = 0
    deadline_ms: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    sender: Peer
    term: int
    task: str
    run_id: str
    slot: int
    outcome: str  # "ok" | "error" | "timeout" | "refused"
    state: Json = None
    duration_ms: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Offer:
    """A member's task rows that hold a state (from its data directory or its replica), sent
    to each manager it starts following: the manager merges them by lineage and version, and
    calls ``init`` only once every member has offered (see :mod:`clerk._lineage`)."""

    sender: Peer
    term: int
    state: Json = None


@dataclass(frozen=True, slots=True)
class ResultAck:
    """The manager applied (or has no use for) the RESULT of ``run_id``: the node that sent it
    may forget it. Until then a node resends a result to every new manager it follows."""

    sender: Peer
    term: int
    task: str
    run_id: str


@dataclass(frozen=True, slots=True)
class RunQuery:
    """A manager that adopted a run in flight asks the node it was sent to what became of it:
    the node answers with the RESULT if it has one, says nothing while the run is going, and
    answers ``refused`` if it never got the run."""

    sender: Peer
    term: int
    task: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Status:
    """A status request. ``snapshot`` and ``part``: part ``part`` (1-based) of a status too
    big for one message, whose first reply named ``snapshot`` (:mod:`clerk._statusparts`);
    ``part`` 0 without a snapshot: the brief status, without the tasks. Left out while None,
    so a plain STATUS reads as before on any node (an older one refuses the others)."""

    sender: Peer
    term: int
    snapshot: str | None = field(default=None, metadata=OMIT_NONE)
    part: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class StatusReply:
    sender: Peer
    term: int
    status: Json


@dataclass(frozen=True, slots=True)
class Control:
    """An operator's command about one task (see clerk._control.OPS)."""

    sender: Peer
    term: int
    op: str
    task: str
    via: str = ""  # the node the client asked first, when it retries at the manager


@dataclass(frozen=True, slots=True)
class ControlReply:
    sender: Peer
    term: int
    ok: bool
    error: str = ""
    manager: str = ""  # not applied here: the manager's address (empty during an election)
    result: Json = None


@dataclass(frozen=True, slots=True)
class TasksQuery:
    """Asks for the task set of digest ``digest`` (:mod:`clerk._tasksets`); answered, by a
    node that holds it, with every part of it."""

    sender: Peer
    term: int
    digest: str


@dataclass(frozen=True, slots=True)
class TasksReply:
    """Part ``part`` (1-based) of ``parts`` of the task set of digest ``digest``."""

    sender: Peer
    term: int
    digest: str
    part: int
    parts: int
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prepare:
    """Quorum mode, phase 1 (:mod:`clerk._quorum`): a candidate asks a voter to promise
    ``ballot`` (its claim)."""

    sender: Peer
    term: int
    ballot: Claim


@dataclass(frozen=True, slots=True)
class Promise:
    """A voter promised ``ballot``: its rows, packed (:func:`clerk._record.pack_table`), in
    part ``part`` of ``parts`` (a large register travels in several messages)."""

    sender: Peer
    term: int
    ballot: Claim
    part: int
    parts: int
    rows: Json = None


@dataclass(frozen=True, slots=True)
class Accept:
    """Quorum mode, phase 2: the manager of ``ballot`` writes ``rows`` (packed; per task
    ``{"reserved", "record"}``) as its write number ``seq``."""

    sender: Peer
    term: int
    ballot: Claim
    seq: int
    rows: Json = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A voter stored write ``seq`` of ``ballot`` durably."""

    sender: Peer
    term: int
    ballot: Claim
    seq: int


@dataclass(frozen=True, slots=True)
class Reject:
    """A voter refused ``ballot`` (a PREPARE or an ACCEPT): it promised the higher
    ``promised``."""

    sender: Peer
    term: int
    ballot: Claim
    promised: Claim


Message: TypeAlias = (
    Join | Welcome | Refuse | Heartbeat | Ack | Election | Ok | Coordinator | Leave | Handover
    | Execute | Result | Offer | ResultAck | RunQuery | Status | StatusReply | Control
    | ControlReply | Prepare | Promise | Accept | Accepted | Reject | TasksQuery | TasksReply
    | Merged
)

#: Wire name of each message kind.
MESSAGE_KINDS: dict[str, type] = {
    "join": Join,
    "welcome": Welcome,
    "refuse": Refuse,
    "heartbeat": Heartbeat,
    "ack": Ack,
    "election": Election,
    "ok": Ok,
    "coordinator": Coordinator,
    "leave": Leave,
    "handover": Handover,
    "execute": Execute,
    "result": Result,
    "offer": Offer,
    "result_ack": ResultAck,
    "run_query": RunQuery,
    "status": Status,
    "status_reply": StatusReply,
    "control": Control,
    "control_reply": ControlReply,
    "prepare": Prepare,
    "promise": Promise,
    "accept": Accept,
    "accepted": Accepted,
    "reject": Reject,
    "tasks_query": TasksQuery,
    "tasks_reply": TasksReply,
    "merged": Merged,
}
