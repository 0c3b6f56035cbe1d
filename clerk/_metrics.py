"""Prometheus metrics of a node: ``--metrics-port PORT`` / ``metrics_port`` serves the text
format at ``http://HOST:PORT/metrics`` (HOST: the node's own host, where its mailbox binds).

Needs the optional extra ``pip install "clerk-cluster[metrics]"`` (``prometheus_client``); the
flag without it is a configuration error (exit 2) naming the extra.

**Where the numbers come from.** The agent's loop only bumps plain counters
(:class:`NodeMetrics`); the HTTP server runs in ``prometheus_client``'s own thread and builds
the exposition at scrape time from copies of them and from this node's replica of the task
table, so a scrape never blocks the loop and the loop never waits for a scrape.

* Task metrics from the table (``clerk_task_runs_total``, ``clerk_task_skipped_slots_total``,
  ``clerk_task_state_bytes``, ``clerk_task_paused``) are the cluster's: every node reports the
  same values from its replica, and they continue across failovers (query them with
  ``max by (task, ...)``).
* The histograms (``clerk_task_start_lateness_seconds``, ``clerk_task_duration_seconds``) are
  observed by the manager as results come in (lateness: from the slot's due time to the
  dispatch), so they are per node: sum them over nodes.
* ``clerk_node_*`` are this node's own. ``clerk_node_loop_turn_max_seconds`` is the longest
  *busy turn* of the node's loop since it started: the time between two of its polls, in
  which it read no socket and ran no timer (:class:`LoopTurns`); ``..._recent_max_seconds``
  the same since the previous scrape (each scrape starts a new window).
"""

from __future__ import annotations

import bisect
import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clerk._errors import ConfigError

__all__ = ["DURATION_BUCKETS", "LATENESS_BUCKETS", "LoopTurns", "MetricsServer", "NodeMetrics",
           "check_available"]

# Few buckets: a scrape's cost is prometheus_client's per-sample formatting, and each task has
# two histograms of (buckets + 3) samples (tools/bench_ops.py: the scrape of 1000 tasks).
#: Start lateness buckets (s): a dispatch costs a few ms; a second means something is wrong.
LATENESS_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)
#: Run duration buckets (s): from a no-op run to a five-minute job.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0)
EXTRA_HINT = 'pip install "clerk-cluster[metrics]"'


def check_available(source: str, port: int) -> None:
    """ConfigError (exit 2) if prometheus_client cannot be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(source, "metrics_port", port,
                          f"needs prometheus_client, which is not installed: {EXTRA_HINT}"
                          ) from None


@dataclass
class Histogram:
    """Cumulative-free bucket counts (the exposition makes them cumulative)."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # one copy: consistent under the loop's updates
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip([*self.bounds, math.inf], counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == math.inf else repr(bound), acc))
        return out


class LoopTurns:
    """The agent loop's longest busy turn (s): the longest it went between two polls (its
    timers, tick, replication, mailbox and flush), in three windows: since the start
    (``longest``), since the last status read (:meth:`take_status`) and since the last scrape
    (:meth:`take_scrape`). Cheap per turn: the loop calls :meth:`note` only for a turn longer
    than ``floor`` (the shorter of the two open windows' maxima), so a turn costs a compare.

    A scrape runs in the metrics server's thread: a turn noted while it resets its window may
    be lost to that window (one turn's value, at most; the GIL keeps each field whole)."""

    __slots__ = ("floor", "longest", "since_scrape", "since_status")

    def __init__(self) -> None:
        self.floor = 0.0
        self.longest = 0.0
        self.since_status = 0.0
        self.since_scrape = 0.0

    def note(self, busy: float) -> None:
        self.longest = max(self.longest, busy)
        self.since_status = max(self.since_status, busy)
        self.since_scrape = max(self.since_scrape, busy)
        self.floor = min(self.since_status, self.since_scrape)

    def take_status(self) -> float:
        """The longest turn since the previous call (a status read), starting a new window."""
        value, self.since_status, self.floor = self.since_status, 0.0, 0.0
        return value

    def take_scrape(self) -> float:
        """The longest turn since the previous scrape, starting a new window."""
        value, self.since_scrape, self.floor = self.since_scrape, 0.0, 0.0
        return value


class NodeMetrics:
    """Counters the agent's loop bumps (cheap, no locks: the scrape thread copies them)."""

    def __init__(self, tasks: Iterable[str]) -> None:
        self.elections_started = 0
        self.manager_changes = 0
        self.members_alive = 0
        self.executes_received = 0
        self.executes_refused = 0
        self.executes_stale = 0
        #: Results of this node's runs that no manager acknowledged by the end of its leave
        #: (clerk._routing.LEAVE_ACK_WAIT): their updates are lost (each one logged).
        self.results_lost_on_leave = 0
        self.turns = LoopTurns()
        self.lateness = {t: Histogram(LATENESS_BUCKETS) for t in tasks}
        self.duration = {t: Histogram(DURATION_BUCKETS) for t in self.lateness}

    def observe_run(self, task: str, duration_ms: float, lateness_ms: float | None) -> None:
        """One run (on the manager, at every result): ``Histogram.observe`` inlined, the
        task's histograms looked up once."""
        h = self.duration.get(task)
        if h is None:  # a task a member started announcing (deploys)
            self.lateness[task] = Histogram(LATENESS_BUCKETS)
            h = self.duration[task] = Histogram(DURATION_BUCKETS)
        value = duration_ms / 1000 if duration_ms > 0.0 else 0.0
        h.counts[bisect_left(h.bounds, value)] += 1
        h.total += value
        if lateness_ms is not None:
            h = self.lateness[task]
            value = lateness_ms / 1000 if lateness_ms > 0.0 else 0.0
            h.counts[bisect_left(h.bounds, value)] += 1
            h.total += value


@dataclass(frozen=True)
class Sources:
    """What a scrape reads (callables run in the server's thread)."""

    node: NodeMetrics
    is_manager: Callable[[], bool]
    term: Callable[[], int]
    bad_frames: Callable[[], Counter[str]]
    worker_restarts: Callable[[], int]
    table: Callable[[], Any]  # this node's replica of the task table (unpacked), or None
    #: Quorum mode's gauges ({"ok", "reachable", "voters"}), None in the default mode.
    quorum: Callable[[], dict[str, float] | None] = lambda: None
    #: This node's replica's refused table deltas, and of them those refused for a history
    #: patch (status: ``replica.refused``, ``replica.refused_hist``).
    replica_refused: Callable[[], tuple[int, int]] = lambda: (0, 0)
    #: This node's wall clock minus its manager's (s; clerk._clockskew), None: no estimate
    #: (the manager itself, a manager of an older build).
    clock_offset: Callable[[], float | None] = lambda: None


def _families(src: Sources) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    n = src.node
    yield GaugeMetricFamily("clerk_node_is_manager", "1 if this node is the manager",
                            value=1 if src.is_manager() else 0)
    yield GaugeMetricFamily("clerk_node_term", "the term this node follows", value=src.term())
    yield GaugeMetricFamily("clerk_node_members_alive", "live members in this node's view",
                            value=n.members_alive)
    yield GaugeMetricFamily("clerk_node_loop_turn_max_seconds", "the longest busy turn of the "
                            "node's loop since it started (no socket read, no timer run)",
                            value=n.turns.longest)
    yield GaugeMetricFamily("clerk_node_loop_turn_recent_max_seconds", "the longest busy turn "
                            "of the node's loop since the previous scrape",
                            value=n.turns.take_scrape())
    quorum = src.quorum()
    if quorum is not None:  # quorum mode only
        yield GaugeMetricFamily("clerk_quorum_ok", "1 while this node sees a quorum of voters "
                                "(a manager: its writes accepted by a majority), else 0",
                                value=quorum["ok"])
        yield GaugeMetricFamily("clerk_quorum_voters_reachable", "voters this node heard from "
                                "within manager_timeout (itself included)",
                                value=quorum["reachable"])
        yield GaugeMetricFamily("clerk_quorum_voters", "voters configured",
                                value=quorum["voters"])
    offset = src.clock_offset()
    if offset is not None:
        yield GaugeMetricFamily("clerk_node_clock_offset_seconds", "this node's wall clock "
                                "minus its manager's, from the heartbeats' stamps (errs "
                                "upwards by the smallest one-way delay; absent without one)",
                                value=offset)
    refused, refused_hist = src.replica_refused()
    for name, doc, value in (
        ("clerk_node_elections_started", "elections this node started", n.elections_started),
        ("clerk_node_manager_changes", "changes of the manager this node follows",
         n.manager_changes),
        ("clerk_node_executes_received", "EXECUTE messages received", n.executes_received),
        ("clerk_node_executes_refused", "EXECUTEs refused (node leaving, no tasks loaded)",
         n.executes_refused),
        ("clerk_node_executes_stale", "EXECUTEs refused as stale (from a lower term)",
         n.executes_stale),
        ("clerk_node_results_lost_on_leave", "results of this node's runs no manager "
         "acknowledged by the end of its leave (their updates lost; each logged)",
         n.results_lost_on_leave),
        ("clerk_node_worker_restarts", "task worker processes replaced (crash or timeout)",
         src.worker_restarts()),
        ("clerk_node_replica_refused", "table deltas this node's replica refused (a gap, "
         "another log, rows that are not JSON; each content refusal logged)", refused),
        ("clerk_node_replica_refused_hist", "of those, deltas refused for a run history patch "
         "that did not fit its row", refused_hist),
    ):
        yield CounterMetricFamily(name, doc, value=value)
    bad = CounterMetricFamily("clerk_node_bad_frames", "malformed or refused frames dropped",
                              labels=["reason"])
    for reason, count in sorted(dict(src.bad_frames()).items()):
        bad.add_metric([reason], count)
    yield bad
    for fam_name, doc, hists in (
        ("clerk_task_start_lateness_seconds", "from the slot's due time to the dispatch "
         "(observed by the manager)", n.lateness),
        ("clerk_task_duration_seconds", "run duration on the worker (observed by the manager)",
         n.duration),
    ):
        fam = HistogramMetricFamily(fam_name, doc, labels=["task"])
        for task, h in sorted(dict(hists).items()):
            fam.add_metric([task], h.buckets(), h.total)
        yield fam
    yield from _task_families(src.table())


def _task_families(table: Any) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from clerk._schedule import TaskRecord

    runs = CounterMetricFamily("clerk_task_runs", "finished runs by outcome (cluster-wide, "
                               "from the replicated table)", labels=["task", "outcome"])
    skipped = CounterMetricFamily("clerk_task_skipped_slots", "slots not run (in flight, "
                                  "no eligible node, failover window)", labels=["task"])
    size = GaugeMetricFamily("clerk_task_state_bytes", "the state's size in the replicated "
                             "table", labels=["task"])
    paused = GaugeMetricFamily("clerk_task_paused", "1 while the task is paused",
                               labels=["task"])
    from clerk._schedule import _packed_size

    tasks = table.get("tasks") if isinstance(table, dict) else None
    for name, raw in sorted((tasks or {}).items()):
        rec = TaskRecord.from_json(raw, name)
        if rec is None:
            continue
        for outcome in ("ok", "error", "timeout", "refused"):
            runs.add_metric([name, outcome], rec.counts.get(outcome, 0))
        skipped.add_metric([name], rec.counts.get("skipped", 0))
        size.add_metric([name], _packed_size(rec.state) if rec.has_state else 0)
        paused.add_metric([name], 1 if rec.paused else 0)
    yield from (runs, skipped, size, paused)


class MetricsServer:
    """``/metrics`` over HTTP in prometheus_client's thread, with a registry of its own."""

    def __init__(self, host: str, port: int, sources: Sources) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        class _Collector:
            def collect(self) -> Iterator[Any]:
                return _families(sources)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector())  # type: ignore[arg-type]
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
