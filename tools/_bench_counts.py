"""Counters of a running LocalCluster for tools/bench_tasks.py, per process role and thread kind.

Counts are much less sensitive to a shared machine's load than times, so the throughput
measurement (c) reads them first:

* **Wake-ups**: voluntary context switches (a thread blocked, then woken) and involuntary ones
  (a thread preempted), from ``/proc/PID/task/TID/status``, summed per process role (the
  manager's agent, the other agents, the workers, the hosts) and thread kind (the loop, the
  ZeroMQ I/O thread, other threads). Every ZeroMQ message costs its sender's I/O thread, the
  receiver's I/O thread and the receiver's loop a wake-up; a loop turn that blocks in its poll
  is one.
* **CPU per thread kind**: user + system time of each thread (``/proc/PID/task/TID/stat``).
* **The wire and the loop** (``clerk status``'s transport counters, per agent role): protocol
  messages sent, the ZeroMQ sends that carried them, ZeroMQ messages received, loop turns,
  ``zmq.poll`` calls and the polls that returned nothing (a timer, not traffic, woke the loop).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from _bench_floor import cpu_of

from clerk.testing import LocalCluster

__all__ = ["WIRE_FIELDS", "by_role", "clerk_role_pids", "clerk_roles", "fmt_threads", "fmt_wakeups",
           "fmt_wire", "threads_of", "wire_counts"]

_TICK = os.sysconf("SC_CLK_TCK")


def _thread_kind(pid: int, tid: int, comm: str) -> str:
    if tid == pid:
        return "loop" if comm.startswith("python") or "clerk" in comm else "main"
    if comm.startswith("ZMQbg/IO"):
        return "zmq io"
    if comm.startswith("ZMQbg"):
        return "zmq other"
    return "threads"


def clerk_role_pids(c: LocalCluster, manager: str) -> dict[int, str]:
    """The role of every process of a running cluster: the manager's agent, the other agents,
    every worker, and the rest (each node's host process, which writes the log, and the
    supervisors' no-orphans watchdogs)."""
    role_of: dict[int, str] = {}
    for name in c.names:
        top = c.procs[name].pid
        for pid in c.pids(name):
            try:
                p = psutil.Process(pid)
                cmd, parent = " ".join(p.cmdline()), p.ppid()
            except psutil.Error:
                continue
            if pid == top or "--watchdog" in cmd:
                role_of[pid] = "hosts"
            elif parent == top:
                role_of[pid] = "manager agent" if name == manager else "agents"
            else:
                role_of[pid] = "workers"
    return role_of


def clerk_roles(c: LocalCluster, manager: str) -> dict[str, Callable[[], float]]:
    """CPU seconds so far per process role of a running cluster (:func:`clerk_role_pids`)."""
    role_of = clerk_role_pids(c, manager)
    roles = ["manager agent", "agents", "workers", "hosts"]

    def cpu(role: str) -> Callable[[], float]:
        return lambda: sum(cpu_of(p) for p, k in role_of.items() if k == role)

    return {r: cpu(r) for r in roles if r in role_of.values()}


def threads_of(c: LocalCluster, manager: str) -> dict[str, tuple[int, int, float]]:
    """Per ``role/thread kind`` so far: voluntary and involuntary context switches and CPU
    seconds (user + system), summed over the role's processes and their threads of that kind.
    A thread that ended meanwhile takes its counts with it (a worker replaced: rare)."""
    out: dict[str, tuple[int, int, float]] = {}
    for pid, role in clerk_role_pids(c, manager).items():
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                comm = (task / "comm").read_text().strip()
                status = (task / "status").read_text()
                stat = (task / "stat").read_text()
            except OSError:
                continue
            vol = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
            invol = re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M)
            if vol is None or invol is None:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
            cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (14, 15)
            key = f"{role}/{_thread_kind(pid, int(task.name), comm)}"
            v, i, t = out.get(key, (0, 0, 0.0))
            out[key] = (v + int(vol.group(1)), i + int(invol.group(1)), t + cpu)
    return out


def fmt_wakeups(w: dict[str, tuple[float, float, float]]) -> str:
    """``manager agent/loop 1.20 (+0.10) + ... = 9.8 (+1.2)``: voluntary (involuntary)
    context switches per run by role and thread kind, and their totals."""
    rows = sorted((k, v) for k, v in w.items() if v[0] + v[1] >= 0.005)
    parts = " + ".join(f"{k} {v[0]:.2f} (+{v[1]:.2f})" for k, v in rows)
    return (f"{parts} = {sum(v[0] for v in w.values()):.2f} "
            f"(+{sum(v[1] for v in w.values()):.2f} involuntary)")


def by_role(w: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    """Voluntary context switches per run summed over each role's thread kinds."""
    out: dict[str, float] = {}
    for key, (vol, _invol, _cpu) in w.items():
        role = key.split("/", 1)[0]
        out[role] = out.get(role, 0.0) + vol
    return out


def fmt_threads(w: dict[str, tuple[float, float, float]]) -> str:
    """CPU µs per run by role and thread kind (clock ticks: read long windows only)."""
    rows = sorted((k, v) for k, v in w.items() if v[2] >= 0.5)
    return " + ".join(f"{k} {v[2]:.0f}" for k, v in rows)


#: The per-run transport counters of an agent role, in the order of :func:`wire_counts`.
WIRE_FIELDS = ("messages_sent", "sent", "received", "turns", "polls", "polls_empty")


def wire_counts(c: LocalCluster, manager: str) -> dict[str, tuple[int, ...]]:
    """Per agent role, so far: :data:`WIRE_FIELDS` (a build without batches counts every
    message as a send of its own; one without the loop's counters, 0 turns and polls)."""
    out: dict[str, tuple[int, ...]] = {}
    for name in c.names:
        try:
            t = c.status(name, timeout=10).get("transport", {})
        except Exception as exc:  # an overloaded node (a rate it cannot hold): counts unknown
            print(f"  warning: no transport counts from {name}: {exc}", file=sys.stderr)
            return {}
        role = "manager agent" if name == manager else "agents"
        sends = t.get("sent", 0)
        row = (t.get("messages_sent", sends), sends, *(t.get(f, 0) for f in WIRE_FIELDS[2:]))
        old = out.get(role, (0,) * len(WIRE_FIELDS))
        out[role] = tuple(a + b for a, b in zip(old, row, strict=True))
    return out


def fmt_wire(wire: dict[str, tuple[float, ...]]) -> str:
    """``manager agent 2.1 msgs in 1.2 sends, 1.3 recvs, 2.0 turns, 1.9 polls (0.4 empty)``
    per run and agent role."""
    return "; ".join(f"{k} {m:.2f} msgs in {s:.2f} sends, {r:.2f} recvs, {t:.2f} turns, "
                     f"{p:.2f} polls ({e:.2f} empty)"
                     for k, (m, s, r, t, p, e) in wire.items())
