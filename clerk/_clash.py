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
    """Raise ImportError naming the clash if ``supervisor`` is not Clerk's own package."""
    try:
        import supervisor
    except ImportError as exc:
        if "supervisord" in str(exc):
            raise  # our supervisor/__init__.py found supervisord's files beside it
        raise ImportError(f"cannot import Clerk's 'supervisor' package: {exc}. "
                          f"{CLASH_FIX}") from exc
    if getattr(supervisor, "__clerk_supervisor__", False) is not True:
        where = getattr(supervisor, "__file__", None) or "?"
        raise ImportError(f"'import supervisor' found supervisord's package at {where}, not "
                          f"Clerk's. {CLASH_FIX}")


check_supervisor_package()  # at import: clerk/__init__.py imports this module first
