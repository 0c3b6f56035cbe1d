"""Imported at start-up by every Python process of a test's node (the node, its agent, its
workers) whose PYTHONPATH holds this directory (``tests/integration/test_trigger_nodes.py``):
when ``CLERK_TEST_WORKER_GATE`` names a file, a task worker (``clerk._worker.main``) waits
for that file to exist before it connects to its agent and says ready (at most 60 s). The
test thereby holds a node's workers down for as long as it needs a state that otherwise
lasts a few hundred milliseconds after ``start()`` (a manager whose workers are not up yet).
Installed only when the variable is set."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import time
from typing import Any

GATE_ENV = "CLERK_TEST_WORKER_GATE"


def _gated(main: Any, gate: str) -> Any:
    @functools.wraps(main)
    def wait_then_main(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return main(*args, **kwargs)

    return wait_then_main


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps ``clerk._worker.main`` right after the module is executed."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "clerk._worker":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)  # type: ignore[attr-defined]
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        gate = self.gate

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                module.main = _gated(module.main, gate)

        spec.loader = _Loader()
        return spec


if os.environ.get(GATE_ENV):
    sys.meta_path.insert(0, _Finder(os.environ[GATE_ENV]))
