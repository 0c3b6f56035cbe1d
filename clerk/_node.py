"""Running a node: the supervision tree, pre-flight checks, and the embedding API.

A node is a ``supervisor.Supervisor`` whose child is the cluster agent (``clerk._agentboot:run``);
the agent in turn supervises the task worker processes. The agent is ``transient`` and
``significant`` with ``auto_shutdown = any_significant``: it is restarted if it crashes, and
when it ends on its own (it left the cluster, or was refused) the node ends too.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

from clerk._clock import TEST_OFFSET_ENV, TEST_OFFSET_PROBLEM
from clerk._config import (
    DEFAULT_PORT,
    REJOIN_TIMEOUT_MS,
    NodeConfig,
    _node_values,
    check_voter_data_dir,
    resolve_host,
)
from clerk._errors import ConfigError, NotReachableError, StartError
from clerk._lead import DISPATCH_LEAD_MS
from clerk._logging import LogSink
from clerk._metrics import check_available as check_metrics
from clerk._portholder import EXIT_CANNOT_LISTEN, EXIT_CANNOT_START, in_use
from clerk._security import CurveKeys, keys_from_cookie, load_cookie
from clerk._tasks import TaskDef, check_unique
from supervisor import ChildSpec, RestartIntensityError, ShutdownInfo, Supervisor, SupervisorError
from supervisor.testing import WaitTimeout, wait_until

__all__ = ["Node", "agent_spec", "ask_agent_to_leave", "node_spec", "node_supervisor",
           "preflight"]

#: How long the node waits for its agent to leave gracefully before killing it.
AGENT_SHUTDOWN_MS = 15_000


def preflight(config: NodeConfig, *, derive_keys: bool = True) -> CurveKeys | None:
    """Checks that deserve a clear error before anything starts: the cookie, the host, the port.
    Returns the CURVE keys (None when insecure, or when not ``derive_keys``: the node's root
    process never opens a socket, and deriving them would import ZeroMQ into it)."""
    if TEST_OFFSET_PROBLEM:  # (read at import, where it must not raise: clerk._clock)
        raise ConfigError("environment", TEST_OFFSET_ENV, os.environ.get(TEST_OFFSET_ENV),
                          TEST_OFFSET_PROBLEM)
    cookie = None if config.insecure else load_cookie(config.cookie_file)
    keys = keys_from_cookie(cookie) if cookie is not None and derive_keys else None
    source = config.source or "command line"
    try:
        ip = resolve_host(config.host)
    except OSError as exc:
        raise ConfigError(source, "name", config.name,
                          f"host {config.host!r} does not resolve: {exc}") from None
    _probe(ip, config.host, config.port, source, "port")
    if config.metrics_port is not None:
        check_metrics(source, config.metrics_port)
        _probe(ip, config.host, config.metrics_port, source, "metrics_port")
    path = config.data_path
    if path is not None:
        from clerk._store import check_free

        check_free(path, source)
        if config.is_voter:
            from clerk._voterstore import VoterStore

            VoterStore(path, config.name, source=source).load()  # a clear error, exit 2
    return keys


def _probe(ip: str, host: str, port: int, source: str, key: str) -> None:
    """ConfigError naming ``key`` if ``port`` cannot be bound on ``host``."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((ip, port))
    except OSError as exc:
        problem = in_use(host, port, ip, exc.errno or 0)
        raise ConfigError(source, key, port, problem) from None
    finally:
        probe.close()


def agent_spec(config: NodeConfig, *, id: str = "agent",  # noqa: A002
               significant: bool = True) -> ChildSpec:
    # An agent that cannot bind its mailbox or take its data directory exits with
    # EXIT_CANNOT_LISTEN, one that cannot start otherwise (building it raised, or no worker of
    # its pool was ever ready) with EXIT_CANNOT_START: starting it again would fail the same
    # way, so neither is restarted.
    return ChildSpec(id=id, start="clerk._agentboot:run", args=(config,), restart="transient",
                     significant=significant, shutdown=AGENT_SHUTDOWN_MS,
                     shutdown_exits=(EXIT_CANNOT_LISTEN, EXIT_CANNOT_START),
                     # A stop signal at any moment of its start reaches its handler, never
                     # the default action (clerk._agentboot.run unblocks them).
                     hold_signals=True)


def ask_agent_to_leave(sup: Supervisor) -> bool:
    """Send SIGTERM to the agent process alone, which then leaves the cluster gracefully (a
    manager hands over, runs in flight finish) and exits; the node's supervisor then stops on
    its own (``auto_shutdown``). ``Supervisor.stop()`` would instead SIGTERM the agent's whole
    process tree, task workers included, killing the runs in flight. False if there is no
    agent process to ask (then stop the supervisor)."""
    try:
        pids = [c.pid for c in sup.which_children() if c.pid and c.status == "running"]
    except SupervisorError:
        return False
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
    return bool(pids)


def node_supervisor(config: NodeConfig) -> Supervisor:
    return Supervisor([agent_spec(config)], strategy="one_for_one", intensity=3, period=10,
                      auto_shutdown="any_significant", name=config.name)


def _make_config(
    name: str,
    port: int,
    join: Sequence[str],
    tasks: Sequence[TaskDef],
    priority: int,
    cookie_file: str | None,
    insecure: bool,
    workers: int,
    log_level: str,
    where: str,
    data_dir: str | os.PathLike[str] | bool | None,
    metrics_port: int | None = None,
    voters: Sequence[str] = (),
    dispatch_lead: int = DISPATCH_LEAD_MS,
    rejoin_timeout: int = REJOIN_TIMEOUT_MS,
) -> NodeConfig:
    if data_dir is True:
        raise ConfigError(where, "data_dir", data_dir, "must be a directory path, None for the "
                                                    "default, or False for none")
    values = _node_values({"name": name, "port": port, "join": list(join), "priority": priority,
                           "cookie_file": cookie_file, "insecure": insecure, "workers": workers,
                           "log_level": log_level, "data_dir": data_dir,
                           "metrics_port": metrics_port, "voters": voters,
                           "dispatch_lead": dispatch_lead,
                           "rejoin_timeout": rejoin_timeout}, where)
    for t in tasks:
        if not isinstance(t, TaskDef):
            raise ConfigError(where, "tasks", t, "must be made with clerk.task(...)")
    config = NodeConfig(**values, tasks=check_unique(list(tasks)), source=where)
    check_voter_data_dir(config, where)
    return config


def node_spec(
    *,
    name: str,
    port: int = DEFAULT_PORT,
    join: Sequence[str] = (),
    tasks: Sequence[TaskDef] = (),
    priority: int = 0,
    cookie_file: str | None = None,
    insecure: bool = False,
    workers: int = 2,
    log_level: str = "info",
    data_dir: str | os.PathLike[str] | bool | None = None,
    id: str | None = None,  # noqa: A002
    metrics_port: int | None = None,
    voters: Sequence[str] = (),
    dispatch_lead: int = DISPATCH_LEAD_MS,
    rejoin_timeout: int = REJOIN_TIMEOUT_MS,
) -> ChildSpec:
    """A ``supervisor.ChildSpec`` running a Clerk node: make it a child of your own tree.

    The child is ``transient``: restarted if it crashes, not when it ends normally (it left
    the cluster, or was refused, e.g. for a duplicate name). It is not ``significant``, so it
    fits a tree with any ``auto_shutdown`` (a significant child is refused by the default
    ``auto_shutdown="never"``); use ``dataclasses.replace(spec, significant=True)`` to make
    your tree stop when the node ends.

    ``data_dir``: the node's durable task table (None: ``$XDG_STATE_HOME/clerk/<name>``;
    False: none); one node per directory.

    ``voters``: quorum mode's voter names, the same list on every node (see the README's
    "Quorum mode"); empty: the default mode.

    ``dispatch_lead``: ms (0-50), how far ahead of its due time this node, as manager, sends
    each run (the member starts it at the due time); 0: at the due time.

    ``rejoin_timeout``: ms a node restarted from a data directory that recorded other members
    waits for them before it runs alone (default 5000; 0: it does not wait).
    """
    config = _make_config(name, port, join, tasks, priority, cookie_file, insecure, workers,
                          log_level, "clerk.node_spec(...)", data_dir, metrics_port,
                          voters, dispatch_lead, rejoin_timeout)
    return agent_spec(config, id=id or f"clerk-{config.name}", significant=False)


class Node:
    """A Clerk node embedded in your process: ``start()`` runs it (in child processes),
    ``stop()`` leaves the cluster gracefully.

    Logging: every record of the node's processes, the tasks' own included, comes back to this
    process and goes through its ``logging`` (loggers ``clerk.*``, ``supervisor`` and the
    tasks' own names; attributes ``node``, ``task``, ``slot``, ``run``), so your handlers,
    levels and formats apply. The node configures no handler of its own; ``log_level`` is what
    its processes send at least.

    ``manager()``, ``members()`` and ``status()`` ask the node (over its mailbox, with the
    cookie), so they show the cluster as this node sees it. ``data_dir`` is where the node
    keeps its durable task table (None: ``$XDG_STATE_HOME/clerk/<name>``; False: none).
    ``pause()``, ``resume()`` and
    ``trigger()`` steer a task cluster-wide through this node (applied by the manager, see
    :mod:`clerk._ops`); ``history()`` and ``task_status()`` read one task. ``voters``
    turns quorum mode on (the same list of node names on every node; a voter needs a data
    directory). ``dispatch_lead`` (ms, 0-50) is how far ahead of due this node, as manager,
    sends each run (:mod:`clerk._lead`); 0: at the due time. ``rejoin_timeout`` (ms) is how
    long it waits, restarted from a data directory that recorded other members, for them
    before it runs alone (:mod:`clerk._joining`, "Restarts"; 0: it does not wait).
    """

    def __init__(
        self,
        *,
        name: str,
        port: int = DEFAULT_PORT,
        join: Sequence[str] = (),
        tasks: Sequence[TaskDef] = (),
        priority: int = 0,
        cookie_file: str | None = None,
        insecure: bool = False,
        workers: int = 2,
        log_level: str = "info",
        data_dir: str | os.PathLike[str] | bool | None = None,
        metrics_port: int | None = None,
        voters: Sequence[str] = (),
        dispatch_lead: int = DISPATCH_LEAD_MS,
        rejoin_timeout: int = REJOIN_TIMEOUT_MS,
    ) -> None:
        self.config = _make_config(name, port, join, tasks, priority, cookie_file, insecure,
                                   workers, log_level, "clerk.Node(...)", data_dir,
                                   metrics_port, voters, dispatch_lead, rejoin_timeout)
        self._keys: CurveKeys | None = None
        self._sup: Supervisor | None = None
        self._sink: LogSink | None = None

    def __repr__(self) -> str:
        return f"Node(name={self.config.name!r}, port={self.config.port})"

    def start(self, timeout: float = 30.0) -> None:
        """Start the node and wait until it answers on its mailbox (``timeout`` s: 30 by
        default, as a node on a host whose cores are all busy took 8-12 s to start; a node
        that ends first raises at once).

        Raises:
            ConfigError: found by the pre-flight check, before anything starts (a port in
                use, naming the process holding it; a bad host, cookie or data directory).
            StartError: the node ended before it answered (its agent could not bind its
                port or take its data directory, or kept crashing): raised as
                soon as it has ended, with the agent's own reason. ``start()`` may then be
                called again.
            NotReachableError: it runs but did not answer within ``timeout`` (it is stopped).
        """
        if self._sup is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._keys = preflight(self.config)
        self._sink = LogSink()
        self._sup = node_supervisor(dataclasses.replace(self.config, log_to=self._sink.endpoint))
        try:
            self._sup.start()
        except BaseException:
            self._close_sink()
            raise
        try:
            up = wait_until(self._up_or_ended, timeout=timeout)
        except WaitTimeout:
            self.stop()
            raise NotReachableError(f"{self!r} did not come up within {timeout}s") from None
        if not isinstance(up, bool):
            raise self._start_error(up) from None

    def _up_or_ended(self) -> bool | ShutdownInfo | SupervisorError:
        """True once the node answers; how its supervisor ended if it has; else False."""
        assert self._sup is not None
        try:
            return self._sup.wait(timeout=0)
        except TimeoutError:
            pass
        except SupervisorError as exc:  # it gave up on the agent (kept crashing)
            return exc
        return self._answers()

    def _start_error(self, ended: ShutdownInfo | SupervisorError) -> StartError:
        """The node ended while starting: the error, in the agent's own words (its last
        error records, all sent before it exited: closing the sink handles them)."""
        sink = self._sink
        self._close_sink()
        self._sup = None  # ended (its loop joined): start() may be called again
        said = list(dict.fromkeys(sink.errors)) if sink is not None else []
        info = ended.info if isinstance(ended, RestartIntensityError) else ended
        last = info.exit if isinstance(info, ShutdownInfo) else None
        if isinstance(ended, SupervisorError):
            why = (f"its agent kept crashing: {ended}"
                   if isinstance(ended, RestartIntensityError) else str(ended))
            reason = f"{'; '.join(said)} ({why})" if said else why
        elif said:
            reason = "; ".join(said)
        elif last is not None:
            reason = f"its agent ended ({last}) without saying why"
        else:
            reason = f"it ended ({ended})"
        return StartError(self.config.name, repr(self), reason,
                          None if last is None else last.exitcode)

    def _answers(self) -> bool:
        try:
            self.status(timeout=0.5)
        except NotReachableError:
            return False
        return True

    def stop(self, timeout: float | None = 30.0) -> ShutdownInfo | None:
        """Leave the cluster gracefully (a manager hands over first, runs in flight finish)
        and wait for the end. Returns how the node's supervisor ended (``AUTO_SHUTDOWN``: the
        agent left and the node followed it), or None if it had already ended."""
        if self._sup is None:
            return None
        try:
            return self._stop(timeout)
        finally:
            self._close_sink()

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _stop(self, timeout: float | None) -> ShutdownInfo | None:
        assert self._sup is not None
        try:
            if ask_agent_to_leave(self._sup):
                grace = AGENT_SHUTDOWN_MS / 1000 + 5
                try:
                    return self._sup.wait(grace if timeout is None else min(timeout, grace))
                except TimeoutError:
                    pass
            self._sup.stop()
            return self._sup.wait(timeout)
        except Exception:  # already stopped on its own (e.g. refused): report how
            return None

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        from clerk._client import request_status  # not in the node's own processes

        return request_status([self.config.address], keys=self._keys_now(), timeout=timeout)

    def _keys_now(self) -> CurveKeys | None:
        if self._keys is None and not self.config.insecure:
            self._keys = keys_from_cookie(load_cookie(self.config.cookie_file))
        return self._keys

    def manager(self) -> str | None:
        """Name of the manager as this node sees it (None during an election)."""
        return self.status().get("manager")

    def _control(self, op: str, task: str, timeout: float) -> Any:
        from clerk._client import request_control

        return request_control([self.config.address], op, task, keys=self._keys_now(),
                               timeout=timeout)

    def pause(self, task: str, timeout: float = 5.0) -> dict[str, Any]:
        """Pause ``task`` cluster-wide until :meth:`resume` (survives failover and hand-over).
        Returns once the manager applied it: ``{"task", "paused", "node", "at"}``. Raises
        :class:`~clerk.ControlError` for an unknown task (listing the known ones)."""
        return dict(self._control("pause", task, timeout))

    def resume(self, task: str, timeout: float = 5.0) -> dict[str, Any]:
        """Resume ``task``: it runs again from the next slot of its grid."""
        return dict(self._control("resume", task, timeout))

    def trigger(self, task: str, timeout: float = 5.0) -> dict[str, Any]:
        """Run ``task`` once now, on a random eligible node, with the current state: returns
        ``{"task", "run", "slot", "node", "via"}`` once dispatched. Refused with
        :class:`~clerk.ControlError` while a run of the task is in flight (never queued, never
        overlapping)."""
        return dict(self._control("trigger", task, timeout))

    def task_status(self, task: str, timeout: float = 5.0) -> dict[str, Any]:
        """One task in detail as this node sees it (the row of ``status()`` plus ``args``,
        ``state_bytes`` and ``history``)."""
        return dict(self._control("show", task, timeout))

    def history(self, task: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The task's last runs, oldest first: ``{"slot", "due", "node", "start",
        "duration_ms", "outcome", "error", "version", "trigger"}`` (times in seconds)."""
        return list(self.task_status(task, timeout)["history"])

    def members(self) -> list[str]:
        """Names of the live members as this node sees them."""
        return [m["name"] for m in self.status().get("members", []) if m.get("alive")]

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
