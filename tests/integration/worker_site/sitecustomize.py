"""Imported at start-up by every Python process of a test's node (the node, its agent, its
workers) whose PYTHONPATH holds this directory. It wraps a task worker's entry point
(``clerk._worker.main``, right after its module is executed) for the test, before the worker
connects to its agent; each hook is installed only when its variable is set:

* ``CLERK_TEST_WORKER_GATE`` names a file: the worker waits for it to exist (at most 60 s),
  so the test holds a node's workers down for as long as it needs a state that otherwise
  lasts a few hundred milliseconds after ``start()`` (``tests/integration/test_trigger_nodes.py``:
  a manager whose workers are not up yet).
* ``CLERK_TEST_WORKER_DOOM`` names a file: while it exists the worker exits with code 1, a
  worker that dies at start-up, before its READY, every time
  (``tests/integration/test_poison_task.py``). The node and its agent are untouched.
* ``CLERK_TEST_AGENT_FAIL`` (any value): building the agent (``clerk._agent.Agent``) raises
  RuntimeError, an agent that cannot start (``tests/integration/test_cannot_start.py``).
* ``CLERK_TEST_AGENT_GATE`` names a file: every agent process of the node but its first (a
  restarted one) writes its pid to ``<file>.waiting`` and waits for the file to exist (at most
  60 s) at the moment ``CLERK_TEST_AGENT_GATE_AT`` names: ``import`` (as the agent's modules
  load: ``clerk._agentmain`` is imported, by its entry point ``clerk._agentboot``) or ``run``
  (built, as ``Agent.run`` is called: it writes ``<file>.asked`` once a stop request
  reached it meanwhile). A test stops the node meanwhile
  (``tests/integration/test_agent_sigterm.py``)."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Callable
from typing import Any

GATE_ENV = "CLERK_TEST_WORKER_GATE"
DOOM_ENV = "CLERK_TEST_WORKER_DOOM"
AGENT_FAIL_ENV = "CLERK_TEST_AGENT_FAIL"
AGENT_GATE_ENV = "CLERK_TEST_AGENT_GATE"
AGENT_GATE_AT_ENV = "CLERK_TEST_AGENT_GATE_AT"


def _before(main: Any, step: Callable[[], None]) -> Any:
    @functools.wraps(main)
    def step_then_main(*args: Any, **kwargs: Any) -> Any:
        step()
        return main(*args, **kwargs)

    return step_then_main


def _wait_for(gate: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


def _exit_if(doom: str) -> None:
    if os.path.exists(doom):
        os._exit(1)


def _fail_agent(module: Any) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"test: {AGENT_FAIL_ENV} is set")

    module.Agent.__init__ = fail


def _agent_gate(gate: str, asked: Callable[[], bool] = lambda: False) -> None:
    """Let the node's first agent through; any later one waits for ``gate``, and writes
    ``<gate>.asked`` once ``asked()`` (it was asked to stop meanwhile). (Not the node's own
    process: it imports the agent's entry module too, to check its spec.)"""
    if not sys.argv or not sys.argv[0].endswith("_boot.py"):
        return
    first = gate + ".first"
    try:
        with open(first, "x"):
            return
    except FileExistsError:
        pass
    with open(gate + ".waiting", "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        if asked() and not os.path.exists(gate + ".asked"):
            with open(gate + ".asked", "w"):
                pass
        time.sleep(0.01)


def _gate_agent_run(gate: str, module: Any) -> None:
    run = module.Agent.run

    @functools.wraps(run)
    def gated(self: Any) -> Any:
        _agent_gate(gate, lambda: bool(self._stop_requests))
        return run(self)

    module.Agent.run = gated


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps ``clerk._worker.main`` with ``step`` right after the module is executed (or,
    with ``module``, calls ``patch`` with that module then)."""

    def __init__(self, step: Callable[[], None] | None, module: str = "clerk._worker",
                 patch: Callable[[Any], None] | None = None) -> None:
        self.step, self.module, self.patch = step, module, patch

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _Finder):
                continue
            spec = finder.find_spec(fullname, path, target)  # type: ignore[attr-defined]
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        steps = [f.step for f in sys.meta_path
                 if isinstance(f, _Finder) and f.module == fullname and f.step is not None]
        patches = [f.patch for f in sys.meta_path
                   if isinstance(f, _Finder) and f.module == fullname and f.patch is not None]
        if loader is None:
            return None
        inner: importlib.abc.Loader = loader  # (narrowed, for the class below)

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
                return inner.create_module(spec)

            def exec_module(self, module: Any) -> None:
                inner.exec_module(module)
                for step in steps:
                    module.main = _before(module.main, step)
                for patch in patches:
                    patch(module)

        spec.loader = _Loader()
        return spec


if os.environ.get(GATE_ENV):
    sys.meta_path.insert(0, _Finder(functools.partial(_wait_for, os.environ[GATE_ENV])))
if os.environ.get(DOOM_ENV):
    sys.meta_path.insert(0, _Finder(functools.partial(_exit_if, os.environ[DOOM_ENV])))
if os.environ.get(AGENT_FAIL_ENV):
    sys.meta_path.insert(0, _Finder(None, "clerk._agent", _fail_agent))
if os.environ.get(AGENT_GATE_ENV):
    if os.environ.get(AGENT_GATE_AT_ENV, "import") == "run":
        sys.meta_path.insert(0, _Finder(None, "clerk._agent", functools.partial(
            _gate_agent_run, os.environ[AGENT_GATE_ENV])))
    else:
        sys.meta_path.insert(0, _Finder(None, "clerk._agentmain", lambda module: _agent_gate(
            os.environ[AGENT_GATE_ENV])))
