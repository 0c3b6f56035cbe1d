"""Imported at start-up by every Python process of a test's node whose PYTHONPATH holds this
directory (``tests/integration/test_poison_task.py``): when ``CLERK_TEST_WORKER_DOOM`` names a
file and that file exists, a task worker (``clerk._worker.main``) exits with code 1 before it
connects to its agent: a worker that dies at start-up, before its READY, every time. The node
and its agent are untouched. Installed only when the variable is set."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

DOOM_ENV = "CLERK_TEST_WORKER_DOOM"


def _doomed(main: Any, doom: str) -> Any:
    @functools.wraps(main)
    def exit_or_main(*args: Any, **kwargs: Any) -> Any:
        if os.path.exists(doom):
            os._exit(1)
        return main(*args, **kwargs)

    return exit_or_main


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps ``clerk._worker.main`` right after the module is executed."""

    def __init__(self, doom: str) -> None:
        self.doom = doom

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
        loader, doom = spec.loader, self.doom

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                module.main = _doomed(module.main, doom)

        spec.loader = _Loader()
        return spec


if os.environ.get(DOOM_ENV):
    sys.meta_path.insert(0, _Finder(os.environ[DOOM_ENV]))
