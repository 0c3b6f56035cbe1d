"""The data directory itself: where it is, and one node per directory (``flock`` on ``lock``).

See :mod:`clerk._store` for what it holds.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

from clerk._errors import ConfigError

__all__ = ["LOCK_FILE", "DataDirInUse", "check_free", "default_data_dir", "lock_dir",
           "move_aside"]

log = logging.getLogger("clerk.store")

LOCK_FILE = "lock"


class DataDirInUse(ConfigError):
    """Another node holds the data directory."""


def default_data_dir(name: str) -> Path:
    """``$XDG_STATE_HOME/clerk/<node name>`` (``~/.local/state/clerk/<node name>``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return Path(base) / "clerk" / name


def _holder(path: Path) -> str:
    try:
        text = (path / LOCK_FILE).read_text().strip()
    except OSError:
        return "another node"
    return text or "another node"


def lock_dir(path: Path, source: str) -> int:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(source, "data_dir", path,
                          f"cannot be used: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirInUse(source, "data_dir", path,
                               f"is in use by {_holder(path)}: two nodes cannot share a "
                               "data directory (give each node its own)") from None
        raise
    return fd


def check_free(path: Path, source: str = "") -> None:
    """Pre-flight: raise :class:`DataDirInUse` (or ConfigError) if ``path`` cannot be ours."""
    os.close(lock_dir(path, source))


def move_aside(file: Path, reason: str, why: str, beyond: bool = False) -> Path | None:
    """Rename a data file that cannot be used to ``<name>.<reason>-<time>`` (never deleted),
    with a warning naming both paths; the new path (None if it could not be renamed).
    ``beyond``: a journal, the states before it are kept."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = file.with_name(f"{file.name}.{reason}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = file.with_name(f"{file.name}.{reason}-{stamp}.{n}")
    try:
        os.replace(file, target)
    except OSError as exc:
        log.warning("data file %s is %s (%s) and could not be moved aside: %s; starting "
                    "without durable task states", file, reason, why, exc.strerror)
        return None
    log.warning("data file %s is %s (%s): moved aside to %s; starting without durable "
                "task states%s", file, reason, why, target,
                " beyond what is before it" if beyond else "")
    return target
