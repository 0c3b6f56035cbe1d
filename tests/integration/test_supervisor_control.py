"""The control socket is owner-only: another user is refused (by the socket's mode and, if
that is loosened, by SO_PEERCRED), a socket others could use is refused by ctl; and
``--check`` reports every problem of a file at once."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest

from supervisor.testing import wait_until
from tests.integration.sup_harness import alive
from tests.integration.sup_tree import ROOT, Tree

pytestmark = pytest.mark.timeout(90)

TREE = """
    [[child]]
    id = "a"
    command = ["sleep", "1000"]
"""

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

# A client that knows nothing but the socket: as another user it tries to stop everything.
RAW_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:
        s.sendall(b'{"v":1,"op":"stop-all"}\\n')
    except BrokenPipeError:  # the server may answer and hang up before reading
        pass
    print(s.recv(65536).decode())
""")


@pytest.fixture
def shared_dir():
    """A directory another user can enter (the test's tmp_path is 0700)."""
    path = tempfile.mkdtemp(prefix="sup-ctl-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acting as another user needs root and setpriv",
)
def test_another_user_is_refused(shared_dir):
    tree = Tree(shared_dir, TREE)
    try:
        tree.start()
        pid = tree.wait_up({"a"})["a"]
        mode = stat.S_IMODE(os.stat(tree.sock).st_mode)
        assert mode == 0o600 and os.stat(tree.sock).st_uid == os.geteuid()

        done = tree.ctl("stop", "a", user=AS_NOBODY)
        assert done.returncode == 1
        assert "refused" in done.stderr and f"uid {os.geteuid()}" in done.stderr

        # Loosen the mode: the file system lets them in now, the server still does not.
        os.chmod(tree.sock, 0o666)
        raw = subprocess.run(
            [*AS_NOBODY, sys.executable, "-I", "-c", RAW_CLIENT, tree.sock],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert raw.returncode == 0, raw.stderr
        assert '"ok":false' in raw.stdout and '"kind":"refused"' in raw.stdout
        assert alive(pid)  # nothing was stopped
        assert f"refused a connection from uid {NOBODY}" in tree.stderr()

        # And our own ctl will not talk through a socket that others could use.
        done = tree.ctl("status")
        assert done.returncode == 1 and "mode 0666" in done.stderr and "refused" in done.stderr
        os.chmod(tree.sock, 0o600)
        assert tree.ctl("status").returncode == 0
        assert tree.pids()["a"] == pid
    finally:
        assert tree.stop() == 0


def test_a_socket_with_the_wrong_mode_is_refused(tmp_path):
    tree = Tree(tmp_path, TREE)
    try:
        tree.start()
        tree.wait_up({"a"})
        for mode in (0o660, 0o606, 0o640, 0o777):
            os.chmod(tree.sock, mode)
            done = tree.ctl("stop", "a")
            assert done.returncode == 1 and f"mode {mode:04o}" in done.stderr, mode
        os.chmod(tree.sock, 0o600)
        assert tree.rows()["a"]["state"] == "running"
    finally:
        assert tree.stop() == 0


def test_check_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "tree.toml"
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")  # not executable
    path.write_text(textwrap.dedent(f"""
        [[child]]
        id = "missing"
        command = ["no-such-command-xyz"]
        [[child]]
        id = "noimport"
        start = "no_such_module_xyz:main"
        [[child]]
        id = "noattr"
        start = "tests.integration.sup_children:no_such_function"
        [[child]]
        id = "pool"
        [child.supervisor]
        [[child.supervisor.child]]
        id = "w"
        command = ["{tmp_path}/run.sh"]
        [[child]]
        id = "fine"
        command = ["sleep", "1"]
    """))
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", str(path), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, done.stderr
    assert "child[0].command = ['no-such-command-xyz']: command not found" in lines[0]
    assert "child[1].start = 'no_such_module_xyz:main': cannot import" in lines[1]
    assert "has no attribute 'no_such_function'" in lines[2]
    assert "child[3].supervisor.child[0].command" in lines[3] and "not executable" in lines[3]
    path.write_text('[[child]]\nid = "fine"\ncommand = ["sleep", "1"]\n')
    ok = subprocess.run(
        [sys.executable, "-m", "supervisor", str(path), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == f"{path}: ok"


def test_ctl_without_a_supervisor_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "ctl", "--control", str(tmp_path / "none.sock"),
         "status"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "no such socket" in done.stderr


def test_default_socket_under_xdg_runtime_dir_and_a_second_tree_on_it(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Tree(tmp_path / "one", TREE)
    second = Tree(tmp_path / "two", TREE.replace('"a"', '"b"'))
    procs = []
    try:
        for tree in (first, second):
            with open(tree.err, "ab") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "supervisor", tree.file], cwd=ROOT, env=env,
                    stdout=subprocess.DEVNULL, stderr=err,
                ))  # fmt: skip
            tree.proc = procs[-1]
            wait_until(lambda t=tree: "started child" in t.stderr(), 20, message=tree.stderr)
        sock = str(runtime / "supervisor.sock")
        assert "control socket: $XDG_RUNTIME_DIR/supervisor.sock" in first.stderr()
        assert "in use by a running supervisor; running without one" in second.stderr()
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "ctl", "status", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0 and '"id": "a"' in done.stdout  # the first tree's
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        # The second tree has no socket but still reloads on SIGHUP.
        second.write(TREE.replace('"a"', '"b"') + '[[child]]\nid = "c"\ncommand = ["sleep", "9"]\n')
        second.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloading the tree file: started c" in second.stderr(), 20,
                   message=second.stderr)
    finally:
        for tree in (first, second):
            assert tree.stop() == 0
