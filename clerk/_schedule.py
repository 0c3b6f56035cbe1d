"""The manager's schedule: a pure state machine over the task table (no I/O, time injected).

**Grid.** Run ``k`` of a task is due at wall time ``phase + k * interval`` (milliseconds since
the epoch), where ``phase`` is derived from the task name, so every node computes the same grid
and tasks with one interval do not all fire together. A new manager continues the grid without
asking anyone.

**One run at a time.** A slot that comes while the previous run is still in flight is
*skipped* and counted, never overlapped. Each run gets a run id and a deadline
(``timeout`` + a transit grace); past it the manager records a timeout even if the node never
answers (a node that dies mid-run is a timeout, not a hang). A worker node's disconnect fails
its runs at once.

**The table** (``table()``) is what the manager replicates to every member with its heartbeats
and hands over when it leaves: per task the state, whether a state exists, the last slot
dispatched and finished, the run in flight, counters and the last run. From it a new manager
continues:

* after a graceful hand-over, with the very next slot (nothing missed, nothing doubled) and
  the run in flight adopted (its result comes to the new manager);
* after a crash, with the first slot due after it took over: a slot that fell due while no
  manager was known may or may not have been dispatched by the dead one, so it is skipped
  rather than risked twice (the guarantee: at most the slots inside the failover window).

``init(args)`` runs only when no node holds a state for the task (the EXECUTE carries the
args and ``init=True``).

**Definitions change** (rolling deploys, see :mod:`clerk._deploy`): :meth:`Scheduler.update_defs`
adds a task some live member has loaded, applies changed parameters from the next slot of the
new grid, and stops a task no live member has any more (``gone_since`` in status) until one
loads it again. Records of tasks this node has no definition for are kept (and replicated) so
their state survives until a definition comes back.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clerk._tasks import TaskDef

__all__ = ["Dispatch", "Finished", "Scheduler", "TaskRecord", "pack_table", "phase_ms",
           "unpack_table"]

#: Extra time the manager waits past a run's timeout for the node's own timeout report.
TRANSIT_GRACE_MS = 1000
OUTCOMES = ("ok", "error", "timeout")


#: All tasks' states together, as they travel in the packed table (JSON text escaped into a
#: string), may take this much of the one heartbeat (1 MiB) that carries the whole table; the
#: rest is for the table's rows and the member list. A result whose state would go over is an
#: error naming the task (the state is kept): a table too big to send would stop the heartbeats
#: themselves, and every follower would call an election every 0.7 s.
STATES_BUDGET_BYTES = 512 * 1024
#: The error text kept in the table (and shown by status): its tail, where the exception is.
#: The whole remote traceback is in the manager's log.
ERROR_KEEP_CHARS = 1000

#: Chunk size of a packed table: under the codec's longest string (64 Ki characters).
PACK_CHUNK = 60_000


def pack_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The table as it travels in heartbeats: its JSON text in a few ASCII strings.

    The codec checks every item of a message's JSON (types, depth, Unicode), which for a table
    of 1000 tasks is ~25k items per heartbeat on the manager and again on every follower: the
    largest cost of a big cluster. A few long strings cost next to nothing to check, and a
    follower parses the table only when it needs it (a takeover, a status request).
    """
    text = json.dumps(table, separators=(",", ":"), allow_nan=False)  # ASCII: chars == bytes
    return {"packed": 1,
            "chunks": [text[i:i + PACK_CHUNK] for i in range(0, len(text), PACK_CHUNK)]}


def unpack_table(raw: Any) -> Any:
    """The table from :func:`pack_table` (or an unpacked one as is); None if malformed."""
    if isinstance(raw, Mapping) and raw.get("packed") == 1:
        chunks = raw.get("chunks")
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            return None
        try:
            return json.loads("".join(chunks))
        except (ValueError, RecursionError):
            return None
    return raw


def _packed_size(state: Any) -> int:
    """What a state adds to the packed table: its JSON, escaped again into a string."""
    return len(json.dumps(json.dumps(state, separators=(",", ":"))))


def phase_ms(name: str, interval_ms: int) -> int:
    """The task's offset on its grid: stable across nodes, spread across the interval."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % interval_ms


@dataclass
class TaskRecord:
    """One row of the replicated task table."""

    state: Any = None
    has_state: bool = False
    slot: int = -1  # last slot finished (any outcome)
    dispatched: int = -1  # last slot sent to a node
    running: dict[str, Any] | None = None  # run id, slot, node, deadline (wall ms), started
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("ok", "error", "timeout", "skipped", "refused"), 0))
    last: dict[str, Any] | None = None
    runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "has_state": self.has_state, "slot": self.slot,
                "dispatched": self.dispatched, "running": self.running,
                "counts": dict(self.counts), "last": self.last, "runs": self.runs}

    @classmethod
    def from_json(cls, raw: Any) -> TaskRecord | None:
        """Parse a replicated row; None if it is not one (never trust the wire blindly)."""
        if not isinstance(raw, dict):
            return None
        try:
            rec = cls(state=raw.get("state"), has_state=bool(raw.get("has_state")),
                      slot=int(raw.get("slot", -1)), dispatched=int(raw.get("dispatched", -1)),
                      runs=int(raw.get("runs", 0)))
            running = raw.get("running")
            rec.running = running if isinstance(running, dict) and "run" in running else None
            counts = raw.get("counts")
            if isinstance(counts, dict):
                for key in rec.counts:
                    value = counts.get(key, 0)
                    rec.counts[key] = value if type(value) is int else 0
            last = raw.get("last")
            rec.last = last if isinstance(last, dict) else None
        except (TypeError, ValueError):
            return None
        return rec

    def progress(self) -> tuple[int, int]:
        return (max(self.slot, self.dispatched), self.runs)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send EXECUTE for ``task`` slot ``slot`` to ``node``."""

    task: str
    run_id: str
    slot: int
    node: str
    state: Any
    init: bool
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Finished:
    """A run ended (for logs): outcome ok / error / timeout / refused."""

    task: str
    run_id: str
    slot: int
    node: str
    outcome: str
    duration_ms: float
    error: str
    #: On the manager, from sending EXECUTE to applying the RESULT (dispatch overhead + run).
    round_trip_ms: float = 0.0


NodesFilter = Callable[[TaskDef, list[str]], list[str]]


class Scheduler:
    """The task table and its schedule; active only on the manager."""

    def __init__(self, defs: Sequence[TaskDef], rng: random.Random,
                 nodes_filter: NodesFilter | None = None) -> None:
        self.defs = {d.name: d for d in defs}
        # phase_ms hashes the name: computed once, not for every task at every tick.
        self._phase = {d.name: phase_ms(d.name, d.interval) for d in defs
                       if d.interval is not None}
        self.rng = rng
        self.nodes_filter = nodes_filter or (lambda d, members: members)
        self.records: dict[str, TaskRecord] = {name: TaskRecord() for name in self.defs}
        self.next_slot: dict[str, int] = {}
        # What is due next, so a tick and next_deadline cost O(what is due), not O(tasks):
        # (due ms of next_slot, task) for enabled grid tasks, with stale entries skipped when
        # they surface; and the deadline (wall ms) of each run in flight.
        self._heap: list[tuple[float, str]] = []
        self._inflight: dict[str, float] = {}
        self._state_bytes: dict[str, int] = {}
        self._states_total = 0
        self.instant_pending: set[str] = set()
        self.gone: dict[str, float] = {}  # task -> wall time (s) since no live member has it
        self.active = False
        self._run_seq = 0
        self._run_prefix = f"{rng.getrandbits(32):08x}"
        self.node_runs: dict[str, int] = {}

    # --- activation ---------------------------------------------------------------------------

    def load(self, table: Any) -> None:
        """Adopt a replicated table (as a follower, or before taking over)."""
        table = unpack_table(table)
        if not isinstance(table, Mapping):
            return
        tasks = table.get("tasks")
        if isinstance(tasks, Mapping):
            for name, raw in tasks.items():
                rec = TaskRecord.from_json(raw)
                if rec is not None and isinstance(name, str):
                    self.records[name] = rec  # kept even without a definition (see above)
        runs = table.get("node_runs")
        if isinstance(runs, Mapping):
            self.node_runs = {k: v for k, v in runs.items() if type(v) is int}

    def merge(self, table: Any, wall: float | None = None) -> bool:
        """Merge another manager's table (partition healed): per task keep the one further
        along. True if anything changed. With ``wall``, a record claiming a slot beyond the
        current one is refused: no real manager can have run the future, and a forged table
        must not push a task's next slot out of reach."""
        table = unpack_table(table)
        changed = False
        if not isinstance(table, Mapping) or not isinstance(table.get("tasks"), Mapping):
            return False
        for name, raw in table["tasks"].items():
            rec = TaskRecord.from_json(raw)
            mine = self.records.get(name)
            if rec is None or mine is None or name not in self.defs:
                continue
            d = self.defs[name]
            if wall is not None and d.interval is not None and (
                max(rec.slot, rec.dispatched) > self._slot_at(d, wall * 1000) + 1
            ):
                continue
            if rec.progress() > mine.progress() and mine.running is None:
                rec.running = None  # its run belongs to the other manager's term
                self.records[name] = rec
                size = _packed_size(rec.state) if rec.has_state else 0
                self._states_total += size - self._state_bytes.get(name, 0)
                self._state_bytes[name] = size
                self.next_slot[name] = max(self.next_slot.get(name, 0), rec.dispatched + 1,
                                           rec.slot + 1)
                self._push(name)
                changed = True
        return changed

    def activate(self, wall: float, graceful: bool) -> None:
        """Become the scheduler: decide each task's next slot (see the module docstring)."""
        self.active = True
        wall_ms = wall * 1000
        for name, d in self.defs.items():
            rec = self.records[name]
            if d.interval is None:
                self.next_slot[name] = 0
            else:
                done = max(rec.slot, rec.dispatched)
                if rec.running is not None:
                    done = max(done, int(rec.running.get("slot", -1)))
                current = self._slot_at(d, wall_ms)
                if graceful:
                    self.next_slot[name] = done + 1 if done >= 0 else current + 1
                else:
                    self.next_slot[name] = max(done + 1, current + 1)
                    if done >= 0 and current > done:
                        # The failover window: due while no manager was known, not run.
                        rec.counts["skipped"] += current - done
            fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
            if d.instant and d.enabled and fresh and name not in self.gone:
                self.instant_pending.add(name)
        self._inflight = {name: float(rec.running["deadline"])
                          for name, rec in self.records.items() if rec.running is not None}
        self._state_bytes = {name: _packed_size(rec.state)
                             for name, rec in self.records.items() if rec.has_state}
        self._states_total = sum(self._state_bytes.values())
        self._heap = []
        for name in self.defs:
            self._push(name)

    def update_defs(self, defs: Mapping[str, TaskDef], wall: float) -> list[str]:
        """Adopt the definitions the live members announce (see the module docstring).
        Returns what changed, as sentences for the log."""
        notes: list[str] = []
        wall_ms = wall * 1000
        for name, d in defs.items():
            old = self.defs.get(name)
            back = name in self.gone
            if old == d and not back:
                continue
            self.defs[name] = d
            if d.interval is not None:
                self._phase[name] = phase_ms(name, d.interval)
            rec = self.records.setdefault(name, TaskRecord())
            self.gone.pop(name, None)
            if old is None:
                notes.append(f"task={name} is loaded by a live member: scheduling it")
            elif back:
                notes.append(f"task={name} is loaded by a live member again: scheduling it")
            else:
                changes = ", ".join(f"{k} {v} -> {d.to_json()[k]}"
                                    for k, v in old.to_json().items() if d.to_json()[k] != v)
                notes.append(f"task={name} definition changed ({changes})")
            if not self.active:
                continue
            if d.interval is None:
                self.next_slot[name] = 0
            else:
                current = self._slot_at(d, wall_ms)
                if old is not None and old.interval != d.interval:
                    # A new grid: its slot numbers are not the old one's. Carry on from the
                    # next slot of the new grid; the old ones count as done.
                    rec.slot = rec.dispatched = current
                self.next_slot[name] = max(current, rec.slot, rec.dispatched) + 1
            fresh = rec.runs == 0 and rec.slot < 0 and rec.dispatched < 0 and rec.running is None
            if d.instant and d.enabled and fresh and old is None:
                self.instant_pending.add(name)
            self._push(name)
        for name in self.defs:
            if name not in defs and name not in self.gone:
                self.gone[name] = wall
                self.instant_pending.discard(name)
                notes.append(f"task={name} is no longer loaded by any live member: stopped")
        return notes

    def deactivate(self) -> None:
        self.active = False
        self.instant_pending.clear()
        self._heap = []
        self._inflight = {}

    def _push(self, name: str) -> None:
        d = self.defs[name]
        if self.active and d.enabled and d.interval is not None and name not in self.gone:
            heapq.heappush(self._heap, (self.due_ms(name, self.next_slot[name]), name))

    def _fresh(self, due: float, name: str) -> bool:
        return due == self.due_ms(name, self.next_slot[name])

    # --- the grid -----------------------------------------------------------------------------

    def _slot_at(self, d: TaskDef, wall_ms: float) -> int:
        assert d.interval is not None
        return math.floor((wall_ms - self._phase[d.name]) / d.interval)

    def due_ms(self, name: str, slot: int) -> float:
        d = self.defs[name]
        assert d.interval is not None
        return self._phase[name] + slot * d.interval

    def next_deadline(self, wall: float) -> float:
        """Wall time (s) of the next thing to do; ``inf`` when inactive."""
        if not self.active:
            return math.inf
        if self.instant_pending:
            return wall
        best = min(self._inflight.values(), default=math.inf) / 1000
        while self._heap:
            due, name = self._heap[0]
            if self._fresh(due, name):
                return min(best, due / 1000)
            heapq.heappop(self._heap)
        return best

    # --- running ------------------------------------------------------------------------------

    def tick(
        self, wall: float, members: Mapping[str, Iterable[str]]
    ) -> tuple[list[Dispatch], list[Finished]]:
        """Expire overdue runs and dispatch due slots. ``members``: live node -> its tasks."""
        if not self.active:
            return [], []
        wall_ms = wall * 1000
        finished = self._expire(wall_ms)
        dispatches: list[Dispatch] = []
        due = [n for n in self.defs if n in self.instant_pending] if self.instant_pending else []
        while self._heap and self._heap[0][0] <= wall_ms:
            when, name = heapq.heappop(self._heap)
            if self._fresh(when, name) and name not in due:
                due.append(name)
        for name in due:
            dispatches += self._tick_task(name, wall_ms, members, finished)
            self._push(name)
        return dispatches, finished

    def _tick_task(self, name: str, wall_ms: float, members: Mapping[str, Iterable[str]],
                   finished: list[Finished]) -> list[Dispatch]:
        d = self.defs[name]
        rec = self.records[name]
        dispatches: list[Dispatch] = []
        if not d.enabled or name in self.gone:
            return dispatches
        if name in self.instant_pending:
            self.instant_pending.discard(name)
            slot = self._slot_at(d, wall_ms) if d.interval is not None else 0
            self.next_slot[name] = slot + 1
            return self._dispatch(d, rec, slot, wall_ms, members, finished)
        if d.interval is not None:
            current = self._slot_at(d, wall_ms)
            nxt = self.next_slot[name]
            if current < nxt:
                return dispatches
            # Slots before ``current`` were missed (the loop stalled): count them skipped.
            missed = current - nxt
            if missed:
                rec.counts["skipped"] += missed
            self.next_slot[name] = current + 1
            if rec.running is not None:
                rec.counts["skipped"] += 1  # in flight: never overlap
                return dispatches
            dispatches += self._dispatch(d, rec, current, wall_ms, members, finished)
        return dispatches

    def _dispatch(self, d: TaskDef, rec: TaskRecord, slot: int, wall_ms: float,
                  members: Mapping[str, Iterable[str]], finished: list[Finished]) -> list[Dispatch]:
        eligible = sorted(n for n, tasks in members.items() if d.name in tasks)
        outcome = "skipped"
        try:
            allowed = [n for n in self.nodes_filter(d, list(eligible)) if n in eligible]
        except Exception as exc:  # user code in nodes(): an error of this run
            allowed = []
            outcome = "error"
            error = f"nodes() raised {type(exc).__name__}: {exc}"
        else:
            error = "no eligible node (none alive has the task, or nodes() returned none)"
        if not allowed:
            rec.counts[outcome] += 1
            # Done with: a successor must neither rerun nor count it again.
            rec.slot = max(rec.slot, slot)
            rec.last = {"node": None, "slot": slot, "duration_ms": 0.0, "outcome": outcome,
                        "error": error, "finished": wall_ms}
            finished.append(Finished(d.name, "", slot, "", outcome, 0.0, error))
            return []
        node = self.rng.choice(sorted(allowed))
        self._run_seq += 1
        run_id = f"{self._run_prefix}-{self._run_seq}"
        rec.dispatched = slot
        rec.running = {"run": run_id, "slot": slot, "node": node, "started": wall_ms,
                       "deadline": wall_ms + d.timeout + TRANSIT_GRACE_MS}
        self._inflight[d.name] = rec.running["deadline"]
        init = not rec.has_state
        return [Dispatch(d.name, run_id, slot, node, d.args if init else rec.state, init,
                         d.timeout)]

    def _expire(self, wall_ms: float) -> list[Finished]:
        out: list[Finished] = []
        for name in [n for n, deadline in self._inflight.items() if wall_ms >= deadline]:
            rec = self.records[name]
            run = rec.running
            if run is not None:
                out.append(self._finish(name, rec, "timeout", None, wall_ms - run["started"],
                                        "no result from the node before the deadline", wall_ms))
        return out

    def fail_node(self, node: str, wall: float) -> list[Finished]:
        """The node died (disconnect or dropped): its runs end as timeouts now."""
        wall_ms = wall * 1000
        return [
            self._finish(name, rec, "timeout", None, wall_ms - rec.running["started"],
                         f"node {node} was lost during the run", wall_ms)
            for name, rec in self.records.items()
            if rec.running is not None and rec.running["node"] == node
        ]

    def expects(self, task: str, run_id: str, node: str) -> bool:
        """Is this the run of ``task`` in flight, sent to ``node``?"""
        rec = self.records.get(task)
        run = rec.running if rec is not None else None
        return run is not None and run["run"] == run_id and run["node"] == node

    def on_result(self, task: str, run_id: str, node: str, outcome: str, state: Any,
                  duration_ms: float, error: str, wall: float) -> Finished | None:
        """Apply a node's RESULT; None if it is not for a run in flight (late or unknown) or
        does not come from the node the run was sent to."""
        if not self.expects(task, run_id, node):
            return None
        rec = self.records[task]
        if outcome not in (*OUTCOMES, "refused"):
            outcome, error = "error", f"unknown outcome {outcome!r}: {error}"
        return self._finish(task, rec, outcome, state, duration_ms, error, wall * 1000)

    def _finish(self, name: str, rec: TaskRecord, outcome: str, state: Any,
                duration_ms: float, error: str, wall_ms: float) -> Finished:
        run = rec.running
        assert run is not None
        rec.running = None
        self._inflight.pop(name, None)
        rec.slot = max(rec.slot, int(run["slot"]))
        rec.runs += 1
        if outcome == "ok":
            size = _packed_size(state)
            others = self._states_total - self._state_bytes.get(name, 0)
            if others + size > STATES_BUDGET_BYTES:
                outcome = "error"
                error = (f"task {name!r} returned a state of {size} bytes (as replicated); with "
                         f"the other tasks' states ({others} bytes) that is over the "
                         f"{STATES_BUDGET_BYTES}-byte budget of the replicated table: the "
                         "previous state is kept")
            else:
                rec.state = state
                rec.has_state = True
                self._state_bytes[name] = size
                self._states_total = others + size
        rec.counts[outcome] = rec.counts.get(outcome, 0) + 1
        node = str(run["node"])
        if outcome in ("ok", "error"):
            self.node_runs[node] = self.node_runs.get(node, 0) + 1
        round_trip = max(0.0, wall_ms - float(run["started"]))
        kept = error if len(error) <= ERROR_KEEP_CHARS else "..." + error[-ERROR_KEEP_CHARS:]
        rec.last = {"node": node, "slot": run["slot"], "duration_ms": round(duration_ms, 3),
                    "outcome": outcome, "error": kept, "finished": wall_ms,
                    "round_trip_ms": round(round_trip, 3)}
        return Finished(name, str(run["run"]), int(run["slot"]), node, outcome, duration_ms,
                        error, round_trip)

    # --- views --------------------------------------------------------------------------------

    def table(self) -> dict[str, Any]:
        return {"tasks": {name: rec.to_json() for name, rec in self.records.items()},
                "node_runs": dict(self.node_runs)}

    def status(self, wall: float) -> list[dict[str, Any]]:
        out = []
        for name, d in self.defs.items():
            rec = self.records[name]
            nxt = None
            if self.active and d.enabled and d.interval is not None and name not in self.gone:
                nxt = self.due_ms(name, self.next_slot[name]) / 1000
            out.append({
                "name": name, "target": d.target, "interval_ms": d.interval,
                "timeout_ms": d.timeout, "enabled": d.enabled, "instant": d.instant,
                "runs": dict(rec.counts), "last_run": rec.last, "last_slot": rec.slot,
                "running": rec.running, "next_due": nxt, "has_state": rec.has_state,
                "gone_since": self.gone.get(name),
            })
        return out
