"""Reload through ``ctl reload`` and SIGHUP: new children started, removed ones stopped,
changed ones restarted, unchanged ones untouched (nested ones too); a bad file changes
nothing and names every problem."""

import os
import signal

import pytest

from supervisor.testing import wait_until
from tests.integration.sup_harness import alive
from tests.integration.sup_tree import Tree

pytestmark = pytest.mark.timeout(90)

V1 = """
    [[child]]
    id = "a"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "a"]

    [[child]]
    id = "b"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "b"]

    [[child]]
    id = "c"
    command = ["sleep", "1000"]

    [[child]]
    id = "pool"
    [child.supervisor]
    [[child.supervisor.child]]
    id = "x"
    command = ["sleep", "1000"]
    [[child.supervisor.child]]
    id = "y"
    command = ["sleep", "1000"]
"""

V2 = """
    [[child]]
    id = "a"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "a"]

    [[child]]
    id = "c"
    command = ["sleep", "1001"]

    [[child]]
    id = "d"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "d"]

    [[child]]
    id = "pool"
    [child.supervisor]
    [[child.supervisor.child]]
    id = "x"
    command = ["sleep", "1000"]
    [[child.supervisor.child]]
    id = "y"
    command = ["sleep", "1002"]
    [[child.supervisor.child]]
    id = "z"
    command = ["sleep", "1003"]
"""

BAD = V2 + """
    [[child]]
    id = "e"
    command = ["no-such-command-xyz"]

    [[child]]
    id = "f"
    start = "no_such_module_xyz:main"
"""


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path, V1)
    yield t
    t.stop()


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def test_reload_adds_removes_and_changes_children(tree):
    tree.start()
    before = tree.wait_up({"a", "b", "c", "pool", "pool/x", "pool/y"})
    tree.write(V2)
    done = tree.ctl("reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "reloaded: started d, pool/z; stopped b; restarted c, pool/y"
    )
    after = tree.wait_up({"a", "c", "d", "pool", "pool/x", "pool/y", "pool/z"})
    assert list(after) == ["a", "c", "d", "pool", "pool/x", "pool/y", "pool/z"]  # file order
    for same in ("a", "pool", "pool/x"):  # unchanged: untouched
        assert after[same] == before[same], same
    for changed in ("c", "pool/y"):
        assert after[changed] != before[changed] and not alive(before[changed])
    assert cmdline(after["c"])[-2:] == [b"sleep", b"1001"]
    assert cmdline(after["pool/y"])[-2:] == [b"sleep", b"1002"]
    assert not alive(before["b"])
    # b stopped with its shutdown (SIGTERM: the worker logged its stop)
    wait_until(lambda: "stop b" in open(tree.log).read())
    assert tree.stop() == 0


def test_a_bad_file_is_rejected_whole_and_the_tree_stays(tree):
    tree.start()
    before = tree.wait_up({"a", "b", "c", "pool", "pool/x", "pool/y"})
    tree.write(BAD)
    done = tree.ctl("reload")
    assert done.returncode == 1
    assert "reload rejected, the tree is unchanged" in done.stderr
    assert "child[4].command = ['no-such-command-xyz']: command not found" in done.stderr
    assert "child[5].start = 'no_such_module_xyz:main'" in done.stderr
    rows = tree.rows()
    assert {cid: r["pid"] for cid, r in rows.items()} == before
    assert "d" not in rows and all(r["state"] == "running" for r in rows.values())
    assert tree.stop() == 0


def test_sighup_reloads_and_does_not_kill_the_tree(tree):
    tree.start()
    before = tree.wait_up({"a", "b", "c", "pool", "pool/x", "pool/y"})
    tree.write(V2)
    os.kill(tree.proc.pid, signal.SIGHUP)
    after = tree.wait_up({"d", "pool/z"})
    assert "b" not in after and after["a"] == before["a"]
    assert tree.proc.poll() is None
    tree.write(BAD)  # a bad file on SIGHUP: logged, nothing changes
    os.kill(tree.proc.pid, signal.SIGHUP)
    wait_until(lambda: "reload rejected, the tree is unchanged" in tree.stderr(), 20)
    assert tree.pids() == after
    assert tree.stop() == 0


def test_a_reload_that_moves_output_restarts_the_children_it_moves(tree):
    tree.start()
    before = tree.wait_up({"a", "b", "c", "pool", "pool/x", "pool/y"})
    tree.write('logs = "logs"\n' + V1)
    done = tree.ctl("reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reloaded: restarted a, b, c, pool/x, pool/y"
    rows = tree.rows()
    assert rows["pool"]["pid"] == before["pool"]  # the nested supervisor itself stays
    for cid in ("a", "b", "c", "pool/x", "pool/y"):
        assert rows[cid]["pid"] != before[cid]
        assert rows[cid]["stdout"] == os.path.join(tree.dir, "logs", f"{cid}.out")
    assert tree.ctl("reload").stdout.strip() == "reloaded: no change"
    assert tree.stop() == 0
