"""Durable file replacement, shared by the task table's store and the voter file.

The rule: write a temporary file beside the target, fsync it, rename it over the target,
fsync the directory. A crash at any point leaves either the old file or the new one, whole,
and once this returns the new one survives a power loss. On failure the temporary file is
removed and the ``OSError`` is raised for the caller to report.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_durably"]


def replace_durably(file: Path, data: bytes, tmp: Path) -> None:
    """Replace ``file`` by ``data`` through ``tmp`` (same directory), durably."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, file)
        dfd = os.open(file.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
