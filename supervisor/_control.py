"""The server side of the control socket: a thread that answers ``supervisor ctl``.

Rules:

* It only *translates*: every request becomes a call of the :class:`Supervisor` API
  (thread-safe: it reaches the loop through its socket pair), so the loop stays the only
  owner of the children. One connection at a time, in arrival order.
* Binding: a path that answers a connection belongs to a live supervisor and is refused
  (:class:`ControlInUse`); a socket file nobody answers on was left by a supervisor that
  was killed (``kill -9`` leaves it) and is replaced. A path that is not a socket is
  never removed. The socket is created with mode 0600 (umask 0177 during ``bind``, so
  there is no moment at which it is open to others) and removed at exit if it is still ours.
* Every connection's peer uid is checked with ``SO_PEERCRED``: another user is answered
  ``refused`` and nothing else happens.
* ``reload`` (from ``ctl reload`` or SIGHUP through :meth:`ControlServer.request_reload`)
  reads the tree file with every check; a file with errors changes nothing and the answer
  lists every problem.

Operations (``op``): ``status``; ``start``/``stop``/``restart`` with ``id`` (nested ids as
``pool/worker-1``); ``stop-all`` (every top-level child, right to left; the supervisor
keeps running, as with supervisorctl's ``stop all``); ``reload``.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import stat
import threading
from collections.abc import Callable
from typing import Any

from supervisor._errors import (
    ChildNotFoundError,
    ChildStartError,
    ChildStateError,
    NotRunningError,
    SupervisorError,
)
from supervisor._protocol import decode, encode, peer_uid, read_line
from supervisor._supervisor import Supervisor
from supervisor._types import ChildInfo, ReloadResult

__all__ = ["ControlInUse", "ControlServer", "child_rows"]

log = logging.getLogger("supervisor")

# How long one client may take to send its request: a stuck or malicious client must not
# hold the (single) control thread; ctl sends its request right after connecting.
_REQUEST_TIMEOUT = 5.0

# How long a probe of an existing socket waits for a live supervisor to accept.
_PROBE_TIMEOUT = 1.0


class ControlInUse(SupervisorError):
    """The control socket path is in use by a live supervisor (or is not a socket)."""


def child_rows(children: list[ChildInfo]) -> list[dict[str, Any]]:
    """Flatten a recursive ``which_children`` into status rows (full ids, tree order)."""
    rows: list[dict[str, Any]] = []
    for c in children:
        rows.append(
            {
                "id": c.id,
                "type": c.type,
                "restart": c.restart,
                "pid": c.pid,
                "state": c.status,
                "uptime": None if c.uptime is None else round(c.uptime, 3),
                "restarts": c.restarts,
                "last_exit": None if c.last_exit is None else str(c.last_exit),
                "last_exit_kind": None if c.last_exit is None else c.last_exit.kind,
                "stdout": c.stdout,
                "stderr": c.stderr,
            }
        )
        rows.extend(child_rows(list(c.children)))
    return rows


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class ControlServer:
    """Binds the socket at construction (so a conflict is known before any child starts);
    :meth:`serve` starts answering; :meth:`close` stops and removes the socket."""

    def __init__(
        self,
        sup: Supervisor,
        path: str,
        reload: Callable[[], ReloadResult] | None = None,
    ) -> None:
        self.sup = sup
        self.path = path
        self._reload = reload
        self._sock = _bind(path)
        self._ino = os.stat(path).st_ino
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._closing = False

    def serve(self) -> None:
        """Start answering requests in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name="supervisor-control", daemon=True)
        self._thread.start()

    def request_reload(self) -> None:
        """Ask for a reload (async-signal-safe: one non-blocking write)."""
        try:
            os.write(self._wake_w, b"R")
        except OSError:
            pass

    def close(self) -> None:
        self._closing = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing:
                for key, _ in sel.select():
                    if key.data == "wake":
                        self._on_wake()
                    elif not self._closing:
                        self._accept()
        finally:
            sel.close()

    def _on_wake(self) -> None:
        try:
            data = os.read(self._wake_r, 64)
        except BlockingIOError:
            return
        if b"R" in data and not self._closing:
            log.info("SIGHUP: reloading the tree file")
            try:
                self._do_reload()
            except _Failure as exc:
                log.error("reload rejected, the tree is unchanged: %s", exc)
            except Exception:
                log.exception("reload failed")

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(_REQUEST_TIMEOUT)
            try:
                uid = peer_uid(conn)
                if uid != os.geteuid():
                    log.warning("control: refused a connection from uid %d", uid)
                    conn.sendall(
                        encode(
                            {
                                "ok": False,
                                "kind": "refused",
                                "error": "permission denied: "
                                f"this supervisor only answers uid {os.geteuid()}",
                            }
                        )  # fmt: skip
                    )
                    return
                try:
                    request = decode(read_line(conn))
                except ValueError as exc:
                    conn.sendall(encode({"ok": False, "kind": "bad_request", "error": str(exc)}))
                    return
                conn.settimeout(None)  # the operation may take a child's whole shutdown
                conn.sendall(encode(self._handle(request)))
            except OSError:
                pass  # the client went away

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        child_id = request.get("id")
        try:
            if op == "status":
                result: object = child_rows(self.sup.which_children(recursive=True))
            elif op in ("start", "stop", "restart"):
                if not isinstance(child_id, str) or not child_id:
                    raise _Failure("bad_request", f"{op} needs a child id")
                result = getattr(self, "_" + op)(child_id)
            elif op == "stop-all":
                result = self._stop_all()
            elif op == "reload":
                result = self._do_reload()
            else:
                raise _Failure("bad_request", f"unknown operation {op!r}")
            return {"ok": True, "result": result}
        except _Failure as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}
        except ChildNotFoundError as exc:
            return {"ok": False, "kind": "not_found", "error": self._not_found(exc)}
        except ChildStartError as exc:
            return {"ok": False, "kind": "start_failed", "error": str(exc)}
        except NotRunningError as exc:
            return {"ok": False, "kind": "not_running", "error": str(exc)}
        except SupervisorError as exc:
            return {"ok": False, "kind": "failed", "error": str(exc)}
        except Exception as exc:  # a bug must not end the control thread
            log.exception("control: %r failed", op)
            return {"ok": False, "kind": "failed", "error": repr(exc)}

    def _not_found(self, exc: ChildNotFoundError) -> str:
        message = str(exc).split(" (known:")[0]
        try:
            known = [row["id"] for row in child_rows(self.sup.which_children(recursive=True))]
        except SupervisorError:
            return str(exc)
        return f"{message} (known: {', '.join(known) or 'none'})"

    def _row(self, child_id: str) -> dict[str, Any]:
        for row in child_rows(self.sup.which_children(recursive=True)):
            if row["id"] == child_id:
                return row
        raise ChildNotFoundError(f"no child {child_id!r}")

    def _start(self, child_id: str) -> dict[str, Any]:
        try:
            pid = self.sup.restart_child(child_id)
        except ChildStateError:
            return {"id": child_id, "pid": self._row(child_id)["pid"], "already": True}
        return {"id": child_id, "pid": pid, "already": False}

    def _stop(self, child_id: str) -> dict[str, Any]:
        was = self._row(child_id)["state"]
        self.sup.terminate_child(child_id)
        return {"id": child_id, "already": was != "running"}

    def _restart(self, child_id: str) -> dict[str, Any]:
        row = self._row(child_id)
        if row["restart"] == "temporary" and row["state"] == "running":
            raise _Failure(
                "failed",
                f"child {child_id!r} is temporary: stopping it removes its spec, so it "
                "cannot be restarted (use stop)",
            )
        self.sup.terminate_child(child_id)
        pid = self.sup.restart_child(child_id)
        return {"id": child_id, "pid": pid, "old_pid": row["pid"]}

    def _stop_all(self) -> list[str]:
        stopped = []
        for child in reversed(self.sup.which_children()):
            if child.status == "running":
                self.sup.terminate_child(child.id)
                stopped.append(child.id)
        return stopped

    def _do_reload(self) -> dict[str, list[str]]:
        if self._reload is None:
            raise _Failure("failed", "this supervisor was not started from a tree file")
        try:
            result = self._reload()
        except ValueError as exc:  # ConfigError: every problem, one a line
            raise _Failure("config", f"reload rejected, the tree is unchanged:\n{exc}") from None
        return {
            "started": list(result.started),
            "stopped": list(result.stopped),
            "restarted": list(result.restarted),
            "unchanged": list(result.unchanged),
            "failed": list(result.failed),
        }


def _bind(path: str) -> socket.socket:
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlInUse(f"{path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(_PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ControlInUse(f"{path}: cannot tell whether it is in use: {exc}") from None
            log.info("control: removing stale socket %s (nobody answers on it)", path)
            os.unlink(path)
        else:
            raise ControlInUse(f"{path} is in use by a running supervisor")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock
