"""Test helpers: :class:`LocalCluster` runs real node processes on loopback.

::

    from clerk.testing import LocalCluster

    with LocalCluster(3, tasks=[clerk.task(Counter, interval=200)]) as cluster:
        manager = cluster.wait_for_manager(timeout=10)
        cluster.kill(manager)                     # SIGKILL of the node's whole process tree
        new = cluster.wait_for_manager(timeout=5)

Each node is ``python -m clerk.node --config <its toml>`` with a reserved port, a shared cookie
(CURVE on, unless ``insecure=True``), every other node as a seed, and its own data directory
(a temporary one by default, kept across ``restart(node)`` and ``stop_all()``/``start_all()``,
so a restarted node, or the whole cluster started again, reads it). Leaving the ``with``
block stops every node (SIGCONT, SIGTERM, then SIGKILL after a grace period) and checks that
no process of the cluster is left, even when the test failed.

Ports are reserved for the cluster's life (:mod:`clerk._ports`): outside the kernel's ephemeral
range, each held with a lock no other test process on the machine can take. Starting the
cluster (and ``start_all()``, ``restart(node)``) waits until each node listens (``settle()``);
a node whose port was taken anyway by some other program is started again on another reserved
port and listed in ``cluster.moved``, so a test never gets a node that could not bind.

When the block ends with an exception (a failing test), the nodes' logs and configs are kept
(in ``$CLERK_KEEP_LOGS`` if set, else a new temporary directory): the exception gets a note
saying where, with the last lines of each node's log, and the same is printed to stderr.
"""

from __future__ import annotations

import collections
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import psutil
import zmq

from clerk._client import ask_each, request_status
from clerk._ports import PortReservation, free_ports, listens
from clerk._security import CurveKeys, keys_from_cookie
from clerk._tasks import TaskDef
from supervisor._spawn import _pdeathsig_prefix
from supervisor.testing import WaitTimeout, wait_until

__all__ = ["LocalCluster", "WaitTimeout", "free_ports", "wait_until"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def task_toml(d: TaskDef) -> str:
    """A ``[[task]]`` table for ``d``."""
    lines = ["[[task]]", f"task = {_toml_value(d.target)}", f"name = {_toml_value(d.name)}"]
    if d.interval is not None:
        lines.append(f"interval = {d.interval}")
    if d.cron is not None:
        lines.append(f"cron = {_toml_value(d.cron)}")
    if d.timezone != "UTC":
        lines.append(f"timezone = {_toml_value(d.timezone)}")
    if d.catch_up != "skip":
        lines.append(f"catch_up = {_toml_value(d.catch_up)}")
    lines += [f"timeout = {d.timeout}", f"instant = {_toml_value(d.instant)}",
              f"enabled = {_toml_value(d.enabled)}"]
    if d.args is not None:
        lines.append(f"args = {_toml_value(d.args)}")
    return "\n".join(lines) + "\n"


class LocalCluster:
    """``n`` Clerk nodes as real processes on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        n: int,
        tasks: Sequence[TaskDef] = (),
        *,
        insecure: bool = False,
        workers: int = 1,
        priorities: Sequence[int] | None = None,
        node_tasks: dict[str, Sequence[TaskDef]] | None = None,
        log_level: str = "info",
        start: bool = True,
        data_dir: str | os.PathLike[str] | bool | None = None,
        metrics: bool = False,
        voters: int | Sequence[str] = 0,
        dispatch_lead: int | None = None,
        node_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """``data_dir``: None (default) gives each node a temporary data directory (removed
        by ``close()``); a path gives each node ``<path>/<node>`` (kept); False gives none.

        ``voters``: quorum mode. A number k makes the first k nodes (``n1`` .. ``nk``) the
        voters; a list names them (node names of this cluster, or others: a voter that is
        not one of the nodes is simply never reachable). 0 or []: the default mode.

        ``dispatch_lead``: the nodes' ``dispatch_lead`` (ms; None: the default).

        ``node_env``: extra environment variables of a node's process, by node name (e.g. the
        test-only ``CLERK_TEST_CLOCK_OFFSET_S`` of :mod:`clerk._clock`)."""
        if isinstance(voters, int) and not 0 <= voters <= n:
            raise ValueError(f"voters={voters}: a number from 0 to the {n} nodes, or a list "
                             "of node names")
        if voters and data_dir is False:
            raise ValueError("voters need data directories (their promises are kept there): "
                             "not with data_dir=False")
        unknown = sorted(set(node_env or {}) - {f"n{i + 1}@127.0.0.1" for i in range(n)})
        if unknown:
            raise ValueError(f"node_env names nodes this cluster does not have: {unknown} "
                             f"(its nodes are n1@127.0.0.1 .. n{n}@127.0.0.1)")
        self.n = n
        self.tasks = list(tasks)
        self.node_tasks = node_tasks or {}
        self.insecure = insecure
        self.workers = workers
        self.log_level = log_level
        self.dispatch_lead = dispatch_lead
        self.node_env = dict(node_env or {})
        if data_dir is True:
            raise ValueError("data_dir must be a path, None (temporary) or False (none)")
        self.priorities = list(priorities) if priorities is not None else [0] * n
        #: The cluster's ports, held until close() (see the module docstring).
        self.reservation = PortReservation("127.0.0.1")
        ports = self.reservation.take(n + (n if metrics else 0))
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="clerk-cluster-"))
            self.cookie_file = self.dir / "cookie"
            self.cookie_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.cookie_file.chmod(0o600)
            self.keys: CurveKeys | None = (
                None if insecure else keys_from_cookie(self.cookie_file.read_bytes().strip())
            )
        except BaseException:
            self.reservation.close()  # no close() will come: the cluster was never made
            raise
        self.names = [f"n{i + 1}@127.0.0.1" for i in range(n)]
        self.ports = dict(zip(self.names, ports[:n], strict=True))
        if isinstance(voters, int):
            voters = self.names[:voters]
        #: Quorum mode's voters (the same list in every node's config); empty: default mode.
        self.voters: list[str] = list(voters)
        self.data_root: Path | None = (
            None if data_dir is False
            else self.dir / "data" if data_dir is None else Path(data_dir))
        #: With ``metrics=True`` each node serves Prometheus metrics (see metrics_url).
        self.metrics_ports: dict[str, int] = (
            dict(zip(self.names, ports[n:], strict=True)) if metrics else {})
        #: Nodes started again on another port because theirs was taken before they bound
        #: it: (node, old port, new port), in order (a metrics port too).
        self.moved: list[tuple[str, int, int]] = []
        self._seeds: dict[str, list[str] | None] = {}  # as last given to start()
        self._log_at: dict[str, int] = {}  # where each node's log was when it last started
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._paused: set[str] = set()
        self._all_pids: set[int] = set()
        self._start_on_enter = start
        self._ctx: zmq.Context | None = None  # for status requests, closed by close()
        self._failure: BaseException | None = None  # the exception that ended the block

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            if self._start_on_enter:
                for name in self.names:
                    self.start(name)
                self.settle()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._failure = exc  # close() keeps the logs for it before removing the directory
        self.close()

    #: Lines of each node's log quoted in the note of a failing test's exception.
    NOTE_TAIL_LINES = 15

    def _keep_logs(self, exc: BaseException) -> Path | None:
        """Move the nodes' logs and configs somewhere lasting; say where, on ``exc``."""
        base = os.environ.get("CLERK_KEEP_LOGS")
        try:
            if base:
                Path(base).mkdir(parents=True, exist_ok=True)
            kept = Path(tempfile.mkdtemp(prefix="clerk-failed-", dir=base or None))
            for name in self.names:
                for path in (self.log_path(name), self.config_path(name)):
                    if path.exists():
                        shutil.copy2(path, kept / path.name)
        except OSError as err:
            exc.add_note(f"LocalCluster: could not keep the node logs: {err}")
            return None
        lines = [f"LocalCluster: node logs kept in {kept}"]
        for name in self.names:
            path = kept / self.log_path(name).name
            tail = path.read_text(errors="replace").splitlines()[-self.NOTE_TAIL_LINES:] \
                if path.exists() else []
            lines.append(f"--- {path} (last {len(tail)} lines)")
            lines += tail
        exc.add_note("\n".join(lines))
        print(lines[0], file=sys.stderr)
        return kept

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def metrics_url(self, name: str) -> str:
        """Where node ``name`` serves /metrics (the cluster was made with ``metrics=True``)."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def config_path(self, name: str) -> Path:
        return self.dir / f"{name.split('@')[0]}.toml"

    def data_path(self, name: str) -> Path | None:
        """Node ``name``'s data directory (None if the cluster has none)."""
        if self.data_root is None:
            return None
        return self.data_root / name.split("@")[0]

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name.split('@')[0]}.log"

    def log(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def write_config(self, name: str, seeds: Iterable[str] | None = None,
                     extra_node: str = "") -> Path:
        i = self.names.index(name)
        if seeds is None:
            seeds = [self.address(o) for o in self.names if o != name]
        node = [
            "[node]",
            f"name = {_toml_value(name)}",
            f"port = {self.ports[name]}",
            f"join = {_toml_value(list(seeds))}",
            f"priority = {self.priorities[i]}",
            f"workers = {self.workers}",
            f"log_level = {_toml_value(self.log_level)}",
        ]
        if self.insecure:
            node.append("insecure = true")
        else:
            node.append(f"cookie_file = {_toml_value(str(self.cookie_file))}")
        data = self.data_path(name)
        if data is not None and "data_dir" not in extra_node:
            node.append(f"data_dir = {_toml_value(str(data))}")
        elif data is None and "data_dir" not in extra_node:
            node.append("data_dir = false")
        if name in self.metrics_ports:
            node.append(f"metrics_port = {self.metrics_ports[name]}")
        if self.voters and "voters" not in extra_node:
            node.append(f"voters = {_toml_value(self.voters)}")
        if self.dispatch_lead is not None:
            node.append(f"dispatch_lead = {self.dispatch_lead}")
        if extra_node:
            node.append(extra_node)
        tasks = self.node_tasks.get(name, self.tasks)
        text = "\n".join(node) + "\n\n" + "\n".join(task_toml(d) for d in tasks)
        path = self.config_path(name)
        path.write_text(text)
        return path

    def start(self, name: str, seeds: Iterable[str] | None = None) -> None:
        """Start (or start again) node ``name``."""
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        self._seeds[name] = list(seeds) if seeds is not None else None
        path = self.write_config(name, seeds)
        log_path = self.log_path(name)
        self._log_at[name] = log_path.stat().st_size if log_path.exists() else 0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env.pop("CLERK_COOKIE", None)
        env.update(self.node_env.get(name, {}))
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                # Armed with PR_SET_PDEATHSIG: if this process dies without close() (a test
                # aborted by pytest-timeout's thread method calls os._exit), the node dies
                # with it and its own watchdog kills its agent and workers.
                _pdeathsig_prefix() + self._argv(name, path),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        self.procs[name] = proc
        self._paused.discard(name)
        self._all_pids.add(proc.pid)

    def _argv(self, name: str, config: Path) -> list[str]:
        """The command that runs node ``name`` (a subclass may wrap it, e.g. in a netns)."""
        return [sys.executable, "-m", "clerk.node", "--config", str(config)]

    def pids(self, name: str) -> list[int]:
        """Every process of node ``name`` (the node, its agent, its workers)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return []
        try:
            main = psutil.Process(proc.pid)
            pids = [proc.pid] + [c.pid for c in main.children(recursive=True)]
        except psutil.Error:
            return []
        self._all_pids.update(pids)
        return pids

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def live(self) -> list[str]:
        """Nodes running and not paused."""
        return [n for n in self.names if self.running(n) and n not in self._paused]

    def _signal_all(self, pids: Iterable[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, name: str) -> None:
        """SIGKILL every process of the node at once (a crash), and reap it."""
        pids = self.pids(name)
        self._signal_all(pids, signal.SIGKILL)
        proc = self.procs.get(name)
        if proc is not None:
            proc.wait(timeout=10)
        self._paused.discard(name)
        wait_until(lambda: not any(psutil.pid_exists(p) and _alive(p) for p in pids),
                   timeout=5, message=f"processes of {name} still alive after SIGKILL")

    def pause(self, name: str) -> None:
        """SIGSTOP every process of the node (a long pause: GC, VM stall)."""
        self._signal_all(self.pids(name), signal.SIGSTOP)
        self._paused.add(name)

    def resume(self, name: str) -> None:
        self._signal_all(self.pids(name), signal.SIGCONT)
        self._paused.discard(name)

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM the node (graceful leave) and return its exit code."""
        proc = self.procs[name]
        if name in self._paused:
            self.resume(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def restart(self, name: str) -> None:
        """Kill the node if it runs, then start it again (a new incarnation)."""
        if self.running(name):
            self.kill(name)
        self.start(name)
        self.settle([name])

    def stop_all(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every running node at once (a deploy's full stop) and wait for all of
        them; returns each node's exit code. Their data directories stay for ``start_all``."""
        running = [n for n in self.names if self.running(n)]
        for name in running:
            self.pids(name)
            if name in self._paused:
                self.resume(name)
            self.procs[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        return {n: self.procs[n].wait(timeout=max(0.1, deadline - time.monotonic()))
                for n in running}

    def kill_all(self) -> None:
        """SIGKILL every process of every node at once (a power cut)."""
        pids = {n: self.pids(n) for n in self.names if self.running(n)}
        for plist in pids.values():
            self._signal_all(plist, signal.SIGKILL)
        for name, plist in pids.items():
            self.procs[name].wait(timeout=10)
            self._paused.discard(name)
            def gone(p: list[int] = plist) -> bool:
                return not any(_alive(x) for x in p)
            wait_until(gone, timeout=5, message=f"processes of {name} still alive after SIGKILL")

    def start_all(self) -> None:
        """Start every node that is not running (after ``stop_all`` or ``kill_all``)."""
        started = [n for n in self.names if not self.running(n)]
        for name in started:
            self.start(name)
        self.settle(started)

    #: How often ``settle`` starts one node again on another port before it gives up.
    MAX_MOVES = 5

    def settle(self, names: Sequence[str] | None = None, timeout: float = 30.0) -> None:
        """Wait until each of ``names`` (default: every node started) listens on its port
        (and metrics port). A node that exited because its port was in use, or runs without
        its metrics port for that reason, is started again on another reserved one (listed in
        ``moved``); a node that exited for another reason is left as it is (a test may mean
        it to).

        Raises:
            WaitTimeout: a node still runs without listening after ``timeout`` seconds, or
                its ports were taken ``MAX_MOVES`` times.
        """
        pending = list(names) if names is not None else list(self._log_at)
        moves: collections.Counter[str] = collections.Counter()

        def check() -> bool:
            for name in list(pending):
                if self.running(name):
                    pids = self.pids(name)
                    if not listens(pids, self.ports[name]):
                        continue
                    metrics = self.metrics_ports.get(name)
                    if metrics is None or listens(pids, metrics):
                        pending.remove(name)
                        continue
                    taken = self._taken_port(name)  # a metrics port in use is not fatal
                    if taken is None:
                        continue
                    self.kill(name)
                else:
                    taken = self._taken_port(name)
                    if taken is None:
                        pending.remove(name)  # exited for its own reasons: the test's business
                        continue
                moves[name] += 1
                if moves[name] > self.MAX_MOVES:
                    raise WaitTimeout(f"{name}: port {taken} taken by another program "
                                      f"{self.MAX_MOVES} times in a row; see {self.log_path(name)}")
                self._move(name, taken)
            return not pending

        wait_until(check, timeout=timeout, interval=0.02,
                   message=lambda: f"nodes not listening after {timeout:g} s: "
                                   + ", ".join(f"{n} on port {self.ports[n]}" for n in pending))

    def _taken_port(self, name: str) -> int | None:
        """The port of ``name`` its log (since it last started) says is in use, if any."""
        ports = [self.ports[name]] + ([self.metrics_ports[name]]
                                      if name in self.metrics_ports else [])
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(self._log_at.get(name, 0))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        for port in ports:
            if self.reservation_holds(port) and re.search(rf"\b{port}\b[^\n]*in use", text):
                return port
        return None

    def reservation_holds(self, port: int) -> bool:
        """Whether ``port`` is one of this cluster's reserved ports (a subclass may run
        nodes on ports of its own, which cannot be moved)."""
        return port in self.reservation.held

    def _move(self, name: str, old: int) -> None:
        """Start ``name`` again with another reserved port in place of ``old``."""
        (new,) = self.reservation.take(1)
        self.reservation.release(old)
        if self.ports[name] == old:
            self.ports[name] = new
        else:
            self.metrics_ports[name] = new
        self.moved.append((name, old, new))
        print(f"LocalCluster: {name}'s port {old} was taken before it bound it; "
              f"started again on {new}", file=sys.stderr)
        self.start(name, self._seeds.get(name))

    def close(self) -> None:
        """Stop everything; make sure no process of the cluster is left."""
        for name in list(self.procs):
            if self.running(name):
                self.pids(name)
                if name in self._paused:
                    self.resume(name)
                try:
                    self.procs[name].send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal_all(self.pids(name), signal.SIGKILL)
                proc.wait(timeout=10)
        leftovers = [p for p in self._all_pids if _alive(p)]
        self._signal_all(leftovers, signal.SIGKILL)
        try:
            wait_until(lambda: not [p for p in leftovers if _alive(p)], timeout=5)
        finally:
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None
            if self._failure is not None:
                self._keep_logs(self._failure)
                self._failure = None
            shutil.rmtree(self.dir, ignore_errors=True)
            self.reservation.close()

    # --- observing ------------------------------------------------------------------------------

    def status(self, name: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The cluster as ``name`` (default: the first live node that answers) sees it.

        ``timeout`` is each node's: a live node answers in ~15 ms on a quiet machine, but a
        loaded one (a CI running tests beside each other on two cores) has starved a node's loop
        past a second, and a test asking for a view is not testing how fast it comes.
        """
        names = [name] if name else self.live()
        return request_status([self.address(n) for n in names], keys=self.keys,
                              timeout=timeout)

    def views(self, names: Sequence[str] | None = None,
              timeout: float = 0.5, brief: bool = False) -> dict[str, dict[str, Any] | None]:
        """Each node's status (None if it did not answer), all asked at once: every view is
        taken within a few milliseconds of the others, which keeps agreement checks honest.
        ``brief``: without the tasks (a node of 10,000 tasks answers in a millisecond, not
        in ~0.5 s); what ``agreed`` and ``wait_for_manager`` ask for."""
        names = list(names) if names is not None else self.live()
        if self._ctx is None:
            self._ctx = zmq.Context()
        got = ask_each([self.address(n) for n in names], keys=self.keys, timeout=timeout,
                       ctx=self._ctx, brief=brief)
        return {n: got[self.address(n)] for n in names}

    def agreed(self, names: Sequence[str] | None = None) -> tuple[str, int] | None:
        """(manager, term) if every live node (or ``names``) reports the same live manager."""
        names = list(names) if names is not None else self.live()
        if not names:
            return None
        views = self.views(names, brief=True)
        seen = {(v["manager"], v["term"]) if v else None for v in views.values()}
        if len(seen) != 1:
            return None
        view = seen.pop()
        if view is None or view[0] not in names:
            return None
        return view

    def wait_for_manager(self, timeout: float = 10.0, names: Sequence[str] | None = None) -> str:
        """Wait until every live node (or ``names``) agrees on one manager; return its name."""
        view = wait_until(lambda: self.agreed(names), timeout=timeout, interval=0.02,
                          message=lambda: f"no agreed manager; views: {self._brief()}")
        assert view is not None  # (wait_until returns a truthy value)
        return view[0]

    def _brief(self) -> dict[str, Any]:
        return {n: (v["manager"], v["term"], v["role"]) if v else None
                for n, v in self.views(brief=True).items()}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
