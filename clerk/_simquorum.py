"""Quorum mode in the simulator: a cluster with voters and the ledger, and the invariants
its property tests and ``tools/simulate_quorum.py`` check after every event.

:class:`QuorumChecks` is a :class:`~clerk._simnet.SimNetwork` observer. After every event a
node handles it checks, from the whole history and the voters' simulated disks:

* **no slot twice**: no slot of the ledger is executed twice, on any node, ever;
* **write-ahead**: every EXECUTE left a manager only while a majority of voters' disks held a
  reservation of its slot (so a side without a majority dispatches nothing new);
* **no committed state lost**: the version a majority of voters' disks hold (the median of
  their record versions) never goes down;
* **state matches version**: on every voter's disk the ledger's counter equals its record's
  version (the ledger adds 1 per run, as the version counts runs): a result applied to a state
  it was not computed from (a late result of a run started from an older state) shows as a
  counter below its version, i.e. committed updates lost under a higher version.

:func:`random_faults` draws a seeded fault schedule (partitions of any shape, pauses of any
length, one-way cuts, crashes, restarts, loss) for the tool; :func:`apply_fault` injects one
fault of it and :func:`end_faults` stops them all (heal, no loss, every paused node resumed,
every crashed node restarted), after which the properties expect one manager.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from clerk._core import Effect, Event
from clerk._record import TaskRecord
from clerk._simnet import SimNetwork, SimNode
from clerk._simtasks import LEDGER, SimLedger

__all__ = ["FAULTS", "VOTERS", "QuorumChecks", "apply_fault", "build", "end_faults",
           "random_faults"]

VOTERS = ("n0", "n1", "n2")


def build(n: int, seed: int, offsets: list[float], delay: float, jitter: float
          ) -> tuple[SimNetwork, SimLedger]:
    """``n`` nodes ``n0..``, the first three voters and seeds, the ledger every 100 ms;
    ``offsets``: each node's wall clock error (s)."""
    world = SimLedger(interval_ms=100)
    names = [f"n{i}" for i in range(n)]
    world.offsets = dict(zip(names, offsets, strict=False))
    net = SimNetwork(seed, layer=world, voters=VOTERS, delay=delay, jitter=jitter)
    seeds = tuple(f"{x}:7400" for x in names[:3])
    for name in reversed(names):
        net.add_node(name, seeds=seeds)
    return net, world


def disk_row(node: SimNode) -> dict[str, Any] | None:
    rows = (node.disk or {}).get("rows", {})
    return rows.get(LEDGER)


def majority_version(net: SimNetwork) -> int:
    versions = []
    for v in VOTERS:
        row = disk_row(net.nodes[v])
        rec = TaskRecord.from_json(row["record"]) if row and row.get("record") else None
        versions.append(rec.version if rec is not None else -1)
    return sorted(versions, reverse=True)[len(VOTERS) // 2]


def mismatched_states(net: SimNetwork) -> list[tuple[str, Any, Any]]:
    """(voter, counter, version) of every voter disk whose ledger counter is not its version."""
    out = []
    for v in VOTERS:  # (the raw record: this runs after every event)
        row = disk_row(net.nodes[v])
        rec = row.get("record") if row else None
        if isinstance(rec, dict) and rec.get("has_state") and rec.get("state") != rec.get(
                "version"):
            out.append((v, rec.get("state"), rec.get("version")))
    return out


def reserved_by_majority(net: SimNetwork, slot: int) -> bool:
    held = 0
    for v in VOTERS:
        row = disk_row(net.nodes[v])
        if row is not None and row.get("reserved") is not None and row["reserved"] >= slot:
            held += 1
    return held > len(VOTERS) // 2


@dataclass
class QuorumChecks:
    net: SimNetwork
    world: SimLedger
    violations: list[str] = field(default_factory=list)
    runs_seen: int = 0
    dispatches_seen: int = 0
    best_version: int = -1
    mismatches: set[tuple[str, int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.net.observers.append(self)

    def __call__(self, node: SimNode, event: Event, effects: list[Effect]) -> None:
        self.check()

    def check(self) -> None:
        now = self.net.now
        runs = self.world.runs
        if len(runs) != self.runs_seen:
            slots = [r.slot for r in runs]
            if len(set(slots)) != len(slots):
                twice = sorted({s for s in slots if slots.count(s) > 1})
                self.violations.append(f"{now:.4f}: slots run twice: {twice}")
            self.runs_seen = len(runs)
        sent = self.world.dispatched
        for at, manager, term, slot in sent[self.dispatches_seen:]:
            if not reserved_by_majority(self.net, slot):
                self.violations.append(f"{at:.4f}: {manager} (term {term}) sent slot {slot} "
                                       "without a majority's reservation")
        self.dispatches_seen = len(sent)
        version = majority_version(self.net)
        if version < self.best_version:
            self.violations.append(f"{now:.4f}: committed version went back "
                                   f"{self.best_version} -> {version}")
        self.best_version = max(self.best_version, version)
        for voter, state, version in mismatched_states(self.net):
            if (voter, state, version) not in self.mismatches:
                self.mismatches.add((voter, state, version))
                self.violations.append(f"{now:.4f}: {voter}'s disk holds counter {state} at "
                                       f"version {version} (updates lost under a higher "
                                       "version)")


FAULTS = ("crash", "restart", "pause", "resume", "partition", "heal", "loss", "deaf")


def apply_fault(net: SimNetwork, names: list[str], op: str, arg: Any) -> None:
    """Inject one fault of a schedule (see :data:`FAULTS`)."""
    if op == "crash":
        net.crash(names[arg])
    elif op == "restart":
        net.restart(names[arg])
    elif op == "pause":
        net.pause(names[arg])
    elif op == "resume":
        net.resume(names[arg])
    elif op == "partition":
        groups: dict[int, list[str]] = {}
        for name, g in zip(names, arg, strict=True):
            groups.setdefault(g, []).append(name)
        net.partition(*groups.values())
    elif op == "heal":
        net.heal()
    elif op == "deaf":
        net.deafen(names[arg])
    elif op == "loss":
        net.loss = arg


def end_faults(net: SimNetwork, names: list[str]) -> None:
    """The faults stop: heal every cut, loss 0, resume every paused node and restart every
    crashed one (in ``names`` order)."""
    net.heal()
    net.loss = 0.0
    for name in names:
        node = net.nodes[name]
        if node.paused:
            net.resume(name)
        if not node.up:
            net.restart(name)


def random_faults(rng: random.Random, n: int, count: int) -> list[tuple[float, str, Any]]:
    """A schedule of ``count`` faults: (gap before it in s, fault, argument)."""
    steps: list[tuple[float, str, Any]] = []
    for _ in range(count):
        gap = rng.choice((0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 1.5, 3.0))
        op = rng.choice(FAULTS)
        arg: Any = None
        if op in ("crash", "restart", "pause", "resume", "deaf"):
            arg = rng.randrange(n)
        elif op == "partition":
            arg = tuple(rng.randrange(3) for _ in range(n))
        elif op == "loss":
            arg = rng.choice((0.0, 0.05, 0.3))
        steps.append((gap, op, arg))
    return steps
