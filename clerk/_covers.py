"""What a merge HANDOVER vouches for: the members whose rows its table holds.

A manager that took over from its replica (``stale``, :mod:`clerk._adopt`) holds every
dispatch until each live member has offered its rows: a member may hold a newer state than
the replica (the dead manager's last deltas). After a heal, the merge HANDOVER of the manager
that node followed before it took over used to end that wait at once
(``Scheduler.handed_over_by``), "its members' rows came from its replication". That holds only
if that manager's table held them: when it was itself a ``stale`` takeover still waiting for a
member's OFFER, its table lacked that member's newer rows, and so did its HANDOVER; the winner
then ran from an older counter and the live member's newer update was dropped
(``tests/unit/test_review4_heal.py``).

**Covers.** So a stepped-down manager's merge HANDOVER now says which members its table covers
(:func:`add_covers`, a ``covers`` entry beside each part's rows): the members whose OFFER it
merged under its claim, or whose rows a HANDOVER it took this way covered
(``Scheduler.offered``; itself among them), that still follow it: they acknowledged its
heartbeats since its claim (or its last stall) and within a manager timeout
(:func:`clerk._handover.step_down_to`). A member that offered a manager and follows it since
has nothing that manager's table lacks: what it held was merged, and what it got since came
from that manager. One silent longer may have followed another manager meanwhile (a
partition) and hold its rows. A member still awaited is not listed, nor is one whose wait
ended by its bound without its OFFER. The winner (a ``stale`` takeover; the HANDOVER from the
manager it followed before it managed, ``followed``) counts each listed member as offered once
every part of that step-down is merged (:class:`CoverParts`; a big table is several parts,
and the rows of the parts not merged yet are not ours yet); the wait ends when every live
member has offered or is covered, as it ends when every OFFER is in. Transitive: what a
HANDOVER covered is in ``offered``, so this node's own HANDOVER covers it in turn.

**Wire.** The entry is in the part's state, not a message field: a node of an older build
refuses a HANDOVER with a field it does not know, and reads a packed table's ``packed`` and
``chunks`` only. A HANDOVER without it (an older build, a part without rows, quorum mode)
covers no member but its sender: the old rule, the winner waits for the members' OFFERs
(bounded). A malformed entry is ignored the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["COVERS_KEY", "CoverParts", "Covers", "add_covers", "covers_chars", "covers_of"]

#: The key of the entry beside a merge HANDOVER part's rows.
COVERS_KEY = "covers"
#: At most this many names in one entry (a forged one cannot grow what a winner keeps).
MAX_COVERED = 4096
#: At most this many step-downs' parts are counted at once (a heal is one or two).
MAX_OPEN = 64


@dataclass(frozen=True, slots=True)
class Covers:
    """A merge HANDOVER part's entry: the members its sender's table covers, its sender's
    term at the step-down, and which part of how many of that step-down this is."""

    members: frozenset[str]
    term: int
    part: int
    of: int


def covers_chars(members: Collection[str]) -> int:
    """About how many characters the entry adds to each part (its budget is cut by that)."""
    return sum(len(m) + 4 for m in members) + 64


def add_covers(parts: list[Any], members: Iterable[str], term: int) -> list[Any]:
    """``parts`` (a step-down's tables, :func:`clerk._handover.table_parts`), each dict one
    with the entry for ``members`` (none: unchanged). A part without rows (None) has none and
    is not counted in ``of``."""
    names = sorted(set(members))
    if not names:
        return parts
    of = sum(isinstance(p, dict) for p in parts)
    out: list[Any] = []
    i = 0
    for p in parts:
        if isinstance(p, dict):
            p = {**p, COVERS_KEY: {"members": names, "term": term, "part": i, "of": of}}
            i += 1
        out.append(p)
    return out


def covers_of(state: Any) -> Covers | None:
    """The entry of a merge HANDOVER part's state; None if it has none or it is malformed."""
    raw = state.get(COVERS_KEY) if isinstance(state, dict) else None
    if not isinstance(raw, dict):
        return None
    members, term, part, of = (raw.get(k) for k in ("members", "term", "part", "of"))
    if (not isinstance(members, list) or len(members) > MAX_COVERED
            or not all(isinstance(m, str) for m in members)):
        return None
    if not all(type(v) is int for v in (term, part, of)):
        return None
    assert isinstance(term, int) and isinstance(part, int) and isinstance(of, int)
    if not 0 <= part < of:
        return None
    return Covers(frozenset(members), term, part, of)


class CoverParts:
    """The winner's count of each step-down's parts merged: :meth:`add` gives the members
    covered once all are (see the module docstring)."""

    def __init__(self) -> None:
        # (sender, its term) -> (parts merged, how many there are)
        self._open: dict[tuple[str, int], tuple[set[int], int]] = {}

    def add(self, sender: str, covers: Covers) -> frozenset[str]:
        """A part of ``sender``'s step-down was merged: the members it covers if that was
        its last part not merged yet, else none."""
        key = (sender, covers.term)
        held = self._open.get(key)
        if held is None or held[1] != covers.of:
            if len(self._open) >= MAX_OPEN:
                self._open.clear()
            held = self._open[key] = (set(), covers.of)
        held[0].add(covers.part)
        if len(held[0]) < covers.of:
            return frozenset()
        del self._open[key]
        return covers.members

    def clear(self) -> None:
        self._open.clear()
