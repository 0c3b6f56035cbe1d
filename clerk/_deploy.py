"""Rolling deploys: which tasks the manager schedules, with which parameters (pure).

Rules:

* **Announcement.** Each member announces the tasks it has loaded *with their parameters*:
  every entry of the ``tasks`` list of its JOIN (and so of its row in the member list the
  manager replicates, by reference: :mod:`clerk._tasksets`) is the task's name, a unit
  separator (``\\x1f``) and the JSON of its definition and of the time the member started.
  The core stores and forwards these entries as they are; :func:`task_names` turns them back
  into names wherever names are wanted. An
  entry that is a bare name (or that does not parse) still counts as "has the task loaded",
  without parameters.
* **Every loaded task is scheduled.** The manager schedules every task that any *live* member
  has loaded, whether or not it has loaded it itself: in a rolling deploy a new task runs as
  soon as one upgraded node is up, on the nodes that have it.
* **One rule when members disagree** on a task's parameters (the deploy changed its interval,
  timeout, args...): the definition announced by the most recently started member wins (ties:
  the highest node name). The newest node runs the newest code, and the rule gives the same
  answer on every node that sees the same member list. Status shows each variant and the
  nodes that announced it.
* **A task no live member has any more stops**: it is not dispatched, and status says since
  when (``gone_since``, wall time). It starts again, on its grid, when a member loads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from clerk._calendar import load_zone, parse_cron
from clerk._tasks import TaskDef

__all__ = ["MAX_ANNOUNCE_CHARS", "MAX_ENTRY_CHARS", "SEP", "Resolution", "Resolver", "announce",
           "parse_entry", "resolve", "task_names"]

SEP = "\x1f"
#: Longest entry announced with its parameters (a task with big ``args``): longer ones are
#: announced by name only, and scheduled with the manager's own definition if it has one.
MAX_ENTRY_CHARS = 2048
#: All of a node's entries with parameters together, at most. The member list carries the
#: entries by reference (clerk._tasksets) to nodes that read it, but an older build's list,
#: a JOIN and a fetched set carry them, so the announcement of a node stays small: this is
#: ~250 tasks of typical size per node (a 1000-task node announces the rest by name only, as
#: before rolling deploys existed). It is measured, and logged at start when it is exceeded.
MAX_ANNOUNCE_CHARS = 16 * 1024
#: What an entry's start time (``"s":<seconds>,``) counts for against the limits above.
_STARTED_ROOM = 24
_KEYS = ("target", "interval", "cron", "timezone", "catch_up", "timeout", "instant", "enabled",
         "args")
#: Short keys on the wire, and the defaults that are left out.
_SHORT = {"target": "t", "interval": "i", "cron": "c", "timezone": "z", "catch_up": "u",
          "timeout": "o", "instant": "n", "enabled": "e", "args": "a"}
#: Left out when equal (so a node without cron support reads an interval task's entry as
#: before, and a cron task's as one it cannot schedule: see parse_entry).
_DEFAULT = {"cron": None, "timezone": "UTC", "catch_up": "skip", "timeout": 5000,
            "instant": False, "enabled": True, "args": None}


def announce(defs: Iterable[TaskDef], started: float) -> tuple[str, ...]:
    """This node's task entries, for NodeCore's ``tasks`` (see the module docstring)."""
    out = []
    budget = MAX_ANNOUNCE_CHARS
    for d in defs:
        params: dict[str, Any] = {_SHORT[k]: v for k, v in d.to_json().items()
                                  if k in _KEYS and (k not in _DEFAULT or v != _DEFAULT[k])}
        # Measured without the start time (plus room for it), so that members of one build
        # announce the same entries up to it whenever they started (clerk._tasksets: one set).
        size = len(d.name) + 1 + len(json.dumps(params, separators=(",", ":"))) + _STARTED_ROOM
        params["s"] = round(started, 3)
        if size <= min(MAX_ENTRY_CHARS, budget):
            budget -= size
            out.append(d.name + SEP + json.dumps(params, separators=(",", ":"), sort_keys=True))
        else:
            out.append(d.name)
    return tuple(out)


def parse_entry(entry: str) -> tuple[str, TaskDef | None, float]:
    """``(name, definition or None, started)`` of one announced entry (never raises)."""
    name, sep, text = entry.partition(SEP)
    if not sep:
        return name, None, 0.0
    try:
        raw = json.loads(text)
        started = float(raw.pop("s", 0.0))
        values = {**_DEFAULT, **{k: raw[short] for k, short in _SHORT.items() if short in raw}}
        interval, cron = values.get("interval"), values["cron"]
        d = TaskDef(name=name, target=str(values["target"]),
                    interval=None if interval is None else int(interval),
                    timeout=int(values["timeout"]), instant=bool(values["instant"]),
                    enabled=bool(values["enabled"]), args=values["args"],
                    cron=None if cron is None else str(cron),
                    timezone=str(values["timezone"]), catch_up=str(values["catch_up"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return name, None, 0.0
    if d.timeout <= 0 or (d.interval is not None and d.interval <= 0) or (
            d.interval is None and d.cron is None and not d.instant) or not _schedulable(d):
        return name, None, started  # not a definition this node could schedule
    return name, d, started


def _schedulable(d: TaskDef) -> bool:
    """Can this node evaluate the announced schedule (cron expression, zone, catch_up)?"""
    if d.catch_up not in ("skip", "last") or (d.interval is not None and d.cron is not None):
        return False
    try:
        if d.cron is not None:
            parse_cron(d.cron)
        load_zone(d.timezone)
    except ValueError:  # a bad expression or zone, or no cronsim on this node
        return False
    return True


def task_names(entries: Iterable[str]) -> tuple[str, ...]:
    return tuple(e.partition(SEP)[0] for e in entries)


@dataclass
class Resolution:
    """What the members announce: the definition that wins per task, and the variants."""

    defs: dict[str, TaskDef] = field(default_factory=dict)
    #: task -> [{"definition": {...}, "nodes": [...], "chosen": bool}], only where the live
    #: members disagree.
    variants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: node -> names of the tasks it has loaded (for the scheduler's "who has it").
    loaded: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _key(d: TaskDef) -> str:
    return json.dumps({k: v for k, v in d.to_json().items() if k in _KEYS}, sort_keys=True)


def resolve(own: Sequence[TaskDef], members: Mapping[str, Sequence[str]]) -> Resolution:
    """The tasks to schedule, from the live members' entries (``members``: name -> entries,
    this node included). ``own``: this node's definitions, used for a task whose announcement
    carries none (a bare name)."""
    res = Resolution()
    best: dict[str, tuple[float, str, TaskDef]] = {}
    seen: dict[str, dict[str, tuple[TaskDef, list[str]]]] = {}
    mine = {d.name: d for d in own}
    # Members mostly announce the same entries, and a bare name stands for our own definition:
    # each distinct entry is parsed, and each definition keyed, once per call (10,000 tasks
    # on 10 members were 100,000 parses and JSON encodings: ~1 s of the manager's loop).
    parsed: dict[str, tuple[str, TaskDef | None, float]] = {}
    keys: dict[int, tuple[TaskDef, str]] = {}
    for node, entries in members.items():
        names = []
        for entry in entries:
            got = parsed.get(entry)
            if got is None:
                got = parsed[entry] = parse_entry(entry)
            name, d, started = got
            names.append(name)
            if d is None:
                d = mine.get(name)
                if d is None:
                    continue
            rank = (started, node)
            if name not in best or rank > best[name][:2]:
                best[name] = (started, node, d)
            keyed = keys.get(id(d))
            if keyed is None:
                keyed = keys[id(d)] = (d, _key(d))  # (d kept: its id stays its own)
            variant = seen.setdefault(name, {}).setdefault(keyed[1], (d, []))
            variant[1].append(node)
        res.loaded[node] = tuple(names)
    for name, (_, _, d) in sorted(best.items()):
        res.defs[name] = d
        variants = seen[name]
        if len(variants) > 1:
            chosen = _key(d)
            res.variants[name] = [
                {"definition": {k: v for k, v in vd.to_json().items() if k in _KEYS},
                 "nodes": sorted(nodes), "chosen": key == chosen}
                for key, (vd, nodes) in sorted(variants.items())
            ]
    return res


#: Entries (or winners) handled between two looks at the clock in :meth:`Resolver.step`.
_CHECK_EVERY = 64

_Parsed = tuple[str, TaskDef | None, float]


class Resolver:
    """:func:`resolve`, kept current as the member list changes: incremental and sliced.

    A change of the member list costs what the members that changed announce (a member
    joining, leaving or re-announcing), not every member's every entry, and that work runs in
    :meth:`step` slices within a deadline, between the loop's other work. The result is
    exactly :func:`resolve`'s over the latest list once :meth:`step` returns True
    (``tests/unit/test_deploy_incremental.py``). Meanwhile ``loaded`` already leaves out each
    member that left, and has no task for one that announces none any more; a member that
    joins is in it, and one that re-announces has its new set, once that member is done
    (until then its previous set); ``defs`` and ``variants`` are the previous list's, each
    task's until it is recomputed.

    Per task it keeps who announces it and how (``node -> (started, definition)``), the rank
    of the winner, and how many nodes announce each distinct definition object: a task all
    members announce with one definition (the common case, and every bare name) is
    recomputed in O(1), not O(members).

    ``changed`` collects the tasks whose winning definition (or whether there is one) may have
    changed since the caller last took them (:meth:`take_changed`): what the scheduler adopts.
    It starts with this node's own tasks (the scheduler starts with them), so the first
    resolution also stops those no live member has.
    """

    def __init__(self, own: Sequence[TaskDef]) -> None:
        self._mine = {d.name: d for d in own}
        self.defs: dict[str, TaskDef] = {}
        self.variants: dict[str, list[dict[str, Any]]] = {}
        #: node -> the names it has loaded (each set built once, never changed after).
        self.loaded: dict[str, AbstractSet[str]] = {}
        self._changed: set[str] = set(self._mine)
        #: The entries each node's contribution stands for, that contribution parsed, and
        #: the names in it.
        self._applied: dict[str, tuple[str, ...]] = {}
        self._parsed_of: dict[str, list[_Parsed]] = {}
        self._sets: dict[str, AbstractSet[str]] = {}
        #: task -> node -> (started, definition): who announces each task, how.
        self._has: dict[str, dict[str, tuple[float, TaskDef]]] = {}
        #: task -> the winner's (started, node) (absent: to be found again), and
        #: task -> id(definition) -> how many nodes announce that object.
        self._best: dict[str, tuple[float, str]] = {}
        self._objs: dict[str, dict[int, int]] = {}
        self._want: dict[str, tuple[str, ...]] = {}
        self._queue: list[str] = []  # nodes whose contribution is not their wanted entries
        # The node being redone: its new entries, the old contribution's and the new's cursor.
        self._job: tuple[str, tuple[str, ...]] | None = None
        self._old_at = 0
        self._new_at = 0
        self._new_parsed: list[_Parsed] = []
        self._new_names: set[str] = set()
        self._touched: set[str] = set()
        self._winners: list[str] | None = None  # the touched tasks, being recomputed
        self._win_at = 0
        # Each distinct entry parsed once, each definition keyed once (kept: its id stays its
        # own); both caches are dropped when they outgrow what the members announce.
        self._parsed: dict[str, _Parsed] = {}
        self._keys: dict[int, tuple[TaskDef, str]] = {}
        #: (name, key) -> the one parsed definition object
        self._canon: dict[tuple[str, str], TaskDef] = {}

    @property
    def pending(self) -> bool:
        return (bool(self._queue) or self._job is not None or bool(self._touched)
                or self._winners is not None)

    def update(self, members: Mapping[str, Sequence[str]]) -> None:
        """The live members' entries now (``members``: name -> entries, this node included)."""
        self._want = {node: tuple(entries) for node, entries in members.items()}
        # Left: no run to it, at once. Announces none of its tasks any more (a node whose
        # workers are all down): none, at once. Re-announces others: its previous set until
        # its new one is known (taking it away meanwhile would skip the slots of the tasks
        # only it has). Joins: once its set is known.
        for node in list(self.loaded):
            entries = self._want.get(node)
            if entries is None:
                del self.loaded[node]
            elif not entries and self.loaded[node]:
                self.loaded[node] = frozenset()
        # Each node whose contribution is not its entries any more is redone, in slices.
        queued = set(self._queue)
        job = self._job
        doing = [] if job is None else [job[0]]
        for node in [*self._applied, *self._want, *doing]:
            entries = self._want.get(node)
            if node in queued:
                continue
            if job is not None and job[0] == node:
                if job[1] is entries:
                    continue
            elif entries is self._applied.get(node):
                continue
            queued.add(node)
            self._queue.append(node)

    @property
    def has_changed(self) -> bool:
        return bool(self._changed)

    def take_changed(self) -> list[str]:
        """The tasks to adopt again since the last call (in no particular order)."""
        out = list(self._changed)
        self._changed = set()
        return out

    def step(self, deadline: float) -> bool:
        """Work until ``deadline`` (``time.perf_counter``); True once the result is current."""
        count = 0
        while True:
            if self._job is None:
                if not self._queue:
                    break
                node = self._queue.pop(0)
                entries = self._want.get(node)
                applied = self._applied.get(node)
                if entries is not None and applied is not None and entries == applied:
                    self._applied[node] = entries  # the same entries, a new tuple
                    self.loaded[node] = self._sets[node]
                    count += 1 + len(entries) // 64
                else:
                    self._job = (node, () if entries is None else entries)
                    self._old_at = self._new_at = 0
                    self._new_parsed, self._new_names = [], set()
            if self._job is not None:
                count = self._redo(deadline, count)
                if self._job is not None:
                    return False
            if time.perf_counter() >= deadline:
                return False
        while True:  # then each touched task's winner (a task touched again: again)
            if self._winners is None:
                if not self._touched:
                    break
                self._winners = list(self._touched)
                self._touched = set()
                self._win_at = 0
            names = self._winners
            check = count + _CHECK_EVERY
            while self._win_at < len(names):
                count += self._win(names[self._win_at])
                self._win_at += 1
                if count >= check:
                    check = count + _CHECK_EVERY
                    if time.perf_counter() >= deadline:
                        return False
            self._winners = None
        self._trim()
        return True

    def _redo(self, deadline: float, count: int) -> int:
        """Continue the node being redone: its old contribution out, its new one in."""
        assert self._job is not None
        node, entries = self._job
        old = self._parsed_of.get(node, [])
        has, best, objs, touched = self._has, self._best, self._objs, self._touched
        while self._old_at < len(old):
            name = old[self._old_at][0]
            self._old_at += 1
            by = has.get(name)
            gone = None if by is None else by.pop(node, None)
            if gone is not None:
                assert by is not None
                touched.add(name)
                if not by:
                    del has[name], objs[name]
                    best.pop(name, None)
                else:
                    self._uncount(name, gone[1])
                    if best.get(name, ("", ""))[1] == node:
                        del best[name]  # found again in _win
            count += 1
            if count % _CHECK_EVERY == 0 and time.perf_counter() >= deadline:
                return count
        parsed, mine, new, names = self._parsed, self._mine, self._new_parsed, self._new_names
        while self._new_at < len(entries):
            entry = entries[self._new_at]
            self._new_at += 1
            got = parsed.get(entry)
            if got is None:  # ~30 us with parameters: the clock is looked at after each
                got = parsed[entry] = self._parse(entry)
                count = (count // _CHECK_EVERY + 1) * _CHECK_EVERY - 1
            new.append(got)
            name, d, started = got
            names.add(name)
            if d is None:
                d = mine.get(name)
            if d is not None:
                by = has.get(name)
                if by is None:
                    by = has[name] = {}
                    objs[name] = {}
                was = by.get(node)
                # (a name announced twice by one node: its greatest rank, as resolve())
                if was is None or started > was[0]:
                    if was is not None:
                        self._uncount(name, was[1])
                    by[node] = (started, d)
                    counts = objs[name]
                    counts[id(d)] = counts.get(id(d), 0) + 1
                    b = best.get(name)
                    if len(by) == 1 or (b is not None and (started, node) > b):
                        best[name] = (started, node)
                    touched.add(name)
            count += 1
            if count % _CHECK_EVERY == 0 and time.perf_counter() >= deadline:
                return count
        self._job = None
        if node in self._want or entries:
            # (a node that left meanwhile is queued again: update() saw it differ)
            self._applied[node] = entries
            self._parsed_of[node] = new
            self._sets[node] = names  # (not copied: a new set is built for the next job)
            if self._want.get(node) is entries:
                self.loaded[node] = self._sets[node]
        else:
            for table in (self._applied, self._parsed_of, self._sets):
                table.pop(node, None)
        self._new_parsed, self._new_names = [], set()
        return count

    def _parse(self, entry: str) -> _Parsed:
        """An entry parsed, its definition the same object as every equal one parsed before
        (members started at different times announce equal definitions in different
        entries: one object each made every such task a disagreement to sort out, O(members),
        at each change)."""
        name, d, started = parse_entry(entry)
        if d is None:
            return name, d, started
        key = _key(d)  # (the parameters: tasks of equal ones are not the same definition)
        same = self._canon.get((name, key))
        if same is None:
            self._canon[(name, key)] = d
            self._keys[id(d)] = (d, key)
            return name, d, started
        return name, same, started

    def _uncount(self, name: str, d: TaskDef) -> None:
        counts = self._objs[name]
        left = counts[id(d)] - 1
        if left:
            counts[id(d)] = left
        else:
            del counts[id(d)]

    def _key(self, d: TaskDef) -> str:
        keyed = self._keys.get(id(d))
        if keyed is None:
            keyed = self._keys[id(d)] = (d, _key(d))
        return keyed[1]

    def _win(self, name: str) -> int:
        """Recompute one task's winner and variants (what resolve() does for it); returns
        about how much work that was (1: O(1); more: O(members))."""
        by = self._has.get(name)
        old = self.defs.get(name)
        if not by:
            self.defs.pop(name, None)
            self.variants.pop(name, None)
            if old is not None:
                self._changed.add(name)
            return 1
        cost = 1
        rank = self._best.get(name)
        if rank is None:  # the winner left: the next one, O(members)
            node = max(by, key=lambda n: (by[n][0], n))
            rank = self._best[name] = (by[node][0], node)
            cost += len(by)
        d = by[rank[1]][1]
        self.defs[name] = d
        if d is not old:
            self._changed.add(name)
        if len(self._objs[name]) == 1:  # one definition object: no variants
            self.variants.pop(name, None)
            return cost
        cost += len(by)
        groups: dict[str, tuple[TaskDef, list[str]]] = {}
        for n, (_, vd) in by.items():
            groups.setdefault(self._key(vd), (vd, []))[1].append(n)
        if len(groups) == 1:
            self.variants.pop(name, None)
            return cost
        chosen = self._key(d)
        self.variants[name] = [
            {"definition": {k: v for k, v in vd.to_json().items() if k in _KEYS},
             "nodes": sorted(nodes), "chosen": key == chosen}
            for key, (vd, nodes) in sorted(groups.items())
        ]
        return cost

    def _trim(self) -> None:
        """Drop the caches once they hold far more than the members announce now (each
        entry in use holds at most one parsed definition and its key)."""
        live = sum(len(e) for e in self._applied.values())
        if max(len(self._parsed), len(self._keys)) > 2 * live + 4096:
            self._parsed, self._keys, self._canon = {}, {}, {}
