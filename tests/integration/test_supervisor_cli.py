"""``python -m supervisor tree.toml``: a good tree runs and stops in order on SIGTERM;
a bad file exits 2 with a message naming the file, the key and the value."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from supervisor._config import ConfigError, load_tree
from supervisor.testing import wait_until
from tests.integration.sup_children import read_log
from tests.integration.sup_harness import alive

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(path, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", str(path), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def write(tmp_path, text):
    path = tmp_path / "tree.toml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    strategy = "one_for_one"
    intensity = 3
    period = 10

    [[child]]
    id = "a"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "a"]

    [[child]]
    id = "cmd"
    command = ["sh", "-c", "echo start cmd $$ >> {log}; exec sleep 1000"]
    shutdown = "brutal_kill"

    [[child]]
    id = "pool"
    [child.supervisor]
    strategy = "one_for_all"
    [[child.supervisor.child]]
    id = "x"
    start = "tests.integration.sup_children:worker"
    args = ["{log}", "x"]
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_good_tree_runs_and_stops_on_sigterm(tmp_path, signum):
    log = str(tmp_path / "log")
    path = write(tmp_path, GOOD.format(log=log))
    proc = cli(path)
    try:
        wait_until(lambda: {c for _, c, _ in read_log(log)} == {"a", "cmd", "x"},
                   message=lambda: f"log: {read_log(log)}")
        pids = [pid for _, _, pid in read_log(log)]
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert [c for e, c, _ in read_log(log) if e == "stop"] == ["x", "a"]
    assert not any(alive(p) for p in pids)
    assert "started child 'a'" in err and "supervisor stopped: stopped" in err


def test_tree_that_gives_up_exits_1(tmp_path):
    path = write(tmp_path, """
        intensity = 0
        [[child]]
        id = "boom"
        start = "tests.integration.sup_children:crash_now"
    """)
    proc = cli(path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "reached max restart intensity" in err and "ValueError: boom" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('strategy = "one_for_some"', "strategy = 'one_for_some'"),
        ("intensity = -1", "intensity = -1"),
        ("period = 0", "period = 0"),
        ('colour = "red"', "colour = 'red'"),
        ('[[child]]\nid = "a"\nrestart = "sometimes"\ncommand = ["true"]',
         "child[0].restart = 'sometimes'"),
        ('[[child]]\nid = "a"\nstart = "no_such_mod_xyz:f"',
         "child[0].start = 'no_such_mod_xyz:f'"),
        ('[[child]]\nid = "a"\nstart = "os:getpid"\ncommand = ["true"]', "child[0].start"),
        ('[[child]]\nid = "a"\ncommand = ["true"]\n[[child]]\nid = "a"\ncommand = ["true"]',
         "child[1].id = 'a'"),
        ('[[child]]\ncommand = ["true"]', "child[0].id"),
        ('[[child]]\nid = "a"\ncommand = ["true"]\nshutdown = "later"',
         "child[0].shutdown = 'later'"),
        ('[[child]]\nid = "p"\n[child.supervisor]\n[[child.supervisor.child]]\nid = "w"\n'
         'command = ["true"]\nrestart = "bad"', "child[0].supervisor.child[0].restart = 'bad'"),
        ('[[child]]\nid = "s"\ncommand = ["true"]\nrestart = "transient"\nsignificant = true',
         "child[0].significant = True"),
        ("strategy = ", "(syntax)"),
    ],
)
def test_bad_tree_is_a_config_error_naming_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_tree(str(path))
    assert str(path) in str(info.value) and expected in str(info.value)


def test_bad_file_exits_2_with_the_message(tmp_path):
    path = write(tmp_path, '[[child]]\nid = "web"\ncommand = ["true"]\nrestart = "sometimes"')
    proc = cli(path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"{path}: child[0].restart = 'sometimes'" in err and "permanent" in err
    missing = cli(tmp_path / "nope.toml")
    _, err = missing.communicate(timeout=30)
    assert missing.returncode == 2 and "nope.toml" in err


def test_check_flag_validates_only(tmp_path):
    path = write(tmp_path, GOOD.format(log=tmp_path / "log"))
    proc = cli(path, "--check")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "ok" in out
    assert not (tmp_path / "log").exists()


SHUTDOWN_EXITS = """
    [[child]]
    id = "listed"
    command = ["sh", "-c", "echo start listed >> {log}; exit 3"]
    restart = "transient"
    shutdown_exits = [3, 4]

    [[child]]
    id = "unlisted"
    command = ["sh", "-c", "echo start unlisted >> {log}; [ -e {dir}/again ] && exec sleep 1000; touch {dir}/again; exit 3"]
    restart = "transient"
"""  # noqa: E501


def test_a_child_exiting_with_a_code_listed_in_the_file_is_not_restarted(tmp_path):
    from tests.integration.sup_tree import Tree

    tree = Tree(tmp_path, SHUTDOWN_EXITS)
    try:
        tree.start()
        # The same exit code without the key is an abnormal exit: that child is restarted.
        tree.wait_up({"unlisted"})

        def starts() -> list[str]:
            with open(tree.log) as f:
                return f.read().split("\n")

        def settled() -> dict[str, dict] | None:
            rows = tree.client_rows()
            done = (rows["listed"]["state"] == "terminated" and rows["unlisted"]["restarts"] == 1
                    and starts().count("start unlisted") == 2)  # its second run has begun
            return rows if done else None

        rows = wait_until(settled, 20, message=lambda: f"{tree.client_rows()}; {tree.stderr()}")
        # The exit was handled (terminated, no restart pending): it stays down, counted as none.
        assert rows["listed"]["restarts"] == 0, rows
        assert rows["listed"]["last_exit"].startswith("shutdown"), rows
        assert rows["unlisted"]["state"] == "running", rows
        assert starts().count("start listed") == 1
        err = tree.stderr()
        assert "restarted child 'unlisted'" in err and "restarted child 'listed'" not in err
    finally:
        assert tree.stop() == 0, tree.stderr()
