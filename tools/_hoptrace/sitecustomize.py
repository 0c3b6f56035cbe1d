"""Per-hop timestamps of a run's path through Clerk's processes (tools/bench_hops.py).

Inert unless ``CLERK_TRACE_DIR`` is set. Then every Python process that has this directory on
its ``PYTHONPATH`` (a LocalCluster's nodes, their agents and workers inherit it) wraps a few
functions of the run path as their modules are imported and appends one line per event,
``pid event t_ns extra``, to ``CLERK_TRACE_DIR/<pid>.trace``. ``t_ns`` is
``time.perf_counter_ns()``: CLOCK_MONOTONIC on Linux, one clock for every process of the
machine, so hops between processes subtract. Lines are buffered and written every
``FLUSH_EVERY`` events and at exit (a worker killed at the cluster's stop loses its last few).
Each event costs ~2-4 µs, which the hop table includes: compare hops, not absolute totals.
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

    def ev(name: str, extra: object = "") -> None:
        _buf.append(f"{os.getpid()} {name} {_ns()} {extra}\n")
        if len(_buf) >= FLUSH_EVERY:
            _flush()

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
            _wrap(t, "poll", after=lambda r, self, *a, **k: ev("poll_out", len(r)))
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
