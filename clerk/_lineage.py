"""Which of two task states wins: lineage and version (pure functions, no I/O).

Rules (every merge, takeover, hand-over, follower load and disk read goes through
:func:`better`; terms and slots alone never decide which state is kept):

* **Lineage.** A state is born from one ``init`` run: its *origin* is that run's
  ``{"term", "node", "time"}`` (the manager's term and name, the wall ms of the result). Every
  later state descends from it.
* **Version.** The number of completed runs (outcome ok) whose state the lineage has seen:
  1 right after ``init``, +1 per ok run. Errors and timeouts keep the state and the version.
* **History.** The branches the lineage went through: ``[term, manager, start_version]`` per
  manager that updated it (a new entry when a new claim first updates it; the last
  ``HISTORY_KEEP`` are kept). Two records of one lineage share a prefix of it; where they
  part is where they diverged (a partition, a resumed old manager).
* **Order.** A record with a state beats one without. Between two origins, the *older* one wins
  (earlier time, then lower term, then name): a fresh ``init`` never replaces an older lineage,
  however many runs it made. Within one lineage, more completed runs (the higher version) wins,
  ties by the claim ``(term, manager)`` of the last branch. This is a total order, so every
  node that compares the same two records picks the same one (merges commute).
* **Conflicts.** The updates of the losing record that the winner does not contain are dropped
  and counted (:func:`dropped_updates`): all of the loser's runs for another origin, the runs
  after the point where the two branches diverged for the same origin, 0 when the loser is
  simply behind (an ancestor of the winner).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["HISTORY_KEEP", "Versioned", "better", "dropped_updates", "note_update",
           "origin_key", "parse_history", "parse_origin"]

#: Branches remembered per task. Each entry is a manager that updated the state; 32 covers far
#: more failovers than fit between two merges, and keeps a row's overhead under ~1 KB.
HISTORY_KEEP = 32


class Versioned(Protocol):
    """What the rules read from a task record."""

    has_state: bool
    origin: dict[str, Any] | None
    version: int
    history: list[list[Any]]


def parse_origin(raw: Any) -> dict[str, Any] | None:
    """An origin from the wire or disk; None if malformed."""
    if not isinstance(raw, dict):
        return None
    term, node, time = raw.get("term"), raw.get("node"), raw.get("time")
    if type(term) is not int or not isinstance(node, str) or not isinstance(time, int | float):
        return None
    return {"term": term, "node": node, "time": time}


def parse_history(raw: Any) -> list[list[Any]]:
    """A history from the wire or disk; malformed entries are dropped."""
    out: list[list[Any]] = []
    if isinstance(raw, list):
        for entry in raw[-HISTORY_KEEP:]:
            if (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is int
                    and isinstance(entry[1], str) and type(entry[2]) is int):
                out.append([entry[0], entry[1], entry[2]])
    return out


#: The origin of a state that carries none (a table from before lineages existed): the oldest
#: possible, so a fresh ``init`` never replaces it.
LEGACY_ORIGIN: dict[str, Any] = {"term": 0, "node": "", "time": 0}


def origin_key(rec: Versioned) -> tuple[float, int, str]:
    """Smaller is older (wins)."""
    o = rec.origin or LEGACY_ORIGIN
    return (float(o["time"]), int(o["term"]), str(o["node"]))


def _tip(rec: Versioned) -> tuple[int, str]:
    if rec.history:
        return (int(rec.history[-1][0]), str(rec.history[-1][1]))
    return (0, "")


def better(a: Versioned, b: Versioned) -> bool:
    """Is ``a`` strictly better than ``b`` (see the module docstring)?"""
    if a.has_state != b.has_state:
        return a.has_state
    if not a.has_state:
        return False
    ka, kb = origin_key(a), origin_key(b)
    if ka != kb:
        return ka < kb
    return (a.version, _tip(a)) > (b.version, _tip(b))


def _ends(rec: Versioned) -> dict[tuple[int, str, int], int]:
    """Each branch of ``rec``'s history -> the version it reached before the next began."""
    out = {}
    hist = rec.history
    for i, (term, node, start) in enumerate(hist):
        end = hist[i + 1][2] if i + 1 < len(hist) else rec.version
        out[(term, node, start)] = end
    return out


def dropped_updates(loser: Versioned, winner: Versioned) -> int:
    """How many of ``loser``'s updates ``winner`` does not contain (0 if it is behind)."""
    if not loser.has_state:
        return 0
    if not winner.has_state or origin_key(loser) != origin_key(winner):
        return loser.version
    mine, theirs = _ends(loser), _ends(winner)
    shared = [min(end, theirs[k]) for k, end in mine.items() if k in theirs]
    if shared:
        common = max(shared)
    else:  # histories truncated past the point they share: count from the oldest branch known
        starts = [h[2] for h in (*loser.history[:1], *winner.history[:1])]
        common = min(starts) if starts else 0
    return max(0, loser.version - common)


def note_update(rec: Versioned, term: int, manager: str) -> None:
    """An ok run is about to raise ``rec.version`` under the claim ``(term, manager)``: open a
    branch if this claim has not updated the state before."""
    if not rec.history or rec.history[-1][0] != term or rec.history[-1][1] != manager:
        rec.history.append([term, manager, rec.version])
        del rec.history[:-HISTORY_KEEP]
