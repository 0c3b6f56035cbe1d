"""The tree file: output keys, paths relative to the file, every problem reported at once,
and the control socket's owner-only checks."""

import os
import socket
import textwrap

import pytest

from supervisor._config import ConfigError, read_tree
from supervisor._protocol import check_socket_path, decode, default_control_path, encode

pytestmark = pytest.mark.timeout(10)


def write(tmp_path, text, name="tree.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_output_keys_paths_relative_to_the_file_and_inherited_by_nested(tmp_path):
    os.chdir("/")  # relative paths do not depend on the working directory
    path = write(tmp_path, """
        control = "run/ctl.sock"
        logs = "logs"
        max_bytes = 1000
        backups = 2
        [[child]]
        id = "web"
        command = ["true"]
        stdout = "web.log"
        stderr = "/var/tmp/web.err"
        max_bytes = 50
        [[child]]
        id = "pool"
        [child.supervisor]
        backups = 7
        [[child.supervisor.child]]
        id = "w"
        command = ["true"]
    """)
    tree = read_tree(path)
    assert tree.control == str(tmp_path / "run" / "ctl.sock")
    sup = tree.supervisor
    assert (sup.logs, sup.max_bytes, sup.backups) == (str(tmp_path / "logs"), 1000, 2)
    web = sup.children[0]
    assert (web.stdout, web.stderr, web.max_bytes, web.backups) == (
        str(tmp_path / "web.log"), "/var/tmp/web.err", 50, None,
    )  # fmt: skip
    nested = sup.children[1].start
    assert nested.logs == str(tmp_path / "logs" / "pool")
    assert (nested.max_bytes, nested.backups) == (1000, 7)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
        colour = "red"
        max_bytes = 0
        [[child]]
        id = "a"
        command = ["true"]
        restart = "sometimes"
        shutdown = "later"
        [[child]]
        id = "b"
        start = "no_such_module_xyz:f"
        [[child]]
        id = "p"
        [child.supervisor]
        [[child.supervisor.child]]
        id = "w"
        command = ["true"]
        backups = -1
    """)
    with pytest.raises(ConfigError) as info:
        read_tree(path)
    keys = [p.key for p in info.value.problems]
    assert keys == [
        "colour", "child[0].restart", "child[0].shutdown", "child[1].start",
        "child[2].supervisor.child[0].backups", "max_bytes",
    ]  # fmt: skip
    assert all(path in line for line in str(info.value).splitlines())
    assert len(str(info.value).splitlines()) == len(keys)


def test_check_finds_missing_and_non_executable_commands(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    path = write(tmp_path, f"""
        [[child]]
        id = "missing"
        command = ["no-such-command-xyz", "-v"]
        [[child]]
        id = "notexec"
        command = ["{script}"]
        [[child]]
        id = "relative"
        command = ["./run.sh"]
        cwd = "{tmp_path}"
        [[child]]
        id = "ok"
        command = ["sh", "-c", "true"]
        [[child]]
        id = "env-path"
        command = ["sh"]
        env = {{ PATH = "{tmp_path}" }}
    """)
    read_tree(path)  # without check, commands are only looked up at start
    with pytest.raises(ConfigError) as info:
        read_tree(path, check=True)
    problems = {p.key: p.problem for p in info.value.problems}
    assert set(problems) == {
        "child[0].command", "child[1].command", "child[2].command", "child[4].command",
    }  # fmt: skip
    assert "not found" in problems["child[0].command"]
    assert "not executable" in problems["child[1].command"]
    script.chmod(0o755)
    with pytest.raises(ConfigError) as info:
        read_tree(path, check=True)
    assert [p.key for p in info.value.problems] == ["child[0].command", "child[4].command"]


def test_ids_with_a_slash_are_refused(tmp_path):
    path = write(tmp_path, '[[child]]\nid = "a/b"\ncommand = ["true"]\n')
    with pytest.raises(ConfigError, match=r"child\[0\]\.id = 'a/b'"):
        read_tree(path)


def test_control_socket_checks(tmp_path, monkeypatch):
    path = str(tmp_path / "s.sock")
    assert "no such socket" in check_socket_path(path)
    (tmp_path / "plain").write_text("")
    assert "not a socket" in check_socket_path(str(tmp_path / "plain"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        assert check_socket_path(path) is None
        os.chmod(path, 0o660)
        assert "mode 0660" in check_socket_path(path)
    finally:
        sock.close()
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_control_path()[0] == "/run/user/1000/supervisor.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    where, why = default_control_path()
    assert where == f"/tmp/supervisor-{os.geteuid()}/supervisor.sock"
    assert "XDG_RUNTIME_DIR is unset" in why


def test_protocol_lines():
    assert decode(encode({"op": "status"}).rstrip(b"\n")) == {"v": 1, "op": "status"}
    for bad in (b"[1]", b'{"v": 2, "op": "status"}', b"not json"):
        with pytest.raises(ValueError):
            decode(bad)


def test_shutdown_exits_from_the_file(tmp_path):
    path = write(tmp_path, """
        [[child]]
        id = "server"
        command = ["true"]
        restart = "transient"
        shutdown_exits = [2, 78]
        [[child]]
        id = "plain"
        command = ["true"]
    """)
    server, plain = read_tree(path).supervisor.children
    assert server.shutdown_exits == (2, 78)
    assert plain.shutdown_exits == ()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[0]", "[0]"),
        ("[256]", "[256]"),
        ("[2, -1]", "[2, -1]"),
        ("2", "2"),
        ('["2"]', "['2']"),
        ("[true]", "[True]"),
        ("[2.0]", "[2.0]"),
    ],
)
def test_a_bad_shutdown_exits_names_file_child_and_key(tmp_path, value, shown):
    path = write(tmp_path, f"""
        [[child]]
        id = "ok"
        command = ["true"]
        [[child]]
        id = "server"
        command = ["true"]
        restart = "transient"
        shutdown_exits = {value}
        shutdown = "later"
    """)
    with pytest.raises(ConfigError) as info:
        read_tree(path)
    problems = {p.key: p for p in info.value.problems}
    # every problem of the child is reported, this one beside the others
    assert set(problems) == {"child[1].shutdown_exits", "child[1].shutdown"}
    line = next(s for s in str(info.value).splitlines() if "shutdown_exits" in s)
    assert line == (f"{path}: child[1].shutdown_exits = {shown}: must be a list of exit "
                    "codes from 1 to 255")


def test_shutdown_exits_in_a_nested_tree_and_under_check(tmp_path):
    path = write(tmp_path, """
        [[child]]
        id = "pool"
        [child.supervisor]
        [[child.supervisor.child]]
        id = "w"
        command = ["true"]
        restart = "transient"
        shutdown_exits = [300]
    """)
    for check in (False, True):
        with pytest.raises(ConfigError, match=r"child\[0\]\.supervisor\.child\[0\]\."
                                              r"shutdown_exits = \[300\]: must be a list"):
            read_tree(path, check=check)


def test_shutdown_exits_on_a_child_left_permanent_names_file_child_and_key(tmp_path):
    path = write(tmp_path, """
        [[child]]
        id = "server"
        command = ["true"]
        shutdown_exits = [3]
    """)
    with pytest.raises(ConfigError) as info:
        read_tree(path)
    assert str(info.value).strip().endswith(
        f"{path}: child[0].shutdown_exits = [3]: a permanent child is restarted whatever its "
        "exit code: these codes take effect with restart = 'transient' (restart defaults to "
        "'permanent')")
