"""``supervisor ctl`` against a real ``python -m supervisor tree.toml``: status while
children crash and restart, restart of one child, start/stop/stop-all, unknown ids, and
the Python lines that carry their child's id."""

import os
import re
import signal

import pytest

from supervisor import ControlError
from supervisor.testing import wait_until
from tests.integration.sup_harness import alive
from tests.integration.sup_tree import Tree

pytestmark = pytest.mark.timeout(90)

TREE = """
    intensity = 100
    period = 1

    [[child]]
    id = "a"
    start = "tests.integration.sup_children:plain"
    args = ["{log}", "a"]

    [[child]]
    id = "b"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "b"]

    [[child]]
    id = "c"
    command = ["sleep", "1000"]
    shutdown = "brutal_kill"

    [[child]]
    id = "pool"
    [child.supervisor]
    [[child.supervisor.child]]
    id = "x"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "x"]
    [[child.supervisor.child]]
    id = "y"
    command = ["sleep", "1001"]
"""
ALL = {"a", "b", "c", "pool", "pool/x", "pool/y"}


@pytest.fixture
def trees(tmp_path):
    made: list[Tree] = []

    def make(text: str, sub: str = "t", **fmt) -> Tree:
        os.makedirs(tmp_path / sub, exist_ok=True)
        tree = Tree(tmp_path / sub, text, **fmt)
        made.append(tree)
        return tree

    yield make
    for tree in made:
        tree.stop()


def test_status_while_children_crash_and_restart(trees):
    tree = trees(TREE.replace(
        'id = "c"\n    command = ["sleep", "1000"]',
        'id = "c"\n    command = ["sh", "-c", "sleep 0.3; exit 3"]',
    ))  # fmt: skip
    tree.start()
    first = tree.wait_up(ALL - {"c"})

    def restarted_three_times() -> bool:
        done = tree.ctl("status")
        assert done.returncode in (0, 3), done.stderr  # 3: c is between two runs
        lines = done.stdout.splitlines()
        assert lines[0].split() == [
            "ID", "TYPE", "RESTART", "PID", "STATE", "UPTIME", "RESTARTS", "LAST", "EXIT",
        ]  # fmt: skip
        assert [line.split()[0] for line in lines[1:]] == ["a", "b", "c", "pool", "pool/x",
                                                          "pool/y"]  # fmt: skip
        return tree.rows()["c"]["restarts"] >= 3

    wait_until(restarted_three_times, 30, interval=0.05)
    rows = tree.rows()
    assert rows["c"]["last_exit"] == "exit code 3" and rows["c"]["last_exit_kind"] == "abnormal"
    assert rows["c"]["type"] == "worker" and rows["c"]["restart"] == "permanent"
    for cid in ALL - {"c"}:  # the siblings were never touched
        assert rows[cid]["pid"] == first[cid] and rows[cid]["restarts"] == 0
        assert rows[cid]["state"] == "running" and rows[cid]["uptime"] > 0
    assert rows["pool"]["type"] == "supervisor"
    assert tree.stop() == 0


def test_restart_of_one_child_keeps_the_siblings_pids(trees):
    tree = trees(TREE)
    tree.start()
    before = tree.wait_up(ALL)
    done = tree.ctl("restart", "b")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"b: restarted (pid {before['b']} -> {tree.pids()['b']})"
    after = tree.pids()
    assert after["b"] != before["b"] and not alive(before["b"])
    assert {k: v for k, v in after.items() if k != "b"} == {
        k: v for k, v in before.items() if k != "b"
    }
    done = tree.ctl("restart", "pool/x")  # a nested id: only that grandchild
    assert done.returncode == 0, done.stderr
    again = tree.pids()
    assert again["pool/x"] != after["pool/x"] and not alive(after["pool/x"])
    assert {k: v for k, v in again.items() if k != "pool/x"} == {
        k: v for k, v in after.items() if k != "pool/x"
    }
    assert tree.rows()["pool/x"]["restarts"] == 1
    assert tree.stop() == 0


def test_start_stop_stop_all_and_unknown_ids(trees):
    tree = trees(TREE)
    tree.start()
    pids = tree.wait_up(ALL)

    done = tree.ctl("stop", "a")
    assert (done.returncode, done.stdout.strip()) == (0, "a: stopped")
    assert not alive(pids["a"])
    status = tree.ctl("status")
    assert status.returncode == 3  # LSB: something is not running
    row = tree.rows()["a"]
    assert (row["state"], row["pid"], row["uptime"]) == ("terminated", None, None)
    assert tree.ctl("stop", "a").stdout.strip() == "a: already stopped"

    done = tree.ctl("start", "a")
    assert done.returncode == 0 and re.fullmatch(r"a: started \(pid \d+\)", done.stdout.strip())
    again = tree.ctl("start", "a")
    assert again.returncode == 0 and "already running" in again.stdout
    assert tree.ctl("status").returncode == 0

    for args in (["restart", "nope"], ["stop", "pool/nope"], ["start", "a/b"]):
        done = tree.ctl(*args)
        assert done.returncode == 1, args
        assert f"Failed to {args[0]} {args[1]}:" in done.stderr
        assert "known: a, b, c, pool, pool/x, pool/y" in done.stderr, done.stderr
    with pytest.raises(ControlError) as info:
        tree.client().restart("nope")
    assert info.value.kind == "not_found"

    done = tree.ctl("stop-all")
    assert done.returncode == 0 and done.stdout.strip() == "stopped: pool, c, b, a"
    assert not any(alive(pid) for pid in tree.pids().values() if pid)
    assert not any(alive(pids[k]) for k in ALL - {"a"})
    rows = tree.rows()  # the supervisor itself still answers
    assert {r["state"] for cid, r in rows.items()} == {"terminated"}
    assert tree.ctl("start", "pool").returncode == 0
    assert tree.wait_up({"pool", "pool/x", "pool/y"})
    assert tree.stop() == 0


def test_python_lines_carry_the_child_id_on_the_default_output(trees):
    tree = trees("""
        [[child]]
        id = "talk"
        start = "tests.integration.sup_children:say"
        args = ["hello from talk"]
        [[child]]
        id = "pool"
        [child.supervisor]
        [[child.supervisor.child]]
        id = "w"
        start = "tests.integration.sup_children:say"
        args = ["hi from w"]
    """)
    tree.start()
    wait_until(lambda: "[pool/w] hi from w" in tree.stdout(), 20, message=tree.stdout)
    wait_until(lambda: "[talk] hello from talk (err)" in tree.stderr(), 20, message=tree.stderr)
    assert "[talk] hello from talk\n" in tree.stdout()
    assert "[pool/w] hi from w (err)" in tree.stderr()
    assert tree.stop() == 0


def test_sigterm_stops_the_tree_exits_0_and_removes_the_socket(trees):
    tree = trees(TREE)
    tree.start()
    pids = tree.wait_up(ALL)
    assert os.path.exists(tree.sock)
    assert tree.stop() == 0
    assert not any(alive(pid) for pid in pids.values())
    assert not os.path.exists(tree.sock)
    assert f"control socket: {tree.sock}" in tree.stderr()


def test_kill_9_leaves_no_orphans_and_no_socket_blocking_the_next_start(trees):
    tree = trees(TREE)
    proc = tree.start()
    pids = tree.wait_up(ALL)
    second = trees(TREE, sub="second")
    second.sock = tree.sock  # a live tree owns this path: refused, nothing started
    refused = second.start()
    assert refused.wait(timeout=30) == 1
    assert "in use by a running supervisor" in second.stderr()
    assert "started child" not in second.stderr()

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), 5,
               message=lambda: f"still alive: {[p for p in pids.values() if alive(p)]}")
    assert os.path.exists(tree.sock)  # left behind by kill -9 ...
    done = tree.ctl("status")
    assert done.returncode == 1 and "cannot connect" in done.stderr
    tree.start()  # ... and replaced by the next start
    again = tree.wait_up(ALL)
    assert not set(again.values()) & set(pids.values())
    assert "removing stale socket" in tree.stderr()
    assert tree.stop() == 0


def test_the_python_client_does_what_ctl_does(trees):
    tree = trees(TREE)
    tree.start()
    pids = tree.wait_up(ALL)
    ctl = tree.client()
    assert [row["id"] for row in ctl.status()] == ["a", "b", "c", "pool", "pool/x", "pool/y"]
    assert ctl.child("pool/y")["pid"] == pids["pool/y"]
    restarted = ctl.restart("pool/y")
    assert restarted["old_pid"] == pids["pool/y"] and restarted["pid"] != pids["pool/y"]
    assert ctl.stop("a") == {"id": "a", "already": False}
    assert ctl.start("a")["already"] is False
    assert ctl.start("a")["already"] is True
    # An unchanged file: nothing touched (an unchanged subtree is listed by its root).
    assert ctl.reload() == {"started": [], "stopped": [], "restarted": [], "failed": [],
                            "unchanged": ["a", "b", "c", "pool"]}
    assert ctl.stop_all() == ["pool", "c", "b", "a"]
    with pytest.raises(ControlError) as info:
        ctl.child("zz")
    assert info.value.kind == "not_found" and "known: a, b, c, pool" in str(info.value)
    assert tree.stop() == 0
    with pytest.raises(ControlError) as info:
        ctl.status()
    assert info.value.kind == "unreachable"
