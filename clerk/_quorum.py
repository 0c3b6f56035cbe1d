"""Quorum mode's protocol: one Paxos register per task, with the manager's claim as the ballot.

Pure data and rules, no I/O: the voter's side (:class:`VoterRegister`) and the manager's side
(:class:`Proposer`). :mod:`clerk._quorumcore` wires them into the node's core and its messages.

Rules:

* **Ballot** = the manager's claim key ``(term, priority, name)`` (:mod:`clerk._claims`):
  totally ordered, and two claimants never share one (the name is in it).
* **Voter register**, durable before any reply (the core's ``VoterWrite`` effect): ``promised``
  (the highest ballot promised) and per task a row ``{"reserved": highest slot reserved or
  None, "accepted": ballot that wrote it, "seq": the write's number within that ballot,
  "record": the task record}``.
* **Phase 1.** PREPARE(b): a voter promises ``b >= promised`` (stores it, then answers
  PROMISE with all its rows), else answers REJECT(promised). A candidate holding PROMISEs of a
  majority of voters (``len(voters) // 2 + 1``) is the manager: its table is the merge of
  those rows (:func:`merge_rows`: per task ``reserved`` = the max, the record = the one written
  under the highest ``(accepted, seq)``, ties by the record's ``version``).
* **Phase 2.** ACCEPT(b, seq, rows): a voter accepts from ``b >= promised`` (``promised``
  becomes ``b``); per task ``reserved`` only grows and the record is replaced only by a write
  at least as new by ``(ballot, seq)`` (a reordered older write of the same ballot never
  undoes a newer one; a row without a record only reserves); it stores, then answers
  ACCEPTED(b, seq). Else REJECT(promised). A
  write is *committed* once a majority of voters ACCEPTED it.
* **Write-ahead.** A manager dispatches slot ``k`` of task ``t`` only once a write with
  ``reserved[t] >= k`` is committed under its ballot, and reserves only slots above the
  ``reserved`` its phase 1 showed. A run's result counts (RESULT_ACK, history, next state)
  only once the write of its new record is committed.

**Why no slot is dispatched twice** (no clock anywhere). Let ballots ``b1 < b2``, ``A`` a
majority that accepted ``b1``'s write reserving ``k`` for ``t``, and ``P`` the majority whose
PROMISEs made ``b2`` manager. ``A`` and ``P`` share a voter ``v``. If ``v`` accepted before it
promised ``b2``, its PROMISE showed ``reserved[t] >= k`` (reserved only grows), so ``b2``'s
merge shows ``>= k`` and ``b2`` reserves above ``k``. If ``v`` promised ``b2`` first, it
refused ``b1``'s (lower) write, so ``v`` is not in ``A``: a contradiction. Every later ballot
``b3`` either promised-after-accepting from a voter of ``A`` or meets ``b2``'s (committed or
not) rows showing ``>= k`` in the same way: by induction, every later manager's table shows
``reserved[t] >= k``. The same argument, with the record chosen by highest ``(accepted,
seq)`` (a manager's records only move forward within its ballot), shows that a committed
record is never replaced by an older one: Paxos's "a chosen value stays chosen".

**Size.** A register of 10,000 tasks does not fit one message: rows travel packed
(:func:`clerk._record.pack_table`) and split by :func:`chunk_rows` into parts of at most
``ROWS_BUDGET`` bytes; a PROMISE is sent in ``parts`` numbered parts and counts once every
part arrived; a manager's large write is several writes, each its own ``seq``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clerk._messages import Claim

__all__ = [
    "RECORD_VERSION",
    "NO_BALLOT",
    "ROWS_BUDGET",
    "Ballot",
    "Outcome",
    "Proposer",
    "QuorumState",
    "Row",
    "VoterRegister",
    "ballot_from",
    "chunk_rows",
    "majority",
    "merge_rows",
]

Ballot = tuple[int, int, str]
#: The ``accepted`` of a row that holds a reservation but no record yet: below every ballot.
NO_BALLOT: Ballot = (-1, 0, "")

#: The voter file's format version (``{"version": 1, "promised": ..., "rows": ...}``).
RECORD_VERSION = 1
#: Largest rows part of one PROMISE or ACCEPT, in bytes of JSON text. Packed rows travel as a JSON
#: string, where escaping can double their size: a quarter of the codec's 1 MiB
#: message limit keeps a part under it, and a lone task record at the state limit (256 KiB)
#: still fits.
ROWS_BUDGET = 256 * 1024


def majority(voters: int) -> int:
    """How many voters make a majority of ``voters``."""
    return voters // 2 + 1


def ballot_from(raw: Any) -> Ballot | None:
    """A ballot from its JSON form ``[term, priority, name]``; None if malformed."""
    if (isinstance(raw, list | tuple) and len(raw) == 3 and type(raw[0]) is int
            and type(raw[1]) is int and isinstance(raw[2], str)):
        return (raw[0], raw[1], raw[2])
    return None


@dataclass
class Row:
    """One task's row in a voter register (see the module docstring)."""

    reserved: int | None
    accepted: Ballot
    seq: int
    record: Any

    @property
    def order(self) -> tuple[Ballot, int]:
        """Which write is newer: ``(accepted, seq)``."""
        return (self.accepted, self.seq)

    def to_json(self) -> dict[str, Any]:
        return {"reserved": self.reserved, "accepted": list(self.accepted), "seq": self.seq,
                "record": self.record}

    @classmethod
    def from_json(cls, raw: Any) -> Row | None:
        if not isinstance(raw, Mapping):
            return None
        accepted = ballot_from(raw.get("accepted"))
        reserved, seq = raw.get("reserved"), raw.get("seq")
        if (accepted is None or type(seq) is not int
                or not (reserved is None or type(reserved) is int)):
            return None
        return cls(reserved, accepted, seq, raw.get("record"))


def _version(record: Any) -> int:
    v = record.get("version") if isinstance(record, Mapping) else None
    return v if type(v) is int else -1


def merge_rows(promises: Iterable[Mapping[str, Row]]) -> dict[str, Row]:
    """Phase 1's merge of a majority's rows: per task the highest ``reserved``, and the record
    written under the highest ``(accepted, seq)`` (ties: the higher record version)."""
    out: dict[str, Row] = {}
    for rows in promises:
        for task, row in rows.items():
            have = out.get(task)
            if have is None:
                out[task] = Row(row.reserved, row.accepted, row.seq, row.record)
                continue
            reserved = have.reserved
            if row.reserved is not None and (reserved is None or row.reserved > reserved):
                reserved = row.reserved
            if (row.order, _version(row.record)) > (have.order, _version(have.record)):
                have = Row(reserved, row.accepted, row.seq, row.record)
            have.reserved = reserved
            out[task] = have
    return out


def chunk_rows(rows: Mapping[str, Any], budget: int = ROWS_BUDGET) -> list[dict[str, Any]]:
    """Split a mapping of JSON rows into parts whose JSON text is at most ``budget`` bytes
    (a row larger than the budget goes alone). Always at least one part."""
    parts: list[dict[str, Any]] = [{}]
    size = 0
    for task, row in rows.items():
        n = len(json.dumps(row, separators=(",", ":"))) + len(task) + 8
        if parts[-1] and size + n > budget:
            parts.append({})
            size = 0
        parts[-1][task] = row
        size += n
    return parts


class VoterRegister:
    """A voter's durable register (module docstring, "Voter register"). ``record()`` is what
    the voter file holds; the caller makes it durable before it answers."""

    def __init__(self, record: Mapping[str, Any] | None = None) -> None:
        self.promised: Ballot | None = None
        self.promised_at = ""  # the address of the promised ballot's holder (for REJECT)
        self.rows: dict[str, Row] = {}
        if record is not None:
            self._load(record)

    def _load(self, record: Mapping[str, Any]) -> None:
        if not isinstance(record, Mapping) or record.get("version") != RECORD_VERSION:
            raise ValueError(f"voter record: unknown format (version "
                             f"{record.get('version') if isinstance(record, Mapping) else '?'})")
        raw = record.get("promised")
        self.promised = ballot_from(raw)
        if raw is not None and self.promised is None:
            raise ValueError(f"voter record: promised {raw!r} is not [term, priority, name]")
        address = record.get("promised_at", "")
        self.promised_at = address if isinstance(address, str) else ""
        rows = record.get("rows", {})
        if not isinstance(rows, Mapping):
            raise ValueError("voter record: rows is not an object")
        for task, raw_row in rows.items():
            row = Row.from_json(raw_row)
            if row is None:
                raise ValueError(f"voter record: the row of task {task!r} is malformed")
            self.rows[task] = row

    def record(self) -> dict[str, Any]:
        """The durable form (JSON): ``{"version", "promised", "promised_at", "rows"}``."""
        return {"version": RECORD_VERSION,
                "promised": list(self.promised) if self.promised is not None else None,
                "promised_at": self.promised_at,
                "rows": {t: r.to_json() for t, r in self.rows.items()}}

    def admits(self, ballot: Ballot) -> bool:
        return self.promised is None or ballot >= self.promised

    def prepare(self, ballot: Ballot, address: str = "") -> bool:
        """PREPARE: promise ``ballot`` if it is ``>= promised``. True if promised (the register
        may have changed: store it, then answer with :meth:`rows_json`)."""
        if not self.admits(ballot):
            return False
        if ballot != self.promised:
            self.promised, self.promised_at = ballot, address
        return True

    def accept(self, ballot: Ballot, seq: int, rows: Mapping[str, Any],
               address: str = "") -> bool:
        """ACCEPT: take ``rows`` (task -> ``{"reserved"[, "record"]}``: a row without a record
        only reserves) from ``ballot`` if it is ``>= promised``. True if accepted (store, then
        answer ACCEPTED)."""
        if not self.admits(ballot):
            return False
        if ballot != self.promised:
            self.promised, self.promised_at = ballot, address
        for task, raw in rows.items():
            if not isinstance(raw, Mapping):
                continue
            reserved = raw.get("reserved")
            if not (reserved is None or type(reserved) is int):
                continue
            have = self.rows.get(task)
            if have is None:
                have = self.rows[task] = Row(reserved, NO_BALLOT, 0, None)
            if reserved is not None and (have.reserved is None or reserved > have.reserved):
                have.reserved = reserved
            if "record" in raw and (ballot, seq) >= have.order:
                have.accepted, have.seq, have.record = ballot, seq, raw["record"]
        return True

    def rows_json(self) -> dict[str, Any]:
        return {t: r.to_json() for t, r in self.rows.items()}


@dataclass
class Write:
    """One write of a manager, waiting for its majority."""

    rows: dict[str, Any]
    sent_at: float
    acks: set[str] = field(default_factory=set)


class Proposer:
    """A candidate's and then a manager's side of one ballot (module docstring).

    Phase 1: :meth:`on_promise` until :attr:`ready`; :attr:`table` is then the merged rows.
    Phase 2: :meth:`write` returns a new ``seq``; :meth:`on_accepted` returns the seqs that
    became committed; :attr:`committed` holds, per task, the newest committed row.
    """

    def __init__(self, ballot: Ballot, voters: Iterable[str], now: float,
                 own: str | None = None) -> None:
        self.ballot = ballot
        #: The proposer's own voter name: phase 1 completes only with its own PROMISE among
        #: the majority's, so its own voter file holds the ballot before any write under it,
        #: and a restart claims above every ballot this node ever used.
        self.own = own
        self.voters = tuple(voters)
        self.need = majority(len(self.voters))
        self.started = now
        self.promises: dict[str, dict[str, Row]] = {}
        self._parts: dict[str, dict[int, Mapping[str, Any]]] = {}
        self._counts: dict[str, int] = {}  # per voter: how many parts its answer has
        self.ready = False
        self.table: dict[str, Row] = {}
        self.next_seq = 1
        self.pending: dict[int, Write] = {}
        #: Per task: the highest slot committed as reserved under this ballot, and the newest
        #: committed record (with its seq). Kept apart: a result's write carries no
        #: reservation, and must not hide the one committed before it.
        self.committed_reserved: dict[str, int] = {}
        self.committed: dict[str, tuple[int, Any]] = {}
        self.last_commit = now

    def on_promise(self, voter: str, part: int, parts: int, rows: Mapping[str, Any]) -> bool:
        """A PROMISE part from ``voter``. True when this one made phase 1 complete. Malformed
        rows make the whole promise void (it is not counted)."""
        if self.ready or voter not in self.voters or voter in self.promises:
            return False
        if not (0 <= part < parts):
            return False
        got = self._parts.setdefault(voter, {})
        if self._counts.get(voter) != parts:
            got.clear()  # parts of another answer (another chunking): start over
            self._counts[voter] = parts
        got[part] = rows
        if len(got) < parts:
            return False
        del self._parts[voter]
        parsed: dict[str, Row] = {}
        for chunk in got.values():
            for task, raw in chunk.items():
                row = Row.from_json(raw)
                if row is None:
                    return False
                parsed[task] = row
        self.promises[voter] = parsed
        if len(self.promises) < self.need or (
                self.own is not None and self.own not in self.promises):
            return False
        self.ready = True
        self.table = merge_rows(self.promises[v] for v in sorted(self.promises))
        return True

    def reserved(self, task: str) -> int | None:
        """The highest slot of ``task`` committed as reserved under this ballot (None: none)."""
        return self.committed_reserved.get(task)

    def learned_reserved(self, task: str) -> int | None:
        """The highest reservation phase 1 showed for ``task`` (never dispatch at or below)."""
        row = self.table.get(task)
        return row.reserved if row is not None else None

    def write(self, rows: Mapping[str, Any], now: float) -> int:
        """Start a write of ``rows`` (task -> ``{"reserved", "record"}``); its seq."""
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = Write(dict(rows), now)
        return seq

    def on_accepted(self, voter: str, seq: int, now: float) -> list[int]:
        """An ACCEPTED of ``seq`` from ``voter``: the seqs committed by it (zero or one)."""
        w = self.pending.get(seq)
        if w is None or voter not in self.voters:
            return []
        w.acks.add(voter)
        if len(w.acks) < self.need:
            return []
        del self.pending[seq]
        self.last_commit = now
        for task, row in w.rows.items():
            r = row.get("reserved")
            if type(r) is int and r > self.committed_reserved.get(task, r - 1):
                self.committed_reserved[task] = r
            have = self.committed.get(task)
            if "record" in row and (have is None or seq > have[0]):
                self.committed[task] = (seq, row["record"])
        return [seq]

    def oldest_pending(self) -> float | None:
        """When the oldest write still without its majority was started (None: none)."""
        return min((w.sent_at for w in self.pending.values()), default=None)


#: What a quorum step asks of the election (:mod:`clerk._core` carries it out, so that
#: :mod:`clerk._quorumcore` and :mod:`clerk._election` do not import each other): an ``int``
#: is a term to take the claim at (phase 1 done), a :class:`~clerk._messages.Claim` one to
#: learn (``on_claim``), ``"elect"`` a new election, ``"claim"`` a new ballot; None nothing.
Outcome = int | Claim | str | None

INF = float("inf")


class QuorumState:
    """What a node's core knows in quorum mode."""

    def __init__(self, me: str, voters: Sequence[str], record: Mapping[str, Any] | None) -> None:
        self.voters = tuple(dict.fromkeys(voters))
        self.is_voter = me in self.voters
        self.register = VoterRegister(record) if self.is_voter else None
        self.proposer: Proposer | None = None
        #: The last ballot of ours whose phase 1 never completed and was not refused: the
        #: next candidacy reuses it unless a higher term was seen meanwhile.
        self.unused: Ballot | None = None
        self.rejected = False  # our ballot was refused: quorum lost until the next claim
        self.heard: dict[str, float] = {}
        self.addresses: dict[str, str] = {}  # voter -> the address it last wrote from
        self.reported: tuple[bool, tuple[str, ...]] | None = None
        self.next_resend = INF
        self.prepare_until = INF
        self.deferred: Outcome = None  # from a write outside ``handle`` (NodeCore.quorum_write)
        self.now = 0.0

    @property
    def need(self) -> int:
        return majority(len(self.voters))
