"""Per-child output files written and rotated by the supervisor, read with ``ctl tail``."""

import os
import re
import signal
import subprocess
import sys

import pytest

from supervisor.testing import wait_until
from tests.integration.sup_tree import ROOT, Tree

pytestmark = pytest.mark.timeout(90)

MAX_BYTES = 1000
TREE = """
    logs = "logs"
    max_bytes = {max_bytes}
    backups = 2

    [[child]]
    id = "talker"
    start = "tests.integration.sup_children:chatter"
    args = [0.01]

    [[child]]
    id = "both"
    command = ["sh", "-c", "echo out; echo err >&2; exec sleep 1000"]
    stdout = "both.log"
    stderr = "both.log"

    [[child]]
    id = "quiet"
    command = ["sleep", "1000"]
    stdout = "/dev/null"
"""


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path, TREE, max_bytes=MAX_BYTES)
    yield t
    t.stop()


def numbers(text):
    return [int(n) for n in re.findall(r"^\[talker\] (\d+)$", text, re.M)]


def first_number(path: str) -> int | None:
    try:
        with open(path) as f:
            found = numbers(f.read())
    except FileNotFoundError:
        return None
    return found[0] if found else None


def test_tail_of_a_rotating_log(tree):
    tree.start()
    tree.wait_up({"talker", "both", "quiet"})
    out = os.path.join(tree.dir, "logs", "talker.out")
    followed = os.path.join(tree.dir, "followed")
    with open(followed, "w") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "ctl", "--control", tree.sock,
             "tail", "talker", "-f", "-n", "3"],
            cwd=ROOT, stdout=sink, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        wait_until(lambda: numbers(open(followed).read()), 30)
        start = numbers(open(followed).read())[0]
        # Two rotations after the follower started: the line it started at is in .2 or gone,
        # and it has followed into the newest file.
        wait_until(
            lambda: (first_number(out + ".2") or -1) > start,
            30,
        )
        # Right after a rotation the newest file is missing or empty for a moment: wait for a line.
        newest = wait_until(lambda: first_number(out), 30)
        wait_until(lambda: numbers(open(followed).read())[-1] >= newest, 30)
    finally:
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    seen = numbers(open(followed).read())
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # no line lost or doubled

    logs = sorted(os.listdir(os.path.join(tree.dir, "logs")))
    assert logs == ["quiet.err", "talker.err", "talker.out", "talker.out.1", "talker.out.2"]
    sizes = [os.path.getsize(out + suffix) for suffix in ("", ".1", ".2")]
    assert all(size <= MAX_BYTES for size in sizes), sizes
    assert sizes[1] > MAX_BYTES - len("[talker] 1000\n") - 1  # files are filled, not tiny

    done = tree.ctl("tail", "talker", "-n", "5")
    assert done.returncode == 0, done.stderr
    last = numbers(done.stdout)
    assert len(last) == 5 and last == list(range(last[0], last[0] + 5))
    assert tree.stop() == 0


def test_stdout_and_stderr_in_one_file_and_tail_errors(tree):
    tree.start()
    tree.wait_up({"talker", "both", "quiet"})
    both = os.path.join(tree.dir, "both.log")
    wait_until(lambda: os.path.exists(both) and open(both).read() == "out\nerr\n", 20)
    assert tree.ctl("tail", "both", "stderr").stdout == "out\nerr\n"
    done = tree.ctl("tail", "quiet", "stderr")  # logs = "logs" gives it quiet.err
    assert done.returncode == 0 and done.stdout == ""
    done = tree.ctl("tail", "nope")
    assert done.returncode == 1 and "known: talker, both, quiet" in done.stderr
    rows = tree.rows()
    assert rows["quiet"]["stdout"] == "/dev/null"
    assert rows["talker"]["stderr"] == os.path.join(tree.dir, "logs", "talker.err")
    assert tree.stop() == 0


def test_tail_of_a_child_without_files_says_where_its_output_goes(tmp_path):
    t = Tree(tmp_path, '[[child]]\nid = "plain"\ncommand = ["sleep", "1000"]\n')
    try:
        t.start()
        t.wait_up({"plain"})
        done = t.ctl("tail", "plain")
        assert done.returncode == 1
        assert "goes to the supervisor's own output" in done.stderr
    finally:
        assert t.stop() == 0


@pytest.mark.parametrize("label", [False, True])
def test_embedded_supervisors_label_lines_only_when_asked(tmp_path, label):
    from supervisor import ChildSpec, Supervisor

    out = str(tmp_path / "say.out")
    sup = Supervisor(
        [ChildSpec(id="say", start="tests.integration.sup_children:say", args=("hi",),
                   stdout=out, stderr=out)],
        label_output=label,
    )  # fmt: skip
    sup.start()
    try:
        wait_until(lambda: os.path.exists(out) and open(out).read().count("\n") == 2, 20)
        text = open(out).read()
    finally:
        sup.stop()
    prefix = "[say] " if label else ""
    assert text == f"{prefix}hi\n{prefix}hi (err)\n"


def test_label_output_false_in_a_tree_file(tmp_path):
    t = Tree(tmp_path, """
        label_output = false
        [[child]]
        id = "talk"
        start = "tests.integration.sup_children:say"
        args = ["plain line"]
    """)
    try:
        t.start()
        wait_until(lambda: "plain line\n" in t.stdout(), 20, message=t.stdout)
        assert "[talk]" not in t.stdout()
    finally:
        assert t.stop() == 0


def test_restarts_with_output_files_leak_no_fd_or_thread(tmp_path):
    import threading

    from supervisor import ChildSpec, Supervisor

    out = str(tmp_path / "crash.out")
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    sup = Supervisor(
        [ChildSpec(id="crash", command=["sh", "-c", "echo run; exit 1"], stdout=out,
                   max_bytes=64, backups=1)],
        intensity=1000, period=1,
    )  # fmt: skip
    sup.start()
    try:
        wait_until(lambda: sup.which_children()[0].restarts >= 30, 30)
    finally:
        sup.stop()
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert threading.active_count() == threads_before
    kept = sorted(os.listdir(tmp_path))
    assert kept == ["crash.out", "crash.out.1"]
    assert all(os.path.getsize(tmp_path / name) <= 64 for name in kept)
