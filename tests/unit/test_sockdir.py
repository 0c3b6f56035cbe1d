"""Private socket directories and the sweep of those dead processes left (clerk._sockdir)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from clerk._errors import ConfigError
from clerk._sockdir import (
    BINDING,
    EMPTY_AGE_S,
    MAX_SOCKET_PATH,
    bind_listening,
    socket_dir,
    sweep,
)


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


def test_a_stream_socket_is_not_swept_between_its_bind_and_its_listen(tmp_path: Path) -> None:
    """Bound and not listening, a stream socket refuses connections as a dead one does: bound
    under its own name then, another process's sweep took the live directory away (its
    workers then failed to connect, FileNotFoundError). ``bind_listening`` binds under a
    temporary name until it listens."""
    name, kind = "workers", socket.SOCK_STREAM
    exposed = tmp_path / "p-exposed"
    exposed.mkdir(mode=0o700)
    s1 = socket.socket(socket.AF_UNIX, kind)
    s1.bind(str(exposed / name))  # the old way, caught between bind and listen
    binding = tmp_path / "p-binding"
    binding.mkdir(mode=0o700)
    s2 = socket.socket(socket.AF_UNIX, kind)
    s2.bind(str(binding / name) + ".binding")  # bind_listening's first step
    try:
        assert sweep("p-", name, kind, str(tmp_path)) == 1
        assert sorted(os.listdir(tmp_path)) == ["p-binding"]
    finally:
        s1.close()
        s2.close()


def test_bind_listening_gives_a_listening_socket_at_its_name(tmp_path: Path) -> None:
    d = tmp_path / "p-x"
    d.mkdir(mode=0o700)
    endpoint = str(d / "workers")
    seen: list[bool] = []

    class Watched(socket.socket):
        def listen(self, backlog: int = 0) -> None:
            seen.append(os.path.exists(endpoint))  # the name a sweep would probe: not yet
            super().listen(backlog)

    with Watched(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        bind_listening(s, endpoint, 4)
        assert seen == [False] and os.listdir(d) == ["workers"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(endpoint)
            conn, _ = s.accept()
            conn.close()
        assert sweep("p-", "workers", socket.SOCK_STREAM, str(tmp_path)) == 0


def _aged(path: Path, age: float) -> None:
    t = time.time() - age
    os.utime(path, (t, t), follow_symlinks=False)


def test_a_binding_leftover_of_a_killed_process_is_swept_once_old(tmp_path: Path) -> None:
    """An agent killed between bind_listening's bind and its rename left ``<name>.binding``:
    on main that directory was never swept (it holds no ``<name>``). Old and refusing
    connections it goes; young, or accepting (listening, not renamed yet), it stays."""
    name, kind = "workers", socket.SOCK_STREAM
    for entry, listening in (("p-dead", False), ("p-young", False), ("p-live", True)):
        d = tmp_path / entry
        d.mkdir(mode=0o700)
        s = socket.socket(socket.AF_UNIX, kind)
        s.bind(str(d / name) + BINDING)
        if listening:
            s.listen(1)
            keep = s
        else:
            s.close()  # the file stays, as after a SIGKILL
        if entry != "p-young":
            _aged(d / (name + BINDING), EMPTY_AGE_S + 5)
    try:
        assert sweep("p-", name, kind, str(tmp_path)) == 1
        assert sorted(os.listdir(tmp_path)) == ["p-live", "p-young"]
    finally:
        keep.close()


def _tmpdir_for(tmp_path: Path, total: int) -> Path:
    """A temporary directory whose worker socket's longest path (``.binding``) is ``total``
    bytes long."""
    fixed = len("/clerk-workers-") + 8 + len("/workers") + len(BINDING)  # mkdtemp: 8 chars
    base = tmp_path / ("t" * (total - fixed - len(str(tmp_path)) - 1))
    base.mkdir()
    return base


def test_a_socket_path_over_the_af_unix_limit_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On main the check was bind's: socket_dir handed out a path whose ``.binding`` name did
    not fit (``OSError: AF_UNIX path too long`` from deep in the agent's start) even when the
    endpoint itself did."""
    base = _tmpdir_for(tmp_path, MAX_SOCKET_PATH + 1)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    with pytest.raises(ConfigError) as err:
        socket_dir("clerk-workers-", "workers", socket.SOCK_STREAM, suffix=BINDING)
    text = str(err.value)
    assert "TMPDIR" in text and str(base) in text and "workers.binding" in text
    assert f"{MAX_SOCKET_PATH + 1} bytes" in text
    assert os.listdir(base) == []  # the directory made for it is gone again


def test_a_socket_path_at_the_limit_binds(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base = _tmpdir_for(tmp_path, MAX_SOCKET_PATH)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    directory, endpoint = socket_dir("clerk-workers-", "workers", socket.SOCK_STREAM,
                                     suffix=BINDING)
    assert len(os.fsencode(endpoint + BINDING)) == MAX_SOCKET_PATH
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        bind_listening(s, endpoint, 1)
        assert os.listdir(directory) == ["workers"]
