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
  RuntimeError, an agent that cannot start (``tests/integration/test_cannot_start.py``)."""

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
