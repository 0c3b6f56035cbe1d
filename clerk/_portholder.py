"""Who holds a TCP port: the words a node uses when it cannot bind its own.

"Address already in use" alone sends an operator hunting; the node says which address and,
where ``psutil`` can see it (processes of the same user, or any as root), which process holds
the port: ``pid 4242 (python -m http.server 7400)``.
"""

from __future__ import annotations

import errno

__all__ = ["EXIT_CANNOT_LISTEN", "EXIT_CANNOT_START", "holders", "in_use"]

#: The agent's exit code when it cannot bind its mailbox (port taken, address not local) or
#: its data directory is in use: retrying is pointless, so its supervisor does not (the
#: agent's spec lists it in ``shutdown_exits``) and the node exits with 2 at once.
EXIT_CANNOT_LISTEN = 2
#: The agent's exit code when it could not start: building it raised, or its worker pool gave
#: up before any worker was ever ready (a worker that cannot start at all: its interpreter,
#: its site hooks, the task modules). Starting it again would fail the same way, and each try
#: takes seconds, longer than the node's restart intensity (3 in 10 s) can count: the node
#: would loop. Not restarted either (``shutdown_exits``); the node exits with 1 at once.
EXIT_CANNOT_START = 3


def holders(port: int, ip: str = "") -> list[str]:
    """``pid N (command line)`` of every process with a TCP socket bound to local ``port``
    (on ``ip``, or any address when ``ip`` is empty or the socket is bound to all).
    Listeners first. Empty when psutil cannot tell (another user's process, no psutil)."""
    try:
        import psutil

        conns = psutil.net_connections(kind="tcp")
    except Exception:  # psutil missing, or /proc unreadable: say nothing rather than fail
        return []
    found: dict[int, bool] = {}  # pid -> listens
    for c in conns:
        if not c.laddr or c.laddr.port != port or c.pid is None:
            continue
        if ip and c.laddr.ip not in (ip, "0.0.0.0", "::", "::ffff:" + ip):
            continue
        found[c.pid] = found.get(c.pid, False) or c.status == psutil.CONN_LISTEN
    out = []
    for pid in sorted(found, key=lambda p: (not found[p], p)):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline()) or psutil.Process(pid).name()
        except psutil.Error:
            cmd = "?"
        if len(cmd) > 120:
            cmd = cmd[:117] + "..."
        out.append(f"pid {pid} ({cmd})")
    return out


def in_use(host: str, port: int, ip: str = "", err: int = errno.EADDRINUSE) -> str:
    """The problem with ``host:port``: ``is already in use on HOST (held by pid N (...))``,
    or for another errno its text (e.g. the address is not one of this machine's)."""
    if err != errno.EADDRINUSE:
        import os

        return f"cannot be bound on {host}: {os.strerror(err)}"
    held = holders(port, ip)
    tail = f" (held by {', '.join(held)})" if held else ""
    return f"is already in use on {host}{tail}"
