"""The cluster agent: the node's one loop, wiring NodeCore (and the task layer) to ZeroMQ.

It runs as a supervised child process of the node (``python -m clerk.node`` or
:class:`clerk.Node`): ``run(config)`` is its entry point. Each loop turn reads the clock once,
polls the transport until the next deadline of any state machine, decodes what arrived (bad
frames are counted by reason, logged at a limited rate and dropped: they never raise out of
the loop), feeds the state machines and carries out their effects. The feeding and the effects
are :class:`clerk._agentfeed.AgentFeed`, the replies to clients
:class:`clerk._agentreplies.AgentReplies`: both mixed in here.

Signals: SIGTERM, SIGHUP or SIGINT starts a graceful leave (a manager hands over first) and the
process exits 0 once it has left; a second one exits at once. The process starts with them
blocked (``ChildSpec.hold_signals``, clerk._node.agent_spec) until its first handler is in
place (clerk._agentboot.run): one sent at any moment of its start is never the default action.

A worker pool gone for good (:mod:`clerk._executor`: its supervisor gave up) escalates as in
OTP: the agent logs an ERROR saying why, leaves the cluster as on SIGTERM (a manager hands
over; the runs it held are answered, refused or failed, not left to their deadlines; it is no
longer eligible for runs) and exits with ``EXIT_WORKERS_GONE``, which the node's supervisor
restarts like a crash (a fresh agent, a fresh pool), until its own restart intensity gives up.
A pool none of whose workers was ever ready (a worker cannot start at all) exits with
``EXIT_CANNOT_START`` instead, which the node does not retry: it exits 1 within seconds, the
pool's reason in its log, rather than start agent after agent (each try takes seconds, longer
than its restart intensity, 3 in 10 s, can count: it looped for good).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import secrets
import signal
import socket
from collections import Counter, deque
from time import perf_counter

from clerk._agentfeed import AgentFeed
from clerk._agentreplies import AgentReplies
from clerk._batch import BATCH_MARK, Coalescer
from clerk._clock import Clock, SystemClock
from clerk._clockskew import CLOCK_MARK
from clerk._config import NodeConfig
from clerk._core import LeaveRequested, NodeCore, Role, Start, Tick
from clerk._deploy import MAX_ANNOUNCE_CHARS, SEP, announce
from clerk._frames import fine_timer_slack
from clerk._messages import (
    HANDED_MARK,
    HIST_MARK,
    MERGE_MARK,
    PARTS_MARK,
    RAW_ROWS_MARK,
    TABLE_MARK,
    Message,
    Peer,
)
from clerk._metrics import MetricsServer, NodeMetrics, Sources
from clerk._portholder import EXIT_CANNOT_START, in_use
from clerk._quorumshell import QuorumShell
from clerk._runner import TaskRunner
from clerk._schedule import unpack_table
from clerk._security import keys_from_cookie, load_cookie
from clerk._statusjob import StatusJobs
from clerk._statusparts import LOOP_PART_BYTES, StatusParts
from clerk._tasksets import DIGEST_MARK
from clerk._transport import FINAL_LINGER_MS, MAX_UNPINNED_LINKS, Inbound, Transport

__all__ = ["EXIT_WORKERS_GONE", "INCARNATION_MARKS", "Agent", "poll_timeout_ms"]

log = logging.getLogger("clerk.node")
MAX_PINNED = 256  # members whose sockets are opened ahead of need and kept (a 256-node cluster)
#: The longest wait in place of a poll: a deadline under a millisecond away cannot be polled
#: for (ZeroMQ's timeout is in whole ms). The loop waits on its sockets' descriptors instead
#: (Transport.wait), so traffic that comes meanwhile ends the wait.
SUB_MS_SLEEP = 0.001
#: The longest a turn handles mailbox messages before the timers get their turn (a flood's
#: 1,000 a turn took ~1 s at load 13). Read one at a time as handled (Transport.receive), the
#: rest stays queued in ZeroMQ, in order: a tick never overtakes a message already received.
DRAIN_BUDGET_S = 0.020
#: The agent's exit code after its worker pool was gone for good (Agent.fail): abnormal, so the
#: node's supervisor starts it again (clerk._node.agent_spec).
EXIT_WORKERS_GONE = 1
#: What this build reads, announced after the incarnation's random part (see Agent.__init__).
#: BATCH_MARK stays last: a build from before the clock mark (1ff308e and older) recognises a
#: peer that reads batches by ``endswith(BATCH_MARK)``; appending CLOCK_MARK after it turned
#: batching off between every two nodes (the clean-clone CI at e4efa42:
#: test_batch_wire saw no batch) and to this build from older ones.
INCARNATION_MARKS = (TABLE_MARK + DIGEST_MARK + MERGE_MARK + HANDED_MARK + HIST_MARK
                     + PARTS_MARK + RAW_ROWS_MARK + CLOCK_MARK + BATCH_MARK)


class Agent(AgentFeed, AgentReplies):
    """One node's loop. ``Agent(config).run()`` blocks until the node has left."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        keys = None if config.insecure else keys_from_cookie(load_cookie(config.cookie_file))
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        try:
            # Quorum mode (clerk._quorumshell): a voter's register is read before the core
            # exists; an unusable voter file stops the node here, naming the file.
            self.quorum = QuorumShell(config, self._wake)
            self.transport = Transport(config.host, config.port, keys=keys)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        # The incarnation's marks announce what this node reads: a COORDINATOR's table position
        # (clerk._messages.TABLE_MARK), member lists by digest (clerk._tasksets.DIGEST_MARK),
        # MERGED (MERGE_MARK), a leaver's position (HANDED_MARK), history patches (HIST_MARK),
        # a hand-over in parts (PARTS_MARK), a table delta's rows after the body
        # (RAW_ROWS_MARK); batches; heartbeats' wall times (CLOCK_MARK, clerk._clockskew).
        self.me = Peer(config.name, config.address, secrets.token_hex(6) + INCARNATION_MARKS,
                       config.priority)
        # What a loop turn sends, by peer: flushed at the end of the turn (clerk._batch).
        self.outgoing = Coalescer()
        self._urgent = False  # a run or a result is among them (flush_urgent)
        self._ran = False  # an EXECUTE came in the message just handled (_results_now)
        self._started_wall = self.clock.wall()
        # The tasks with their parameters: the manager schedules what any live member has
        # loaded, even when it has not (clerk._deploy). Announced once the workers are ready.
        self.announcement = announce(config.tasks, self._started_wall)
        self.core = NodeCore(
            self.me,
            now=self.clock.monotonic(),
            rng=self.rng,
            seeds=config.join,
            # No tasks advertised until the workers are ready (TaskRunner._workers_ready):
            # a node must not be chosen for runs it cannot start yet.
            tasks=(),
            **self.quorum.core_kwargs(),
        )
        self.core.wall_ms = lambda: self.clock.wall() * 1000  # (clerk._clockskew)
        self.bad_frames: Counter[str] = Counter()
        self._bad_logged_at = -1e9
        self._bad_since_log = 0
        self._stop_requests = 0
        self._done = False
        self._stop_reason = ""
        self._failed = ""  # why this agent fails (fail): it leaves, then exits non-zero
        self._cannot_start = False  # ... and no worker of it was ever ready (fail)
        #: The joining or manager deadline whose mailbox was read before its tick
        #: (_read_before_electing).
        self._read_before = -math.inf
        self._members_epoch = -1
        self._inbound: Inbound | None = None
        self._loopback: deque[Message] = deque()  # messages this node sent itself
        self._looping = False
        self.metrics = NodeMetrics(t.name for t in config.tasks)
        try:
            self.tasks = TaskRunner(self)  # scheduling (as manager) and execution of tasks
        except BaseException:
            self.quorum.close()
            self.transport.close()
            self._wake_r.close()
            self._wake_w.close()
            raise
        self._metrics_server: MetricsServer | None = None
        #: Big statuses, served in parts (clerk._statusparts).
        self.status_parts = StatusParts(self.clock.monotonic, budget=LOOP_PART_BYTES)
        self.status_jobs = StatusJobs()  # whole statuses built in slices (status_step)

    # --- signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_requests += 1
        if self._stop_requests >= 2:
            log.warning("second stop signal: exiting at once")
            os._exit(0)

    def request_stop(self) -> None:
        """Ask the loop (from any thread) to leave gracefully."""
        self._stop_requests += 1
        self._wake()

    def fail(self, why: str) -> None:
        """The worker pool is gone for good (clerk._executor): leave, then exit with
        EXIT_WORKERS_GONE (see the module docstring), or EXIT_CANNOT_START if no worker of
        it was ever ready and the pool gave up because one could not be started (it exited
        by itself before its READY, or could not be spawned: the node does not retry). Workers
        killed from outside before their READY (clerk._workerpool.KILLED_FROM_OUTSIDE: the
        OOM killer, an operator) are not that: the node starts its agent again, as for a pool
        that worked. Called on the loop."""
        if self._failed:
            return
        self._failed = why
        executor = self.tasks.executor
        self._cannot_start = (executor is not None and not executor.ever_ready
                              and executor.start_gave_up)
        if self._cannot_start:
            log.error("node %s cannot start its task workers: %s; leaving the cluster and "
                      "exiting (code %d): the node stops, as starting them again would fail "
                      "the same way", self.me.name, why, EXIT_CANNOT_START)
        else:
            log.error("node %s cannot run tasks any more: %s; leaving the cluster and exiting "
                      "(code %d) so that the node starts its agent again with fresh workers",
                      self.me.name, why, EXIT_WORKERS_GONE)
        self._wake()

    def _wake(self) -> None:
        """Wake the loop up from another thread (a stop request, a voter write done)."""
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (the loop is already due to wake up) or closed
            pass

    # --- loop -------------------------------------------------------------------------------

    def run(self) -> int:
        on_main = _is_main_thread()
        # The loop's sub-ms waits for a due run end on time (clerk._frames); its own thread.
        fine_timer_slack()
        if on_main:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGHUP, self._on_signal)
            signal.set_wakeup_fd(self._wake_w.fileno())
        # Drained when readable only (a recv per loop turn cost a syscall and an exception).
        self.transport.add_reader(self._wake_r.fileno(), self._drain_wakeups)
        log.info("node %s (incarnation %s) listening on %s%s; seeds: %s",
                 self.me.name, self.me.incarnation, self.me.address,
                 " (INSECURE: CURVE off)" if self.config.insecure else "",
                 ", ".join(self.config.join) or "none")
        bare = [e for e in self.announcement if SEP not in e]
        if bare:
            log.warning("%d task(s) announced by name only (over the %d-character announcement "
                        "budget, or huge args): in a rolling deploy the manager schedules them "
                        "only if it has loaded them itself; first: %s", len(bare),
                        MAX_ANNOUNCE_CHARS, ", ".join(bare[:5]))
        if self.config.insecure:
            log.warning("CURVE is off (--insecure): traffic is neither encrypted nor "
                        "authenticated; anyone who can reach %s can talk to this node",
                        self.me.address)
        leaving = False
        try:
            self._start_metrics()
            self.quorum.started()
            self._feed(Start(), self.clock.monotonic())
            stats = self.transport.stats
            # The longest busy turn (clerk._metrics.LoopTurns): from a poll's return to the
            # next poll (or idle sleep), the ticks between them included: one perf_counter
            # pair per poll.
            turns = self.metrics.turns
            woke = perf_counter()
            cut_at = math.inf  # see _handle_mailbox's ``until``
            while True:
                stats["turns"] += 1  # loop turns, per run in tools/bench_tasks.py (c)
                now = self.clock.monotonic()
                if self._done and self.tasks.ready_to_leave(now):
                    self._flush(now)
                    break
                if ((self._stop_requests or self._failed) and not leaving
                        and self.tasks.may_leave(now)):
                    leaving = True
                    log.info("leaving the cluster")
                    self.tasks.on_leave(now)
                    self._feed(LeaveRequested(), now)
                    continue
                deadline = min(self.core.next_deadline(), self.tasks.next_deadline())
                if self._done:
                    deadline = min(deadline, now + 0.05)  # waiting for runs in flight
                if deadline <= now:
                    cut_at = math.inf
                    if self._read_before_electing(now):
                        continue  # a WELCOME or REFUSE was waiting: the core decides again
                    self._feed(Tick(), now)
                    self.tasks.on_tick(now, self.clock.wall())
                    self.tasks.release_acks(now)
                    self._flush(now)  # the turn's sends go before the disk's bookkeeping
                    self.tasks.persist(now)
                    continue
                timeout_ms = poll_timeout_ms(deadline - now, self._precise())
                if self.status_jobs.busy():
                    timeout_ms = 0  # a status under way: a slice of it every turn
                self._flush(now)  # nothing queued may wait out the poll (a leave, the start)
                busy = perf_counter() - woke
                if busy > turns.floor:
                    turns.note(busy)
                arrived = self.transport.poll(timeout_ms, now, router=False)
                woke = perf_counter()
                # The results the executor read during the poll go before the turn decodes
                # what arrived (a heartbeat's rows can take milliseconds on a busy machine).
                self._flush(self.clock.monotonic())
                # Election replies, then the mailbox, then connection events: a disconnect is
                # judged with what arrived before it. A follower whose loop did not run while
                # its manager left (a loaded machine) finds the successor's COORDINATOR and the
                # leaver's closed connection in one turn; the other way round it started an
                # election ("manager lost") on a graceful hand-over.
                links = [i for i in arrived if i.kind in ("down", "up")]
                for inbound in arrived:  # connection events and election replies: a few
                    if inbound.kind in ("down", "up"):
                        continue
                    now = self.clock.monotonic()
                    if self.outgoing.overdue(now):  # a long turn (clerk._batch.FLUSH_AFTER)
                        self._flush(now)
                    self._on_inbound(inbound, now)
                # Traffic that ended a wait for a precise deadline (below) is read up to that
                # deadline, not past it: the due run's tick goes first, as when the loop slept.
                handled = (self._handle_mailbox(cut_at) if self.transport.router_ready else 0)
                cut_at = math.inf
                for inbound in links:  # (in the order they came: a reconnect's up last)
                    self._on_inbound(inbound, self.clock.monotonic())
                self.quorum.deliver()  # the answers whose voter record is now on disk
                now = self.clock.monotonic()
                self.tasks.release_acks(now)  # RESULT_ACKs whose rows the members now hold
                self._flush(now)  # end of the turn: never wait for more to batch
                self.tasks.persist(now)
                if self.status_jobs.busy():
                    self.status_step()  # (clerk._statusjob)
                    continue
                if (not arrived and not handled and timeout_ms == 0 and not self._stop_requests
                        and not self._failed):
                    busy = perf_counter() - woke
                    if busy > turns.floor:
                        turns.note(busy)
                    if self.transport.wait(
                            max(0.0, min(deadline - self.clock.monotonic(), SUB_MS_SLEEP))):
                        cut_at = deadline
                    woke = perf_counter()
        finally:
            if on_main:
                signal.set_wakeup_fd(-1)
            if self._metrics_server is not None:
                self._metrics_server.close()
            self.tasks.close()
            self._flush(self.clock.monotonic())  # the last turn's sends (a hand-over, results)
            self.quorum.close()
            # A node that left lets its last messages leave (bounded: FINAL_LINGER_MS).
            self.transport.close(FINAL_LINGER_MS if self._done else 0)
            self._wake_r.close()
            self._wake_w.close()
        if self._failed and not self._stop_requests:
            # (Asked to stop meanwhile, the node is stopping: no restart wanted, exit 0.)
            code = EXIT_CANNOT_START if self._cannot_start else EXIT_WORKERS_GONE
            log.error("node %s stopped: %s; exiting with %d: %s", self.me.name,
                      self._stop_reason, code, self._failed)
            return code
        log.info("node %s stopped: %s", self.me.name, self._stop_reason)
        return 0

    def _read_before_electing(self, now: float) -> bool:
        """A joiner whose join timeout passed, or a follower whose manager's is due, reads
        what already arrived before the tick that makes it a candidate (once per deadline).
        A node whose own loop stalled past the timeout (a loaded machine: its start, a long
        turn applying a table) otherwise elected with its seeds' WELCOMEs (or its REFUSE: a
        duplicate name, clerk._dupname), or its manager's heartbeats, unread in its mailbox:
        its timers are judged before its sockets are read. True if it handled anything."""
        core = self.core
        if core.role is Role.JOINING:
            due = core.next_deadline()
        elif core.role is Role.FOLLOWER:
            due = core.manager_due()
        else:
            return False
        if due > now or due == self._read_before:
            return False
        self._read_before = due
        arrived = self.transport.poll(0, now, router=False)
        # (In the loop's order: election replies, the mailbox, then connection events.)
        links = [i for i in arrived if i.kind in ("down", "up")]
        for inbound in arrived:
            if inbound.kind not in ("down", "up"):
                self._on_inbound(inbound, self.clock.monotonic())
        handled = self._handle_mailbox() if self.transport.router_ready else 0
        for inbound in links:
            self._on_inbound(inbound, self.clock.monotonic())
        self._flush(self.clock.monotonic())
        return bool(arrived or handled)

    def _precise(self) -> bool:
        """Must the loop wake at its deadlines to the sub-millisecond? Only when, as manager,
        it sends runs at their due times: always with ``dispatch_lead = 0``, and with a lead
        for a slot deferred to its due time (its predecessor was running at its dispatch
        instant, clerk._lead): the start of such a run waits for the tick. A dispatch up to
        1 ms late with a lead still leaves ahead of the due time, and no other timer of the
        node (heartbeats, timeouts, a held run's release, replication, the data directory)
        needs that precision. A node that does not schedule (a follower) never does: with
        ``dispatch_lead = 0`` every one of its timers cost two wake-ups (the poll that ended
        early, then the wait)."""
        sched = self.tasks.scheduler
        return sched.active and (self.config.dispatch_lead <= 0 or sched.due_time_pending)

    def _handle_mailbox(self, until: float = math.inf) -> int:
        """Handle mailbox messages for up to DRAIN_BUDGET_S, and not past ``until`` (the
        precise deadline whose wait they ended: its tick goes first), the rest next turn;
        how many."""
        clock, stats, handled = self.clock, self.transport.stats, 0
        start = clock.monotonic()
        for inbound in self.transport.receive():
            now = clock.monotonic()
            if self.outgoing.overdue(now):  # a long turn (clerk._batch.FLUSH_AFTER)
                self._flush(now)
            self._on_inbound(inbound, now)
            handled += 1
            if self._ran:
                self._results_now()
            now = clock.monotonic()
            if now - start >= DRAIN_BUDGET_S:
                stats["drain_cut"] += 1
                break
            if now >= until:
                stats["drain_cut_due"] += 1
                break
        took = int((clock.monotonic() - start) * 1000)  # the longest the timers waited on it
        stats["drain_ms_max"] = max(stats["drain_ms_max"], took)
        return handled

    def _results_now(self) -> None:
        """Right after a mailbox message that brought an EXECUTE (its RUN written to a
        worker): read the workers' links. The worker usually ran and wrote its DONE before
        this loop got its CPU back (a Unix socket's write wakes its reader on the writer's
        core), and its result waited for the rest of the turn and the next poll. Sent at once
        if another mailbox message is waiting (a replication round's rows took 250-400 µs
        to handle before the DONE was read); else it goes with the end of the turn's flush,
        just before the loop sleeps: a send in the middle of the turn found ZeroMQ's I/O
        thread waiting for the core (tools/bench_hops: ~30 µs more on the wire hop, as much
        as the flush had saved). One ``poll`` system call when nothing is there (a worker on
        the other core, a run queued or held)."""
        self._ran = False
        transport = self.transport
        if transport.poll_readers() and self._urgent and transport.mailbox_waiting():
            self._flush(self.clock.monotonic())

    def _start_metrics(self) -> None:
        """Serve /metrics (clerk._metrics) when ``metrics_port`` is set. A port that cannot be
        bound, or prometheus_client missing, is logged, not fatal (the node is more useful
        running than not; ``clerk.node`` and ``Node.start`` check both before starting)."""
        port = self.config.metrics_port
        if port is None:
            return
        executor = self.tasks.executor
        sources = Sources(
            node=self.metrics, is_manager=lambda: self.core.is_manager,
            term=lambda: self.core.term, bad_frames=lambda: self.bad_frames.copy(),
            worker_restarts=lambda: executor.restarts if executor is not None else 0,
            table=lambda: unpack_table(self.core.replicated), quorum=self.quorum.gauges,
            replica_refused=lambda: (self.core.replica.refused, self.core.replica.refused_hist),
            clock_offset=lambda: self.core.clock_skew.last)
        try:
            self._metrics_server = MetricsServer(self.config.host, port, sources)
        except ImportError:  # node_spec() skips the node's pre-flight check
            log.error("cannot serve metrics on port %d: prometheus_client is not installed "
                      '(pip install "clerk-cluster[metrics]")', port)
            return
        except OSError as exc:
            problem = (f"port {port} {in_use(self.config.host, port, err=exc.errno)}"
                       if exc.errno == errno.EADDRINUSE else str(exc))
            log.error("cannot serve metrics on %s:%d: %s", self.config.host, port, problem)
            return
        log.info("metrics at http://%s:%d/metrics", self.config.host, port)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _open_links(self) -> None:
        """Open the sockets to live members ahead of need (elections must not wait on TCP):
        a DEALER to each, and a REQ (elections only) to those this node's ELECTIONs go to,
        the members ranked above it and the manager it follows (probed when suspected); any
        other gets one when first asked. Every connection costs both ends ZeroMQ PINGs
        (one a second), and a REQ to every member was a quarter of an idle node's connections."""
        live = [i for i in self.core.member_list() if i.name != self.me.name and i.alive]
        # Pinned links are never closed to make room for strangers' addresses; the list
        # is capped so that a forged member list cannot pin (or open) unbounded sockets.
        live = live[:MAX_PINNED]
        pinned = self.transport.pinned = {*self.config.join, *(i.address for i in live)}
        # A member dropped leaves its link unpinned: the cap holds now, not from the next link
        # to a stranger (forged joiners on probation, dropped, left 4-32 links over it).
        unpinned = [a for a in self.transport.peers() if a not in pinned]  # LRU first
        for address in unpinned[:max(0, len(unpinned) - MAX_UNPINNED_LINKS)]:
            self.transport.forget(address)
        manager = self.core.highest.address if self.core.highest is not None else None
        for i in live:
            asked = (i.priority, i.name) > self.me.rank or i.address == manager
            self.transport.connect(i.address, req=asked)


def poll_timeout_ms(remaining: float, precise: bool) -> int:
    """The poll's timeout (whole ms: ZeroMQ's unit) for a deadline ``remaining`` seconds away.

    ``precise``: round down (rounding up woke the loop up to 1 ms late for every due run) and
    let the loop spend the last fraction of a millisecond in a wait on its sockets
    (``Transport.wait``, which traffic ends) once nothing is ready: on time, without
    spinning, but two wake-ups per timer (the poll that ends early, the wait).
    Otherwise round up: one wake-up, up to 1 ms late (``Agent._precise`` says when that is on
    time). At most a second either way."""
    ms = remaining * 1000
    return min(int(ms) if precise else math.ceil(ms), 1000)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
