"""Analysis of a ``tools/chaos.py`` run: the ledger and the fault log in, a report out (pure).

Inputs: the ledger (one dict per run: ``slot, term, node, count, from, due, start``; times in
wall ms; ``count`` is the state the run *received*, ``from`` the run that produced it,
``"<node>/<slot>"``, absent in older ledgers); runs after ``end`` are ignored) and the faults
(dicts written by the tool: ``kind, start, end, nodes`` and, for partitions, ``cut, up,
sides, healed``). Rules:

* **Partitioned time** is, for each partition, ``[cut, healed)``, where ``healed`` is when every
  node agreed on one manager (stably) after the links came up; a heal that never came, or took
  longer, counts as partitioned only up to ``up + heal_max_ms``: past the time a heal is
  allowed to take, the cluster counts as connected again. Every other moment is *connected*.
* **Slots run twice**: slots with more than one ledger line; *partitioned* when any of their
  runs started in partitioned time, else *connected* (the guarantee: none).
* **State regressions**: walking the runs in start order, the *level* is the highest count
  seen in connected time. A connected run that received less than ``level - 1`` is a regression
  (one update may be lost to a manager crash between a result and its replication); the level
  then restarts from it, so one drop counts once. A partitioned run below ``level - 1`` (a side
  that called ``init`` again) counts once per partition and side.
* **Heals**: for each partition, ``pre`` is the highest ``count + 1`` in the last second
  before the cut (:data:`LOOKBACK_MS`), each
  side's top the highest ``count + 1`` its nodes reached in ``[cut, healed)`` (``pre`` if it ran
  nothing), and ``after`` the count the cluster continued from after the heal (the run where
  the merged table took over: see :func:`_settled`). A heal is bad when ``after < pre - 1`` or
  ``after < best side - 1``; the winner is the side whose top is within one of ``after`` (none:
  a table that is neither side's won); the runs of the sides other than the nearest are the
  updates dropped (conflicts, expected).
* **Late runs**: ``start - due > late_ms`` (default one interval: the node's own rule for
  dropping a stale EXECUTE).
* **Missed slots**: grid slots between the first and last ledger slot that never ran, each
  charged to the fault whose span (its start to the next fault's start) holds its due time,
  against the fault's failover window (``window_ms``: allowed ``ceil(window / interval) + 1``);
  slots run twice while connected are charged to faults the same way.
* **Full stops**: the first run after the restart must receive the count the last run before
  the restart returned (SIGTERM: exactly; SIGKILL: at most one update lost).

Quorum mode (``voters`` given; the report then also holds these, :data:`QUORUM_CHECKS`):

* **Slots run twice in any period**: connected or partitioned, the guarantee is none.
* **Committed updates lost**: walking the runs in slot order, a run that received less than
  the highest count an earlier slot's run received. A manager dispatches only a state that a
  majority of voters holds, so every count a run received was committed; a run may receive
  the same count again (a result never committed is redone from the committed state), never
  less.
* **Minority sides idle**: for each partition, every side without a majority of the voters
  starts at most :data:`RESERVED_PER_TASK` run (per task: a slot already reserved, its EXECUTE
  sent before the cut) from the cut until the links come up.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CHECKS", "QUORUM_CHECKS", "analyse", "render", "violations"]

#: Check names for ``--enforce``, each with the invariant it enforces (issue 9, "Done when").
CHECKS: dict[str, str] = {
    "twice": "0 slots run twice while connected",
    "late": "0 late runs",
    "heal-loss": "0 heals below the pre-split count or more than one update below the best side",
    "heal-time": "every heal (links up -> one agreed manager) within heal_max_ms",
    "unhealed": "0 splits that never healed",
    "dead": "0 nodes dead on their own",
    "full-stop": "a full stop and start continues every counter (SIGKILL: at most 1 update lost)",
    "kill-idle": "a kill -9 of the manager misses no more slots than its failover window",
}

#: Quorum mode's checks (``tools/chaos.py --voters N`` enforces them too), issue 10.
QUORUM_CHECKS: dict[str, str] = {
    "twice-any": "0 slots run twice in any period, partitioned included",
    "regress-any": "0 state regressions in any period, partitioned included",
    "committed-lost": "0 committed updates lost (no run receives less than an earlier slot's)",
    "minority-idle": "a side without a majority of voters starts no run after the cut beyond "
                     "one already-reserved slot per task",
}
#: Runs a minority side may still start after the cut: the ledger task's one slot that was
#: reserved (and its EXECUTE sent, dispatch is slightly early) before the cut.
RESERVED_PER_TASK = 1

#: After every node agrees on one manager, the two sides' tables may take a few runs more to
#: meet (the merge travels with the next heartbeats); the lineage the cluster continues from
#: is read from the runs of this stretch. The tool starts the next fault no sooner than this.
MERGE_SETTLE_MS = 3000
#: "The count the cluster had" before a fault is read from the runs of this last stretch
#: (five slots): the cluster was settled then, and older counts may predate an earlier reset.
LOOKBACK_MS = 1000


def _partition_windows(faults: Sequence[Mapping[str, Any]],
                       heal_max_ms: float) -> list[tuple[float, float]]:
    out = []
    for f in faults:
        if f.get("cut") is None or f.get("up") is None:
            continue
        cap = f["up"] + heal_max_ms
        end = cap if f.get("healed") is None else min(f["healed"], cap)
        out.append((f["cut"], end))
    return out


def _inside(t: float, windows: Iterable[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in windows)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _level_before(runs: Sequence[Mapping[str, Any]], t: float) -> int | None:
    """The count the cluster had just before ``t``: the highest ``count + 1`` of the runs
    started in the :data:`LOOKBACK_MS` before it (else of the last run before it)."""
    before = [r for r in runs if r["start"] < t]
    if not before:
        return None
    recent = [r["count"] + 1 for r in before if r["start"] >= t - LOOKBACK_MS]
    return max(recent) if recent else before[-1]["count"] + 1


def _settled(runs: Sequence[Mapping[str, Any]], healed: float, next_fault: float,
             late_ms: float, up: float = -math.inf) -> Mapping[str, Any] | None:
    """The run from which the cluster continued after a heal: among the runs on time in the
    :data:`MERGE_SETTLE_MS` after it (before the next fault), the last one that did not receive
    its predecessor's result (where the merged table took over), else the first. A late run is
    a stale EXECUTE from before the heal (counted as late), not the merged table.

    When the window's runs are one unbroken chain, they may all have run before the merge
    landed (the winner's own table, whose results the merge then dropped), with no run after
    it in the window (the new manager held its slots for the members' OFFERs, then the next
    fault came: chaos seed 9, twice). Then the first on-time run after the window decides, if
    its ``from`` names a run of the partition (started before ``up``) and not the window's
    last: that partition state is what the merge kept, nothing ran in between."""
    on_time = [r for r in runs if r["start"] >= healed and r["start"] - r["due"] <= late_ms]
    window = [r for r in on_time if r["start"] < min(healed + MERGE_SETTLE_MS, next_fault)]
    if not window:
        return on_time[0] if on_time else None
    jump, broke = window[0], False
    for prev, r in zip(window, window[1:], strict=False):
        if not _continues(r, prev):
            jump, broke = r, True
    if not broke:
        later = on_time[len(window)] if len(on_time) > len(window) else None
        if later is not None and not _continues(later, window[-1]) and later.get("from"):
            parent = next((r for r in runs if f"{r['node']}/{r['slot']}" == later["from"]),
                          None)
            if parent is not None and parent["start"] < up:
                return later
    return jump


def _continues(run: Mapping[str, Any], prev: Mapping[str, Any]) -> bool:
    """Whether ``run`` received the state ``prev`` produced. With the ledger's ``from`` (the
    run whose result it received), exactly; without it (an older ledger), by the count alone,
    which is wrong when the merged table's count happens to follow the losing side's last
    run: a side 2 updates behind that ran 2 more slots between the heal and the merge."""
    if "from" in run and "from" in prev:
        return run["from"] == f"{prev['node']}/{prev['slot']}"
    return bool(run["count"] == prev["count"] + 1)


def _heals(runs: Sequence[Mapping[str, Any]], faults: Sequence[Mapping[str, Any]],
           heal_max_ms: float, late_ms: float) -> list[dict[str, Any]]:
    heals = []
    for index, f in enumerate(faults):
        if f.get("cut") is None or f.get("up") is None:
            continue
        cut, up = f["cut"], f["up"]
        end = f["healed"] if f.get("healed") is not None else up + heal_max_ms
        pre = _level_before(runs, cut) or 0
        tops, side_runs = [], []
        for side in f.get("sides") or []:
            mine = [r for r in runs if cut <= r["start"] < end and r["node"] in side]
            tops.append(max([r["count"] + 1 for r in mine], default=pre))
            side_runs.append(len(mine))
        first = _settled(runs, end, faults[index + 1]["start"] if index + 1 < len(faults)
                         else math.inf, late_ms, up)
        row: dict[str, Any] = {"fault": index, "at": cut, "kind": f["kind"], "pre": pre,
                               "tops": tops, "side_runs": side_runs, "after": None, "winner": None,
                               "dropped": None, "bad": False,
                               "heal_ms": None if f.get("healed") is None
                               else f["healed"] - up}
        if first is not None and tops:
            after = first["count"]
            best = max(tops)
            near = min(range(len(tops)), key=lambda i: abs(tops[i] - after))
            winner = near if abs(tops[near] - after) <= 1 else None
            row.update(after=after, winner=winner,
                       dropped=sum(n for i, n in enumerate(side_runs) if i != near),
                       below_pre=max(0, pre - after), below_best=max(0, best - after),
                       bad=after < pre - 1 or after < best - 1)
        heals.append(row)
    return heals


def _regressions(runs: Sequence[Mapping[str, Any]],
                 windows: Sequence[tuple[float, float]],
                 faults: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    level, out, seen = -1, [], set()
    for r in runs:
        window = next((w for w in windows if w[0] <= r["start"] < w[1]), None)
        if window is None:
            if level >= 0 and r["count"] < level - 1:
                out.append({"at": r["start"], "from": level, "to": r["count"],
                            "node": r["node"], "partitioned": False})
                level = r["count"] + 1
            else:
                level = max(level, r["count"] + 1)
        elif level >= 0 and r["count"] < level - 1:
            side = next((tuple(s) for f in faults if f.get("cut") == window[0]
                         for s in f.get("sides") or [] if r["node"] in s), (r["node"],))
            if (window, side) not in seen:
                seen.add((window, side))
                out.append({"at": r["start"], "from": level, "to": r["count"],
                            "node": r["node"], "partitioned": True})
    return out


def _missed(runs: Sequence[Mapping[str, Any]], faults: Sequence[Mapping[str, Any]],
            interval: float, end: float, twice_due: Sequence[float]) -> list[dict[str, Any]]:
    if not runs:
        return []
    by_slot = {r["slot"]: r for r in runs}
    lo, hi = min(by_slot), max(by_slot)
    any_run = runs[0]
    phase = any_run["due"] - any_run["slot"] * interval
    missing_due = [phase + s * interval for s in range(lo, hi + 1) if s not in by_slot]
    out = []
    for i, f in enumerate(faults):
        span_end = faults[i + 1]["start"] if i + 1 < len(faults) else end
        missed = sum(1 for d in missing_due if f["start"] <= d < span_end)
        twice = sum(1 for d in twice_due if f["start"] <= d < span_end)
        window = f.get("window_ms")
        allowed = None if window is None else math.ceil(window / interval) + 1
        out.append({"fault": i, "kind": f["kind"], "at": f["start"], "missed": missed,
                    "allowed": allowed, "over": allowed is not None and missed > allowed,
                    "twice": twice})
    return out


def _full_stops(runs: Sequence[Mapping[str, Any]],
                faults: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in faults:
        if not f["kind"].startswith("full-stop"):
            continue
        # Up to the restart: a leaving manager may still finish (and record) runs in flight.
        before = _level_before(runs, f["end"])
        first = next((r for r in runs if r["start"] >= f["end"]), None)
        if before is None or first is None:
            continue
        lost = before - first["count"]
        allowed = 1 if f["kind"] == "full-stop-kill" else 0
        out.append({"kind": f["kind"], "at": f["start"], "before": before,
                    "after": first["count"], "lost": lost, "bad": lost > allowed})
    return out


def _committed_lost(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out, level = [], -1
    for r in sorted(runs, key=lambda r: (r["slot"], r["start"])):
        if r["count"] < level:
            out.append({"at": r["start"], "slot": r["slot"], "from": level, "to": r["count"],
                        "node": r["node"]})
        level = max(level, r["count"])
    return out


def _minority_runs(runs: Sequence[Mapping[str, Any]], faults: Sequence[Mapping[str, Any]],
                   voters: Sequence[str]) -> list[dict[str, Any]]:
    need = len(voters) // 2 + 1
    out = []
    for index, f in enumerate(faults):
        if f.get("cut") is None or f.get("up") is None:
            continue
        for side in f.get("sides") or []:
            if sum(1 for n in side if n in voters) >= need:
                continue
            mine = [r for r in runs if f["cut"] <= r["start"] < f["up"] and r["node"] in side]
            out.append({"fault": index, "kind": f["kind"], "at": f["cut"], "side": list(side),
                        "runs": len(mine), "allowed": RESERVED_PER_TASK,
                        "over": len(mine) > RESERVED_PER_TASK})
    return out


def analyse(ledger: Sequence[Mapping[str, Any]], faults: Sequence[Mapping[str, Any]], *,
            interval: float, late_ms: float, heal_max_ms: float, end: float,
            deaths: Sequence[Mapping[str, Any]] = (),
            rss: Mapping[str, Sequence[float]] | None = None,
            voters: Sequence[str] = ()) -> dict[str, Any]:
    """The report of one run (see the module docstring for every rule). ``voters``: quorum
    mode's voters (adds its checks to the report); empty: the default mode."""
    runs = sorted((r for r in ledger if r["start"] <= end), key=lambda r: r["start"])
    windows = _partition_windows(faults, heal_max_ms)
    slots: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in runs:
        slots[r["slot"]].append(r)
    twice = [s for s, rs in slots.items() if len(rs) > 1]
    twice_part = [s for s in twice if any(_inside(r["start"], windows) for r in slots[s])]
    lateness = [r["start"] - r["due"] for r in runs]
    late = [x for x in lateness if x > late_ms]
    heals = _heals(runs, faults, heal_max_ms, late_ms)
    heal_times = [h["heal_ms"] for h in heals if h["heal_ms"] is not None]
    twice_connected = sorted(set(twice) - set(twice_part))
    missed = _missed(runs, faults, interval, end, [slots[s][0]["due"] for s in twice_connected])
    quorum: dict[str, Any] = {}
    if voters:
        quorum = {"voters": list(voters), "committed_lost": _committed_lost(runs),
                  "minority": _minority_runs(runs, faults, voters)}
    return {
        **quorum,
        "runs": len(runs),
        "slots": len(slots),
        "twice_connected": twice_connected,
        "twice_partitioned": sorted(twice_part),
        "late_ms": late_ms,
        "late": len(late),
        "lateness_ms": {"median": statistics.median(lateness) if lateness else None,
                        "p99": _pct(lateness, 0.99) if lateness else None,
                        "max": max(lateness, default=None)},
        "regressions": _regressions(runs, windows, faults),
        "heals": heals,
        "heal_max_ms": heal_max_ms,
        "heal_times_ms": {"median": statistics.median(heal_times) if heal_times else None,
                          "max": max(heal_times, default=None)},
        "unhealed": sum(1 for h in heals if h["heal_ms"] is None),
        "missed": missed,
        "full_stops": _full_stops(runs, faults),
        "deaths": list(deaths),
        "rss_mb": {n: list(v) for n, v in (rss or {}).items()},
        "faults": len(faults),
    }


def violations(report: Mapping[str, Any], enforced: Iterable[str]) -> list[str]:
    """The enforced invariants this report breaks, one line each."""
    out = []
    on = set(enforced)
    if "twice" in on and report["twice_connected"]:
        out.append(f"twice: {len(report['twice_connected'])} slots ran twice while connected")
    if "late" in on and report["late"]:
        out.append(f"late: {report['late']} runs started > {report['late_ms']:g} ms late")
    bad = [h for h in report["heals"] if h["bad"]]
    if "heal-loss" in on and bad:
        out.append(f"heal-loss: {len(bad)} heals ended below the pre-split count or more "
                   "than one update below the most advanced side")
    slow = [h for h in report["heals"]
            if h["heal_ms"] is not None and h["heal_ms"] > report["heal_max_ms"]]
    if "heal-time" in on and slow:
        out.append(f"heal-time: {len(slow)} heals took > {report['heal_max_ms']:g} ms "
                   f"(max {max(h['heal_ms'] for h in slow):.0f})")
    if "unhealed" in on and report["unhealed"]:
        out.append(f"unhealed: {report['unhealed']} splits never healed")
    if "dead" in on and report["deaths"]:
        out.append(f"dead: {len(report['deaths'])} nodes died on their own")
    if "full-stop" in on and any(f["bad"] for f in report["full_stops"]):
        out.append("full-stop: " + ", ".join(f"{f['kind']} lost {f['lost']}"
                                             for f in report["full_stops"] if f["bad"]))
    over = [m for m in report["missed"] if m["over"] and m["kind"] == "kill-manager"]
    if "kill-idle" in on and over:
        out.append(f"kill-idle: {len(over)} manager kills idled the task past the window")
    if "voters" not in report:
        return out
    both = len(report["twice_connected"]) + len(report["twice_partitioned"])
    if "twice-any" in on and both:
        out.append(f"twice-any: {both} slots ran twice")
    if "regress-any" in on and report["regressions"]:
        out.append(f"regress-any: {len(report['regressions'])} state regressions")
    if "committed-lost" in on and report["committed_lost"]:
        out.append(f"committed-lost: {len(report['committed_lost'])} runs received less than "
                   "an earlier slot's run")
    busy = [m for m in report["minority"] if m["over"]]
    if "minority-idle" in on and busy:
        out.append(f"minority-idle: {len(busy)} minority sides started runs after the cut "
                   f"(most: {max(m['runs'] for m in busy)})")
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def render(report: Mapping[str, Any], t0: float) -> str:
    """The report as text tables (times relative to ``t0``, wall ms)."""
    r = report
    heals = r["heals"]
    bad = [h for h in heals if h["bad"]]
    lost = [h["below_best"] for h in heals if h.get("below_best") is not None]
    over = [m for m in r["missed"] if m["over"]]
    regs = r["regressions"]
    lat = r["lateness_ms"]
    stops = ", ".join(f"{f['kind']}: {f['lost']} ({f['before']} -> {f['after']})"
                      for f in r["full_stops"])
    lines = [
        "| measure | value |", "|---|---|",
        f"| runs / distinct slots | {r['runs']} / {r['slots']} |",
        f"| slots run twice: connected / partitioned | {len(r['twice_connected'])} / "
        f"{len(r['twice_partitioned'])} |",
        f"| state regressions (connected / partitioned), largest drop | "
        f"{sum(not x['partitioned'] for x in regs)} / {sum(x['partitioned'] for x in regs)}, "
        f"{max((x['from'] - x['to'] for x in regs), default=0)} |",
        f"| heals: total / bad (below pre-split or > 1 below best side) | {len(heals)} / "
        f"{len(bad)} |",
        f"| updates lost at heals vs the best side: max / total | {max(lost, default=0)} / "
        f"{sum(lost)} |",
        f"| late runs (> {r['late_ms']:g} ms after due) | {r['late']} |",
        f"| lateness ms: median / p99 / max | {_ms(lat['median'])} / {_ms(lat['p99'])} / "
        f"{_ms(lat['max'])} |",
        f"| heal ms (links up -> one agreed manager): median / max | "
        f"{_ms(r['heal_times_ms']['median'])} / {_ms(r['heal_times_ms']['max'])} |",
        f"| splits never healed | {r['unhealed']} |",
        f"| faults with more missed slots than their failover window | {len(over)} of "
        f"{sum(m['allowed'] is not None for m in r['missed'])} |",
        f"| full stops: updates lost (before -> after) | {stops or '-'} |",
        f"| nodes dead on their own | {len(r['deaths'])} |",
    ]
    if "voters" in r:
        minority = r["minority"]
        lines += [
            f"| quorum mode: voters | {', '.join(v.split('@')[0] for v in r['voters'])} |",
            f"| quorum: slots run twice in any period | "
            f"{len(r['twice_connected']) + len(r['twice_partitioned'])} |",
            f"| quorum: committed updates lost | {len(r['committed_lost'])} |",
            f"| quorum: minority sides / runs they started after the cut (max per side, "
            f"allowed {RESERVED_PER_TASK}) | {len(minority)} / "
            f"{sum(m['runs'] for m in minority)} (max "
            f"{max((m['runs'] for m in minority), default=0)}) |",
        ]
    lines += ["", "| t s | fault | nodes | missed / allowed | twice (connected) | heal ms | pre "
              "| side tops | after | winner | dropped |",
              "|--:|---|---|--:|--:|--:|--:|---|--:|--:|--:|"]
    nodes = [",".join(n.split("@")[0] for n in f.get("nodes", []))
             for f in r.get("faults_log", [])]
    by_fault = {h["fault"]: h for h in heals}
    for m in r["missed"]:
        allowed = "-" if m["allowed"] is None else str(m["allowed"])
        h = by_fault.get(m["fault"])
        cells = ["-"] * 6
        if h is not None:
            cells = [_ms(h["heal_ms"]), str(h["pre"]), "/".join(map(str, h["tops"])),
                     str(h["after"]), "none" if h["winner"] is None else str(h["winner"]),
                     "-" if h["dropped"] is None else str(h["dropped"])]
            if h["bad"]:
                cells[3] += " BAD"
        who = nodes[m["fault"]] if m["fault"] < len(nodes) else "-"
        lines.append(f"| {(m['at'] - t0) / 1000:.1f} | {m['kind']} | {who} | {m['missed']} / "
                     f"{allowed}{' OVER' if m['over'] else ''} | {m['twice']} | "
                     + " | ".join(cells) + " |")
    if heals:
        lines.append("side tops: side 0 is the nodes not cut off, then the cut-off (or moved) "
                     "nodes in the order listed; winner: the side within one update of after")
    if r["rss_mb"]:
        lines += ["", "| node | RSS MB first -> last | growth MB |", "|---|---|--:|"]
        for node, values in sorted(r["rss_mb"].items()):
            if values:
                lines.append(f"| {node} | {values[0]:.0f} -> {values[-1]:.0f} | "
                             f"{values[-1] - values[0]:+.0f} |")
    for d in r["deaths"]:
        lines.append(f"dead on its own: {d['node']} at {(d['t'] - t0) / 1000:.1f}s "
                     f"(exit {d['code']})")
    return "\n".join(lines)
