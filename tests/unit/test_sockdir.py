"""Private socket directories and the sweep of those dead processes left (clerk._sockdir)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from clerk._sockdir import EMPTY_AGE_S, sweep


def _bound(path: Path, name: str, kind: int) -> socket.socket:
    path.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(str(path / name))
    if kind == socket.SOCK_STREAM:
        s.listen(1)
    return s


def test_a_dead_processs_directory_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    for kind, name in ((socket.SOCK_DGRAM, "log"), (socket.SOCK_STREAM, "workers")):
        base = tmp_path / name
        base.mkdir()
        live = _bound(base / "p-live", name, kind)
        dead = _bound(base / "p-dead", name, kind)
        dead.close()  # the socket file stays, as after a SIGKILL: nobody has it bound
        try:
            assert sweep("p-", name, kind, str(base)) == 1
            assert sorted(os.listdir(base)) == ["p-live"]
        finally:
            live.close()


def test_only_our_own_leftovers_are_touched(tmp_path: Path) -> None:
    kind = socket.SOCK_DGRAM
    other = _bound(tmp_path / "p-other-entry", "log", kind)
    other.close()
    (tmp_path / "p-other-entry" / "notes.txt").write_text("not a socket dir")
    fresh = tmp_path / "p-fresh"
    fresh.mkdir()  # between mkdtemp and bind: never swept
    old = tmp_path / "p-old-empty"
    old.mkdir()
    t = time.time() - EMPTY_AGE_S - 5
    os.utime(old, (t, t))
    plain = tmp_path / "p-file"
    plain.write_text("a file, not a directory")
    wrong = _bound(tmp_path / "q-dead", "log", kind)  # another prefix
    wrong.close()
    assert sweep("p-", "log", kind, str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == ["p-file", "p-fresh", "p-other-entry", "q-dead"]


def test_a_socket_of_another_name_is_not_ours(tmp_path: Path) -> None:
    s = _bound(tmp_path / "p-x", "other", socket.SOCK_DGRAM)
    s.close()
    assert sweep("p-", "log", socket.SOCK_DGRAM, str(tmp_path)) == 0
