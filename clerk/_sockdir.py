"""Private directories for a process's Unix sockets, and the ones dead processes left behind.

A node's host process binds its log sink (``clerk-log-*/log``, :mod:`clerk._logging`) and its
agent binds the worker link (``clerk-workers-*/workers``, :mod:`clerk._executor`) in a
directory of their own under the temp directory, mode 0700, removed when they close. A
process killed with SIGKILL (or a host that crashed) cannot remove its own. Rules:

* **Made with a sweep** (:func:`socket_dir`): before making its directory, a process removes
  the directories of the same prefix that a dead process left: owned by this user, holding
  nothing but the one socket file of that prefix, and either that socket refuses a
  connection (``ECONNREFUSED``: nobody has it bound any more) or, with no socket file at all,
  older than ``EMPTY_AGE_S`` (a process between ``mkdtemp`` and ``bind`` is never swept).
* **Nothing else is touched**: another user's directories, a directory with any other entry,
  a socket that accepts or answers with any other error (a full backlog: ``EAGAIN``) stay.
* **Bounded**: at most ``MAX_SWEPT`` directories are looked at per call (the rest on later
  starts), so a start never pays for a temp directory full of them.
* **A stream socket listens before it has its name** (:func:`bind_listening`): bound under a
  temporary name, listening, then renamed to its name. Bound and not yet listening, a stream
  socket refuses connections exactly as a dead one does, and another process starting then
  (a host starting several nodes at once) swept the live directory away: the agent's workers
  could not connect (``FileNotFoundError``) and its worker supervisor gave up (the clean-clone
  CI of 2026-12-04 at ``65dd9bc``). A directory with the temporary name in it is not swept
  while that socket is younger than ``EMPTY_AGE_S`` (a live process holds it for
  microseconds: bind, listen, rename); older, refusing connections, it is what a process
  killed between its bind and its listen left, and goes as a dead one does.
* **Paths fit**: an AF_UNIX address holds ``MAX_SOCKET_PATH`` bytes. :func:`socket_dir`
  checks the longest name that will be bound in the directory (``<name>.binding`` for
  :func:`bind_listening`: ``suffix``) before anything is bound, and a path too long (a long
  temporary directory) is a :class:`clerk.ConfigError` naming that path, not an ``OSError``
  from ``bind`` deep in a node's start.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

from clerk._errors import ConfigError

__all__ = ["BINDING", "EMPTY_AGE_S", "MAX_SOCKET_PATH", "MAX_SWEPT", "bind_listening",
           "socket_dir", "sweep"]

#: A directory of ours with no socket in it yet is a process between mkdtemp and bind, unless
#: it is older than this.
EMPTY_AGE_S = 60.0
#: Directories looked at per sweep, at most.
MAX_SWEPT = 256
#: The longest path an AF_UNIX address holds, in bytes (Linux's ``sun_path`` is 108 with its
#: closing NUL).
MAX_SOCKET_PATH = 107
#: What :func:`bind_listening` binds first: the endpoint's path with this after it.
BINDING = ".binding"


def _dead(path: str, name: str, kind: int, now: float) -> bool:
    """Is ``path`` a directory a dead process left (see the module docstring)?"""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return False
        entries = os.listdir(path)
    except OSError:
        return False
    if not entries:
        return now - st.st_mtime > EMPTY_AGE_S
    if entries != [name] and entries != [name + BINDING]:
        return False
    endpoint = os.path.join(path, entries[0])
    try:
        sock_st = os.lstat(endpoint)
    except OSError:
        return False
    if not stat.S_ISSOCK(sock_st.st_mode):
        return False
    if entries[0] != name and now - sock_st.st_mtime <= EMPTY_AGE_S:
        return False  # bind_listening at work (bound, maybe not listening yet)
    with socket.socket(socket.AF_UNIX, kind) as probe:
        probe.setblocking(False)
        try:
            probe.connect(endpoint)
        except OSError as exc:
            return exc.errno == errno.ECONNREFUSED
    return False


def sweep(prefix: str, name: str, kind: int, directory: str | None = None) -> int:
    """Remove the directories ``<directory>/<prefix>*`` that dead processes left, whose socket
    is ``name`` of socket type ``kind``; returns how many went."""
    base = directory or tempfile.gettempdir()
    try:
        found = [e for e in os.listdir(base) if e.startswith(prefix)]
    except OSError:
        return 0
    now = time.time()
    removed = 0
    for entry in found[:MAX_SWEPT]:
        path = os.path.join(base, entry)
        if _dead(path, name, kind, now):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def socket_dir(prefix: str, name: str, kind: int, *, suffix: str = "") -> tuple[str, str]:
    """Sweep the leftovers of ``prefix``, then make a private directory for the socket
    ``name``: returns ``(directory, endpoint)``. ``suffix``: the longest name bound there is
    ``name + suffix`` (``BINDING`` for :func:`bind_listening`).

    Raises:
        ConfigError: that longest path is over ``MAX_SOCKET_PATH`` bytes (it names the path
            and the temporary directory it is in).
    """
    sweep(prefix, name, kind)
    path = tempfile.mkdtemp(prefix=prefix)
    endpoint = os.path.join(path, name)
    longest = os.fsencode(endpoint + suffix)
    if len(longest) > MAX_SOCKET_PATH:
        os.rmdir(path)
        raise ConfigError(
            "the temporary directory ($TMPDIR)", "TMPDIR", Path(os.path.dirname(path)),
            f"too long for a Unix socket: {os.fsdecode(longest)!r} is {len(longest)} bytes, "
            f"over the {MAX_SOCKET_PATH} an AF_UNIX address holds; set TMPDIR to a shorter "
            "directory")
    os.chmod(path, 0o700)
    return path, endpoint


def bind_listening(sock: socket.socket, endpoint: str, backlog: int) -> None:
    """Bind the stream socket ``sock`` to ``endpoint``, listening from the moment the name
    exists (see the module docstring): bound to ``<endpoint>.binding``, listening, renamed."""
    binding = endpoint + BINDING
    sock.bind(binding)
    sock.listen(backlog)
    os.rename(binding, endpoint)
