"""Per-hop timestamps of a run's path through Clerk's processes (tools/bench_hops.py).

Inert unless ``CLERK_TRACE_DIR`` is set. Then every Python process that has this directory on
its ``PYTHONPATH`` (a LocalCluster's nodes, their agents and workers inherit it) wraps a few
functions of the run path as their modules are imported and appends one line per event,
``pid event t_ns extra``, to ``CLERK_TRACE_DIR/<pid>.trace``. ``t_ns`` is
``time.perf_counter_ns()``: CLOCK_MONOTONIC on Linux, one clock for every process of the
machine, so hops between processes subtract. Lines are buffered and written every
``FLUSH_EVERY`` events and at exit (a worker killed at the cluster's stop loses its last few).
Each event costs ~2-4 µs, which the hop table includes: compare hops, not absolute totals.

Also, for ``tools/bench_tail.py`` (where the slowest runs lose their time): each process's
first line is ``clock`` with its wall clock (``time.time_ns()``) at that ``t_ns``, so a wall
time (a run's due time) converts to the shared clock; ``gc`` lines (start/stop and
generation: ``gc.callbacks``); the executor's ``x_sub`` (a run queued: run id, due ms, queued,
busy workers), ``x_take`` (handed to a worker: run id, worker id) and ``x_done`` (its DONE
read); the worker's ``w_run`` (run id), ``hold_in`` (due ms) and ``hold_out`` (the wall time
the run starts at); the loop's ``poll_in``.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("CLERK_TRACE_DIR")
FLUSH_EVERY = 200

if _DIR:
    import atexit
    import functools
    import importlib.abc
    import importlib.machinery
    import re
    import sys
    import time
    from collections.abc import Callable
    from typing import Any

    _ns = time.perf_counter_ns
    _buf: list[str] = []
    _RUN = re.compile(rb'"run_id": ?"([^"]+)"')

    def _flush() -> None:
        if _buf:
            with open(os.path.join(str(_DIR), f"{os.getpid()}.trace"), "a") as f:
                f.write("".join(_buf))
            _buf.clear()

    atexit.register(_flush)

    _buf.append(f"{os.getpid()} clock {_ns()} {time.time_ns()}\n")

    def ev(name: str, extra: object = "") -> None:
        _buf.append(f"{os.getpid()} {name} {_ns()} {extra}\n")
        if len(_buf) >= FLUSH_EVERY:
            _flush()

    import gc

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        ev("gc", f"{phase} {info.get('generation')}")

    gc.callbacks.append(_on_gc)

    def _runs(frames: Any) -> str:
        return ",".join(m.decode() for f in frames for m in _RUN.findall(bytes(f)))

    def _wrap(owner: Any, attr: str, before: Callable[..., None] | None = None,
              after: Callable[..., None] | None = None) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapped(*a: Any, **k: Any) -> Any:
            if before is not None:
                before(*a, **k)
            r = fn(*a, **k)
            if after is not None:
                after(r, *a, **k)
            return r

        setattr(owner, attr, wrapped)

    def _patch(name: str, mod: Any) -> None:
        if name == "clerk._transport":
            t = mod.Transport
            _wrap(t, "poll", before=lambda self, *a, **k: ev("poll_in"),
                  after=lambda r, self, *a, **k: ev("poll_out", len(r)))
            _wrap(t, "send", before=lambda self, to, frames, now: ev("zsend", _runs(frames)))
            if hasattr(t, "wait"):
                _wrap(t, "wait", before=lambda self, s: ev("wait_in"),
                      after=lambda r, self, s: ev("wait_out", r))
            receive = t.receive

            def traced_receive(self: Any) -> Any:
                for inbound in receive(self):
                    ev("zrecv", _runs(inbound.frames))
                    yield inbound

            t.receive = traced_receive
        elif name == "clerk._agent" and os.environ.get("CLERK_TRACE_FINE"):
            _wrap(mod.Agent, "_handle_mailbox", before=lambda self, *a: ev("mailbox_in"))
        elif name == "clerk._agent" and hasattr(mod, "_sleep"):
            sleep = mod._sleep

            def traced_sleep(s: float) -> None:
                ev("wait_in")
                sleep(s)
                ev("wait_out", False)

            mod._sleep = traced_sleep
        elif name == "clerk._routing":
            r = mod.ResultRouting
            _wrap(r, "_dispatch", before=lambda self, d, now: ev("dispatch", d.run_id))
            _wrap(r, "on_result", before=lambda self, m, now, wall: ev("on_result", m.run_id))
            _wrap(r, "on_execute", before=lambda self, m, now, i: ev("on_execute", m.run_id))
            _wrap(r, "_send_result", before=lambda self, res, to: ev("send_result", res.run_id))
        elif name == "clerk._agentfeed" and os.environ.get("CLERK_TRACE_FINE"):
            dec = mod.decode_frames

            def traced_decode(frames: Any) -> Any:
                out = dec(frames)
                ev("decoded")
                return out

            mod.decode_frames = traced_decode
            _wrap(mod.AgentFeed, "apply", before=lambda self, e, now: ev("apply_in"))
            _wrap(mod.AgentFeed, "_flush", before=lambda self, now: ev("flush_in"),
                  after=lambda r, self, now: ev("flush_out"))
        elif name == "clerk._runner":
            _wrap(mod.TaskRunner, "on_tick", before=lambda self, now, wall: ev("tick"))
            if os.environ.get("CLERK_TRACE_FINE"):
                _wrap(mod.TaskRunner, "_replicate",
                      before=lambda self, now, force=False: ev("repl_in"),
                      after=lambda r, self, now, force=False: ev("repl_out"))
        elif name == "clerk._running" and os.environ.get("CLERK_TRACE_FINE"):
            _wrap(mod.Running, "tick", before=lambda self, *a, **k: ev("sched_in"),
                  after=lambda r, self, *a, **k: ev("sched_out"))
        elif name == "clerk._executor":
            _wrap(mod.Executor, "submit", before=lambda self, m, to, now: ev("submit", m.run_id))
            _wrap(mod.Executor, "_on_link", before=lambda self, reader: ev("link_in"))
            def why_queued(self: Any, run_id: str) -> str:
                """Why a run is still queued after its submit (pipelining, clerk._pipeline),
                per worker: idle, gone, full, order, slow (a task not quick); "-" if not."""
                if not self.queue.has_run(run_id):
                    return "-"
                job = next((j for j in self.queue if j.msg.run_id == run_id), None)
                out = []
                for w in self.workers.values():
                    jobs = w.jobs() if hasattr(w, "jobs") else [w.job] * (w.job is not None)
                    if w.identity is None:
                        out.append("gone")
                    elif not jobs:
                        out.append("idle")
                    elif len(jobs) > 8:
                        out.append("full")
                    elif job is not None and jobs[-1].start > job.start:
                        out.append("order")
                    elif any(getattr(self, "_quick", {}).get(j.msg.task, 0) < 2 for j in jobs):
                        out.append("slow")
                    else:
                        out.append("ok?")
                return ",".join(out)

            _wrap(mod.Executor, "submit", after=lambda r, self, m, to, now: ev(
                "x_sub", f"{m.run_id} {m.due_ms} {len(self.queue)} "
                         f"{sum(w.job is not None for w in self.workers.values())} "
                         f"{why_queued(self, m.run_id)}"))
            _wrap(mod.Executor, "_start", after=lambda r, self, w, job, *a, **k: ev(
                "x_take", f"{job.msg.run_id} {w.wid}") if r else None)
            _wrap(mod.Executor, "_on_done", before=lambda self, ident, data: ev(
                "x_done", data[0] if type(data) is list and data else ""))
            send_msg = mod.send_msg

            def traced_send_msg(*a: Any, **k: Any) -> Any:
                ev("run_send")
                return send_msg(*a, **k)

            mod.send_msg = traced_send_msg
        elif name == "clerk._worker":
            # The worker's loop calls _run_request (earlier trees: _run_message); the run id
            # is the first string of the RUN's body (an array, or an object's "run").
            attr = "_run_request" if hasattr(mod, "_run_request") else "_run_message"
            run_request = getattr(mod, attr)

            def traced_run_request(body: bytes, cache: Any) -> Any:
                b = bytes(body)
                m = _RUN.search(b)
                ev("w_run_in", (m.group(1) if m else b.split(b'"')[1]).decode())
                out = run_request(body, cache)
                ev("w_run_out")
                return out

            setattr(mod, attr, traced_run_request)
            _wrap(mod, "_run", before=lambda run, *a, **k: ev("w_run", run))
            hold = mod.hold_until

            def traced_hold(due_ms: float, *a: Any, **k: Any) -> float:
                ev("hold_in", due_ms)
                wall: float = hold(due_ms, *a, **k)
                ev("hold_out", repr(wall))
                return wall

            mod.hold_until = traced_hold

    _WANT = {"clerk._transport", "clerk._agent", "clerk._agentfeed", "clerk._routing",
             "clerk._runner", "clerk._running",
             "clerk._executor", "clerk._worker"}

    class _Finder(importlib.abc.MetaPathFinder):
        """Patches the modules of ``_WANT`` right after they are executed."""

        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname not in _WANT:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            loader: Any = spec.loader
            execute = loader.exec_module

            def exec_module(module: Any) -> None:
                execute(module)
                try:
                    _patch(fullname, module)
                except Exception as exc:  # a renamed function: say so, run untraced
                    sys.stderr.write(f"hoptrace: cannot trace {fullname}: {exc!r}\n")

            loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Finder())
