"""clerk._ports: test ports reserved outside the ephemeral range, one flock per port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clerk import _ports
from clerk._ports import (
    PortReservation,
    PortsExhausted,
    ephemeral_range,
    listens,
    pool,
    port_bindable,
)
from supervisor.testing import wait_until

pytestmark = pytest.mark.timeout(60)


def window(size: int, skip: int = 0) -> list[int]:
    """``size`` ports of the real pool, somewhere this test process alone is likely to use."""
    ports = pool()
    start = (os.getpid() * 97 + skip) % (len(ports) - size)
    return ports[start:start + size]


# --- the pool -----------------------------------------------------------------------------------

def test_the_ephemeral_range_is_read_from_proc_or_defaults(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("20000\t50000\n")
    assert ephemeral_range(str(f)) == (20000, 50000)
    assert ephemeral_range(str(tmp_path / "missing")) == _ports.DEFAULT_EPHEMERAL
    f.write_text("nonsense\n")
    with pytest.raises(ValueError, match=f"{f}: expected two port numbers, got 'nonsense'"):
        ephemeral_range(str(f))


def test_the_pool_leaves_out_the_ephemeral_range() -> None:
    lo, hi = ephemeral_range()
    ports = pool()
    assert ports and not [p for p in ports if lo <= p <= hi]
    assert min(ports) >= _ports.DEFAULT_POOL_START
    env = {"CLERK_TEST_PORTS": "19990-20010"}
    assert pool((20000, 60999), env) == list(range(19990, 20000))


def test_a_pool_inside_the_ephemeral_range_or_malformed_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CLERK_TEST_PORTS=30000-30010 lies inside the "
                                         "ephemeral port range 30000-60999"):
        pool((30000, 60999), {"CLERK_TEST_PORTS": "30000-30010"})
    with pytest.raises(ValueError, match="the default pool 10000-65535 lies inside"):
        pool((1024, 65535), {})
    for bad in ("abc", "2000", "3000-2000", "0-10", "1-70000"):
        with pytest.raises(ValueError, match=f"CLERK_TEST_PORTS='{bad}': expected LO-HI"):
            pool((30000, 60999), {"CLERK_TEST_PORTS": bad})


def test_taken_ports_are_outside_the_ephemeral_range_and_bindable(tmp_path: Path) -> None:
    lo, hi = ephemeral_range()
    with PortReservation(directory=tmp_path) as res:
        got = res.take(20)
        assert len(set(got)) == 20 and res.held == got
        assert not [p for p in got if lo <= p <= hi]
        assert all(port_bindable(p) for p in got)
        assert sorted(int(f.stem) for f in tmp_path.iterdir()) == sorted(got)


# --- claims and releases ------------------------------------------------------------------------

def test_release_unlinks_the_lock_and_frees_the_port(tmp_path: Path) -> None:
    ports = window(3)
    a = PortReservation(ports=ports, directory=tmp_path)
    b = PortReservation(ports=ports, directory=tmp_path)
    try:
        got = a.take(3)
        with pytest.raises(PortsExhausted, match=r"could reserve only 0 of 1 ports .*held by "
                                                  "other processes or in use"):
            b.take(1)  # flock is per open file: another reservation, even in-process, waits
        a.release(got[0])
        assert not (tmp_path / f"{got[0]}.lock").exists()
        assert b.take(1) == [got[0]]
        a.close()
        assert a.held == [] and [f.name for f in tmp_path.iterdir()] == [f"{got[0]}.lock"]
    finally:
        a.close()
        b.close()
    assert list(tmp_path.iterdir()) == []  # nothing left for ports no longer held


def test_take_is_all_or_nothing(tmp_path: Path) -> None:
    ports = window(4)
    with PortReservation(ports=ports, directory=tmp_path) as a, \
            PortReservation(ports=ports, directory=tmp_path) as b:
        a.take(2)
        with pytest.raises(PortsExhausted, match="only 2 of 3"):
            b.take(3)
        assert b.held == [] and len(list(tmp_path.iterdir())) == 2


def test_a_port_in_use_is_skipped_and_its_lock_let_go(tmp_path: Path) -> None:
    busy, free = window(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", busy))
        s.listen(1)
        assert not port_bindable(busy)
        with PortReservation(ports=[busy, free], directory=tmp_path) as res:
            assert res.take(1) == [free]
            assert not (tmp_path / f"{busy}.lock").exists()
            with pytest.raises(PortsExhausted):
                res.take(1)


def test_a_lock_file_unlinked_while_being_claimed_is_not_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release race: B opens the file, A (the holder) unlinks it and lets go, C makes a
    new one and holds it; B's lock then succeeds on the unlinked file and must not count."""
    path = tmp_path / "7777.lock"
    real_flock = _ports.fcntl.flock
    c_fd: list[int] = []

    def flock_after_a_release(fd: int, op: int) -> None:
        monkeypatch.setattr(_ports.fcntl, "flock", real_flock)
        path.unlink()  # A lets go...
        c = _ports._claim(path)  # ...and C takes a new file at the same path
        assert c is not None
        c_fd.append(c)
        real_flock(fd, op)  # B's lock on the old file succeeds

    monkeypatch.setattr(_ports.fcntl, "flock", flock_after_a_release)
    path.touch()
    try:
        assert _ports._claim(path) is None  # B sees the path names another file
    finally:
        for fd in c_fd:
            _ports._unclaim(path, fd)
    assert not path.exists()


# --- across processes ---------------------------------------------------------------------------

HOLDER = """
import json, sys
from clerk._ports import PortReservation
ports, directory, n = json.loads(sys.argv[1])
res = PortReservation(ports=ports, directory=directory)
try:
    print(json.dumps(res.take(n)), flush=True)
except Exception as exc:
    print(json.dumps(type(exc).__name__), flush=True)
sys.stdin.read()  # hold until the test closes our stdin
res.close()
"""


def _holders(ports: list[int], directory: Path, counts: list[int]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps([ports, str(directory), n])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for n in counts]


def _finish(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None and p.stdin is not None:
            p.stdin.close()
    for p in procs:
        p.wait(timeout=20)
        if p.stdout is not None:
            p.stdout.close()


def test_processes_reserving_at_once_never_share_a_port(tmp_path: Path) -> None:
    ports = window(80)
    procs = _holders(ports, tmp_path, [10] * 8)
    try:
        got = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
        assert all(isinstance(g, list) and len(g) == 10 for g in got), got
        every = [port for g in got for port in g]
        assert len(set(every)) == 80 == len(every)  # the whole pool, each port once
        late = _holders(ports, tmp_path, [1])
        try:
            assert late[0].stdout is not None
            assert json.loads(late[0].stdout.readline()) == "PortsExhausted"
        finally:
            _finish(late)
    finally:
        _finish(procs)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holders_ports_are_free_again(tmp_path: Path) -> None:
    ports = window(3, skip=1000)
    (proc,) = _holders(ports, tmp_path, [3])
    try:
        assert proc.stdout is not None
        held = json.loads(proc.stdout.readline())
        assert sorted(held) == sorted(ports)
        with PortReservation(ports=ports, directory=tmp_path) as res, pytest.raises(PortsExhausted):
            res.take(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with PortReservation(ports=ports, directory=tmp_path) as res:
            assert sorted(res.take(3)) == sorted(ports)  # the stale files are taken over
    finally:
        _finish([proc])
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holders_lock_files_are_swept_by_the_next_reservation(tmp_path: Path) -> None:
    """Files a SIGKILLed process left go at the next reservation's first take, even for ports
    outside its pool; a live process's files, this process's own and other files stay."""
    dead_ports, live_ports, mine, fresh = (window(2, skip=3000 + 10 * i) for i in range(4))
    assert len(set(dead_ports + live_ports + mine + fresh)) == 8
    dead, live = _holders(dead_ports, tmp_path, [2]), _holders(live_ports, tmp_path, [2])
    procs = dead + live
    try:
        for p in procs:
            assert p.stdout is not None and len(json.loads(p.stdout.readline())) == 2
        dead[0].send_signal(signal.SIGKILL)
        dead[0].wait(timeout=10)
        left = {f"{p}.lock" for p in dead_ports}
        assert left <= {f.name for f in tmp_path.iterdir()}  # the kernel only unlocked them
        (tmp_path / "notes.txt").write_text("not a lock file")
        (tmp_path / "99999.lock.tmp").write_text("")
        with PortReservation(ports=mine, directory=tmp_path) as own:
            own.take(2)
            with PortReservation(ports=fresh, directory=tmp_path) as res:
                (got,) = res.take(1)
                names = {f.name for f in tmp_path.iterdir()}
                assert not left & names  # swept
                assert {f"{p}.lock" for p in live_ports + mine} <= names  # held: kept
                assert {"notes.txt", "99999.lock.tmp", f"{got}.lock"} <= names
                assert _ports.sweep(tmp_path) == []  # nothing left that nobody holds
    finally:
        _finish(procs)
    assert {f.name for f in tmp_path.iterdir()} == {"notes.txt", "99999.lock.tmp"}


def test_sweep_locks_before_it_unlinks(tmp_path: Path) -> None:
    """The sweep unlinks a file only while holding its lock: one it cannot lock (held by
    another open file description, here in this very process) is never unlinked."""
    held = tmp_path / "7001.lock"
    fd = _ports._claim(held)
    assert fd is not None
    (tmp_path / "7002.lock").touch()
    try:
        assert _ports.sweep(tmp_path) == [7002]
        assert held.exists()
    finally:
        _ports._unclaim(held, fd)
    assert list(tmp_path.iterdir()) == []
    assert _ports.sweep(tmp_path / "missing") == []


def test_listens_sees_a_listener_of_these_processes_only() -> None:
    (port,) = window(1, skip=2000)
    assert not listens([os.getpid()], port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert not listens([os.getpid()], port)  # bound, not listening
        s.listen(1)
        assert listens([os.getpid()], port)
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, close_fds=True)
        try:
            assert not listens([child.pid], port)  # another process's listener
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    wait_until(lambda: not listens([os.getpid()], port), timeout=5)
