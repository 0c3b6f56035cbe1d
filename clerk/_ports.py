"""Ports for test clusters that nobody else takes: reserved outside the kernel's ephemeral
range, one ``flock`` per port shared by every process on the machine.

A port found free by binding port 0 and letting go (what ``free_ports`` did) can be taken
before the node binds it: the kernel hands ports of its ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``) to every outgoing connection as its source port,
and another test process picking "a free port" the same way can pick the same number. So:

* ports are picked from a pool *outside* the ephemeral range (``10000`` up to the range's
  start, and above its end; ``$CLERK_TEST_PORTS=LO-HI`` sets the pool instead), where the
  kernel never picks a source port;
* each port is claimed with ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<dir>/<port>.lock``
  (``$CLERK_PORTS_DIR``, default ``<tmp>/clerk-ports``), held by :class:`PortReservation`
  until it is released or the process ends (the kernel drops a dead process's locks), so two
  test processes never hold the same port;
* while the lock is held the port is checked to be bindable and listenable on the address
  the node uses, as ZeroMQ binds it (``SO_REUSEADDR``: a port in ``TIME_WAIT`` is fine, one
  that something listens on or is connected from is not);
* a released lock file is unlinked while still locked. A process that opened the file before
  that, and then gets the lock, finds the path gone or naming another file (``fstat`` against
  ``stat``) and lets go: only the file the path names counts, so the directory holds the ports
  in use, not every port ever used;
* a killed process cannot unlink its files (the kernel only drops its locks), so a
  reservation's first ``take`` sweeps the directory (:func:`sweep`): every ``<port>.lock`` it
  can lock at once is nobody's, and is unlinked while locked, as a release does. A file held
  by a live process cannot be locked and is left alone; one that a claimer opened just before
  the sweep unlinked it is refused by that claimer's ``fstat`` check, as after a release.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import fcntl
import os
import random
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DEFAULT_POOL_START",
    "EPHEMERAL_RANGE_FILE",
    "PortReservation",
    "PortsExhausted",
    "ephemeral_range",
    "free_ports",
    "listens",
    "lock_dir",
    "pool",
    "port_bindable",
    "sweep",
]

EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
#: Linux's default ephemeral range, used where the file above cannot be read.
DEFAULT_EPHEMERAL = (32768, 60999)
#: The pool starts here (below are well-known and registered services more often).
DEFAULT_POOL_START = 10000
POOL_ENV = "CLERK_TEST_PORTS"
DIR_ENV = "CLERK_PORTS_DIR"


class PortsExhausted(RuntimeError):
    """No port of the pool could be reserved (all locked by others, or in use)."""


def ephemeral_range(path: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range, both ends included (Linux's default if ``path``
    cannot be read). A malformed file is an error naming it."""
    try:
        text = Path(path).read_text()
    except OSError:
        return DEFAULT_EPHEMERAL
    parts = text.split()
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{path}: expected two port numbers, got {text.strip()!r}") from None
    return lo, hi


def _parse_pool(text: str, source: str) -> tuple[int, int]:
    lo_s, sep, hi_s = text.strip().partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        lo = hi = -1
    if not sep or not 1 <= lo <= hi <= 65535:
        raise ValueError(f"{source}={text!r}: expected LO-HI, two ports from 1 to 65535 "
                         "with LO <= HI, e.g. 20000-29999")
    return lo, hi


def pool(ephemeral: tuple[int, int] | None = None, env: dict[str, str] | None = None,
         ) -> list[int]:
    """The ports a reservation may pick from: ``$CLERK_TEST_PORTS`` (LO-HI) or
    ``DEFAULT_POOL_START``..65535, less the ephemeral range either way.

    Raises:
        ValueError: ``$CLERK_TEST_PORTS`` is malformed, or leaves no port outside the
            ephemeral range (the message names both).
    """
    env = dict(os.environ) if env is None else env
    eph_lo, eph_hi = ephemeral if ephemeral is not None else ephemeral_range()
    spec = env.get(POOL_ENV)
    lo, hi = (_parse_pool(spec, POOL_ENV) if spec
              else (DEFAULT_POOL_START, 65535))
    ports = [p for p in range(lo, hi + 1) if not eph_lo <= p <= eph_hi]
    if not ports:
        where = f"{POOL_ENV}={spec}" if spec else f"the default pool {lo}-{hi}"
        raise ValueError(f"{where} lies inside the ephemeral port range {eph_lo}-{eph_hi} "
                         f"({EPHEMERAL_RANGE_FILE}): set {POOL_ENV} to ports outside it")
    return ports


def lock_dir(env: dict[str, str] | None = None) -> Path:
    """Where the per-port lock files live (``$CLERK_PORTS_DIR`` or ``<tmp>/clerk-ports``)."""
    env = dict(os.environ) if env is None else env
    return Path(env.get(DIR_ENV) or Path(tempfile.gettempdir()) / "clerk-ports")


def _ensure_dir(path: Path) -> None:
    """Create ``path`` shared by every user (mode 1777, like /tmp); refuse a symlink or a
    file there."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        pass
    else:
        with contextlib.suppress(OSError):  # not ours to change if another user made it
            path.chmod(0o1777)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError(f"{path}: the port lock directory is not a directory "
                           f"(set ${DIR_ENV} elsewhere)")


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP listener can be set up on ``host:port`` now, the way ZeroMQ and
    ``http.server`` set theirs up (``SO_REUSEADDR``, bind, listen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError:
            return False
    return True


def _claim(path: Path) -> int | None:
    """Lock ``path`` (created if need be) without waiting: the open descriptor, or None if
    another process holds it or the file was unlinked/replaced under us (a release raced)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
            return None  # another user's file we may not open, or a planted symlink
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        mine, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        os.close(fd)
        return None
    if (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino):
        os.close(fd)
        return None
    with contextlib.suppress(OSError):  # let other users claim it later (umask)
        os.fchmod(fd, 0o666)
    return fd


def _unclaim(path: Path, fd: int) -> None:
    """Unlink ``path`` while its lock is still held, then drop the lock."""
    try:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
    finally:
        os.close(fd)


def sweep(directory: str | os.PathLike[str]) -> list[int]:
    """Unlink the lock files in ``directory`` that no process holds (left by killed
    processes); return their ports. Each is locked first, and unlinked only while locked,
    so a file a live process holds (this one's included) is never touched; files other than
    ``<port>.lock`` are not looked at."""
    removed: list[int] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext != "lock" or not stem.isdigit():
            continue
        path = Path(directory) / name
        fd = _claim(path)
        if fd is None:
            continue  # held, or not ours to open
        try:
            path.unlink()
        except (FileNotFoundError, PermissionError):
            continue  # another user's file in the shared (sticky) directory
        finally:
            os.close(fd)
        removed.append(int(stem))
    return removed


class PortReservation:
    """TCP ports held for this process until :meth:`release`/:meth:`close` (or its end).

    ::

        with PortReservation() as ports:
            a, b = ports.take(2)      # locked, outside the ephemeral range, bindable now

    ``host``: the address the ports are checked on (where the nodes bind).
    ``ports``: the pool to pick from (default :func:`pool`); ``directory``: the lock files'
    directory (default :func:`lock_dir`). Thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", *, ports: list[int] | None = None,
                 directory: str | os.PathLike[str] | None = None,
                 rng: random.Random | None = None) -> None:
        self.host = host
        self.pool = list(ports) if ports is not None else pool()
        self.dir = Path(directory) if directory is not None else lock_dir()
        self._rng = rng or random.Random()
        self._held: dict[int, int] = {}  # port -> locked descriptor
        self._lock = threading.Lock()
        self._swept = False  # the first take() sweeps stale lock files (see sweep)

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def held(self) -> list[int]:
        """The ports held now, in the order taken."""
        with self._lock:
            return list(self._held)

    def _path(self, port: int) -> Path:
        return self.dir / f"{port}.lock"

    def _candidates(self) -> Iterator[int]:
        """Every port of the pool once, from a random place (processes starting at once
        then rarely contend for the same locks)."""
        start = self._rng.randrange(len(self.pool))
        for i in range(len(self.pool)):
            yield self.pool[(start + i) % len(self.pool)]

    def take(self, n: int = 1) -> list[int]:
        """Reserve ``n`` more ports (all or none).

        Raises:
            PortsExhausted: fewer than ``n`` ports of the pool could be claimed.
        """
        if n < 0:
            raise ValueError(f"take(n={n}): n must be 0 or more")
        _ensure_dir(self.dir)
        got: list[int] = []
        with self._lock:
            if not self._swept:
                self._swept = True
                sweep(self.dir)
            for port in self._candidates():
                if len(got) == n:
                    break
                if port in self._held:
                    continue
                fd = _claim(self._path(port))
                if fd is None:
                    continue
                if not port_bindable(port, self.host):
                    _unclaim(self._path(port), fd)
                    continue
                self._held[port] = fd
                got.append(port)
            if len(got) < n:
                for port in got:
                    _unclaim(self._path(port), self._held.pop(port))
                raise PortsExhausted(
                    f"could reserve only {len(got)} of {n} ports on {self.host} from a pool "
                    f"of {len(self.pool)} ({self.pool[0]}-{self.pool[-1]}, lock files in "
                    f"{self.dir}): the rest are held by other processes or in use")
        return got

    def release(self, port: int) -> None:
        """Let ``port`` go (unknown ports are ignored)."""
        with self._lock:
            fd = self._held.pop(port, None)
            if fd is not None:
                _unclaim(self._path(port), fd)

    def close(self) -> None:
        """Let every port go."""
        with self._lock:
            held, self._held = self._held, {}
            for port, fd in held.items():
                _unclaim(self._path(port), fd)


def _listening_inodes(pid: int, port: int) -> set[int]:
    """Socket inodes listening on TCP ``port`` in ``pid``'s network namespace."""
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)  # the header
                for line in f:
                    fields = line.split()
                    # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    if len(fields) > 9 and fields[3] == "0A" \
                            and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(int(fields[9]))
        except OSError:
            continue
    return found


def _socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def listens(pids: list[int], port: int) -> bool:
    """Whether one of ``pids`` (one node's processes: one network namespace) has a TCP
    socket listening on ``port``. Read from /proc, so it also sees into a namespace that a
    connection from here could not reach, and never knocks on the node's door."""
    if not pids:
        return False
    inodes = _listening_inodes(pids[0], port)
    return bool(inodes) and any(_socket_inodes(p) & inodes for p in pids)


#: How many ports ``free_ports`` keeps reserved for this process (the oldest go first).
LOOSE_PORTS_KEPT = 64
_loose: dict[str, PortReservation] = {}
_loose_order: collections.deque[tuple[str, int]] = collections.deque()
_loose_lock = threading.Lock()


def _release_loose() -> None:
    for res in _loose.values():
        res.close()


atexit.register(_release_loose)  # unlink their lock files (the kernel would only unlock them)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` TCP ports free now on ``host``, outside the kernel's ephemeral range, and
    reserved against every other test process on the machine (see above) until
    this process ends or has asked for ``LOOSE_PORTS_KEPT`` more."""
    with _loose_lock:
        res = _loose.get(host)
        if res is None:
            res = _loose[host] = PortReservation(host)
        ports = res.take(n)
        _loose_order.extend((host, p) for p in ports)
        while len(_loose_order) > LOOSE_PORTS_KEPT:
            old_host, old = _loose_order.popleft()
            _loose[old_host].release(old)
        return ports
