"""CURVE and the cookie, end to end: real node processes on loopback.

* A node with another cookie cannot join, and nobody learns anything from it or tells it
  anything: it is in no member list, a status request with its keys gets no answer, and the
  cluster's manager and term do not move.
* A plain (non-CURVE) ZeroMQ socket, or a raw TCP socket, gets no clerk answer at all.
* A cookie file readable by group or others stops the node at start (exit 2, the file named).
* ``--insecure`` says so, loudly, at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from clerk._client import request_status
from clerk._codec import encode
from clerk._errors import NotReachableError
from clerk._messages import Join, Peer, Status
from clerk.testing import LocalCluster, free_ports, wait_until
from tests.integration.cluster_helpers import present

pytestmark = pytest.mark.timeout(90)


def _counter(status: dict, key: str) -> int:  # type: ignore[type-arg]
    return int(status.get("transport", {}).get(key, 0))


def test_a_node_with_the_wrong_cookie_cannot_join_and_nobody_learns_from_it() -> None:
    with LocalCluster(2) as cluster:
        cluster.wait_for_manager(timeout=15)
        # Both nodes agree first: right after the manager is up, the other may not follow it yet
        # (on a loaded machine ``agreed()`` was None here, and the check at the end failed).
        before = present(wait_until(cluster.agreed, timeout=15))
        seeds = [cluster.address(n) for n in cluster.names]
        with LocalCluster(1, start=False) as other:  # its own, different cookie
            stranger = other.names[0]
            other.start(stranger, seeds=seeds)
            # It comes up alone (no seed completes a handshake) and keeps trying its seeds.
            wait_until(lambda: other.agreed() is not None, timeout=15)
            wait_until(lambda: _counter(other.status(stranger), "handshake_failed") >= 2
                       or _counter(other.status(stranger), "peer_disconnects") >= 2,
                       timeout=10)
            mine = other.status(stranger)
            assert [m["address"] for m in mine["members"]] == [other.address(stranger)]
            # Alone: a lone claim, at term 0 (clerk._claims), below any cluster's.
            assert mine["manager"] == stranger and mine["term"] == 0
            for name in cluster.names:
                st = cluster.status(name)
                assert other.address(stranger) not in [m["address"] for m in st["members"]]
                assert st.get("bad_frames", {}) == {}  # nothing it sent even got decoded
            assert cluster.agreed() == before
            # Its keys get no status from the cluster, and the cluster's none from it.
            with pytest.raises(NotReachableError):
                request_status(seeds, keys=other.keys, timeout=0.5)
            with pytest.raises(NotReachableError):
                request_status([other.address(stranger)], keys=cluster.keys, timeout=0.5)


def test_a_plain_socket_gets_nothing_from_a_secured_node() -> None:
    with LocalCluster(1) as cluster:
        name = cluster.wait_for_manager(timeout=15)
        host, port = cluster.address(name).split(":")
        ctx = zmq.Context()
        try:
            for kind in (zmq.DEALER, zmq.REQ):
                sock = ctx.socket(kind)
                sock.linger = 0
                # A plain socket's handshake with a CURVE server never completes, so a send
                # may find no peer to queue to: it must not block the test forever.
                sock.sndtimeo = 2000
                sock.connect(f"tcp://{host}:{port}")
                me = Peer("plain@x", "127.0.0.1:1", "p", 0)
                try:
                    sock.send_multipart(encode(Status(me, 0)))
                    if kind == zmq.DEALER:
                        sock.send_multipart(encode(Join(me, 0)))
                except zmq.Again:
                    pass  # not even queued: certainly no answer
                assert sock.poll(1000, zmq.POLLIN) == 0  # no answer, ever
                sock.close(linger=0)
        finally:
            ctx.term()
        # Raw TCP: ZeroMQ's greeting at most (it announces CURVE), never a clerk frame.
        with socket.create_connection((host, int(port)), timeout=2) as raw:
            raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"GET / HTTP/1.0\r\n\r\n" * 4)
            raw.settimeout(1.0)
            got = b""
            try:
                while chunk := raw.recv(4096):
                    got += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        assert b"CLERK" not in got and len(got) <= 64
        st = cluster.status(name)
        assert (st["manager"], st["term"], st["bad_frames"]) == (name, 1, {})


def _node_cmd(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clerk.node", "--name", "solo@127.0.0.1", "--port", str(port),
            *extra]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home))
    env.pop("CLERK_COOKIE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_cookie_file_readable_by_others_stops_the_node_with_exit_2(
        tmp_path: Path, mode: int) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("secret\n")
    cookie.chmod(mode)
    (port,) = free_ports(1)
    proc = subprocess.run(_node_cmd(port, "--cookie-file", str(cookie)), env=_env(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert str(cookie) in proc.stderr and "readable by group or others" in proc.stderr


def test_insecure_warns_at_start(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_node_cmd(port, "--insecure"), env=_env(tmp_path), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "CURVE is off" in log.read_text(errors="replace"), timeout=20)
        text = log.read_text(errors="replace")
        line = next(x for x in text.splitlines() if "CURVE is off" in x)
        assert "WARNING" in line and "neither encrypted nor authenticated" in line
        assert not (tmp_path / ".clerk").exists()  # insecure needs no cookie, creates none
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_the_default_cookie_is_created_in_home_and_used(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_node_cmd(port), env=_env(tmp_path), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        cookie = tmp_path / ".clerk" / "cookie"
        wait_until(cookie.exists, timeout=20)
        from clerk._security import keys_from_cookie

        wait_until(lambda: cookie.read_bytes().strip() != b"", timeout=5)
        keys = keys_from_cookie(cookie.read_bytes().strip())
        st = present(wait_until(lambda: _try_status(f"127.0.0.1:{port}", keys), timeout=20))
        assert st["secure"] is True
        assert oct(cookie.stat().st_mode & 0o777) == oct(0o600)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _try_status(address: str, keys: object) -> dict | None:  # type: ignore[type-arg]
    try:
        return request_status([address], keys=keys, timeout=0.5)  # type: ignore[arg-type]
    except NotReachableError:
        return None
