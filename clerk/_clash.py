"""Refuse to run with supervisord's ``supervisor`` package in place of ours.

supervisord (the Python process control system) installs a top-level package named
``supervisor``, the import name of Clerk's own supervision trees. ``pip check`` sees no
conflict (the distributions have different names), and what happens depends on which was
installed last: either ``import supervisor`` finds supervisord's package, or the two packages'
files are mixed in one directory. Either way Clerk would fail later with an obscure
``ImportError`` (``cannot import name 'ChildSpec'``). This check runs first, when ``clerk`` is
imported, and names the clash and the fix instead.
"""

from __future__ import annotations

__all__ = ["CLASH_FIX", "check_supervisor_package"]

CLASH_FIX = (
    "Clerk's 'supervisor' package and supervisord's share that import name and cannot be "
    "installed in the same environment. Fix: run them from separate virtual environments "
    "(e.g. `pipx install supervisor` for supervisord), then repair this one: "
    "`pip uninstall -y supervisor clerk-cluster && pip install clerk-cluster`."
)


def check_supervisor_package() -> None:
    """Raise ImportError naming the clash if ``supervisor`` is not Clerk's own package.

    Checked without importing the package (a task worker imports ``clerk`` but never needs
    the supervisor, whose import costs ~5 MiB): the ``supervisor/__init__.py`` that
    ``import supervisor`` would run must be ours (it sets ``__clerk_supervisor__``), with no
    supervisord module mixed in beside it (what ``supervisor/_clash.py`` refuses)."""
    import sys

    loaded = sys.modules.get("supervisor")
    if loaded is not None:
        where = getattr(loaded, "__file__", None) or "?"
        ours = getattr(loaded, "__clerk_supervisor__", False) is True
    else:
        import importlib.util
        import os

        try:
            spec = importlib.util.find_spec("supervisor")
        except (ImportError, ValueError) as exc:
            raise ImportError(f"cannot import Clerk's 'supervisor' package: {exc}. "
                              f"{CLASH_FIX}") from exc
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            raise ImportError(f"cannot import Clerk's 'supervisor' package: not found. "
                              f"{CLASH_FIX}")
        where = spec.origin
        if os.path.exists(os.path.join(os.path.dirname(where), "supervisord.py")):
            import supervisor  # noqa: F401  (its own check names the mixed files)
        with open(where, encoding="utf-8", errors="replace") as fh:
            ours = "\n__clerk_supervisor__ = True" in fh.read()
    if not ours:
        raise ImportError(f"'import supervisor' found supervisord's package at {where}, not "
                          f"Clerk's. {CLASH_FIX}")


check_supervisor_package()  # at import: clerk/__init__.py imports this module first
