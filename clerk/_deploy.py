"""Rolling deploys: which tasks the manager schedules, with which parameters (pure).

Rules:

* **Announcement.** Each member announces the tasks it has loaded *with their parameters*:
  every entry of the ``tasks`` list of its JOIN (and so of its row in the member list the
  manager replicates) is the task's name, a unit separator (``\\x1f``) and the JSON of its
  definition and of the time the member started. The core stores and forwards these entries
  as they are; :func:`task_names` turns them back into names wherever names are wanted. An
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clerk._calendar import load_zone, parse_cron
from clerk._tasks import TaskDef

__all__ = ["MAX_ANNOUNCE_CHARS", "MAX_ENTRY_CHARS", "SEP", "Resolution", "announce",
           "parse_entry", "resolve", "task_names"]

SEP = "\x1f"
#: Longest entry announced with its parameters (a task with big ``args``): longer ones are
#: announced by name only, and scheduled with the manager's own definition if it has one.
MAX_ENTRY_CHARS = 2048
#: All of a node's entries with parameters together, at most. The member list (every member's
#: entries) travels in one heartbeat of at most 1 MiB when it changes, so the announcement of
#: a node must stay small: this is ~250 tasks of typical size per node (a 1000-task node
#: announces the rest by name only, as before rolling deploys existed). It is measured, and
#: logged at start when it is exceeded.
MAX_ANNOUNCE_CHARS = 16 * 1024
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
        params["s"] = round(started, 3)
        entry = d.name + SEP + json.dumps(params, separators=(",", ":"), sort_keys=True)
        if len(entry) <= min(MAX_ENTRY_CHARS, budget):
            budget -= len(entry)
            out.append(entry)
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
