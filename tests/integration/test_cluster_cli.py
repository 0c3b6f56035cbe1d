"""The command line (``clerk status``, ``python -m clerk.node`` config errors) and the embedding
API (``clerk.Node``, ``clerk.node_spec`` in a user's own supervision tree), on real processes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import clerk
from clerk._client import request_status
from clerk._security import keys_from_cookie
from clerk.testing import LocalCluster, free_ports, wait_until
from supervisor import ChildSpec, ShutdownReason, Supervisor
from tests.integration.cluster_helpers import present, run_clerk, run_node
from tests.integration.cluster_tasks import Counter

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    d = tmp_path_factory.mktemp("cli")
    task = clerk.task(Counter, name="tick", interval=500, args={"log": str(d / "tick.log")})
    with LocalCluster(3, tasks=[task]) as c:
        c.wait_for_manager(timeout=20)
        yield c


def status_args(cluster: LocalCluster, *extra: str, node: int = 0) -> list[str]:
    return ["status", "--join", cluster.address(cluster.names[node]),
            "--cookie-file", str(cluster.cookie_file), *extra]


# --- clerk status --------------------------------------------------------------------------


def test_status_json_has_manager_term_members_and_tasks(cluster: LocalCluster) -> None:
    manager, term = present(wait_until(cluster.agreed, timeout=10))
    proc = run_clerk(status_args(cluster, "--json"))
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["manager"] == manager
    assert st["term"] == term and isinstance(st["term"], int)
    members = {m["name"]: m for m in st["members"]}
    assert set(members) == set(cluster.names)
    for name, m in members.items():
        assert m["address"] == cluster.address(name)
        assert m["alive"] is True
    assert [t["name"] for t in st["tasks"]] == ["tick"]


def test_any_node_answers_for_the_whole_cluster(cluster: LocalCluster) -> None:
    answers = []
    for i in range(len(cluster.names)):
        proc = run_clerk(status_args(cluster, "--json", node=i))
        assert proc.returncode == 0, proc.stderr
        st = json.loads(proc.stdout)
        answers.append((st["manager"], st["term"], sorted(m["name"] for m in st["members"])))
    assert len(set(map(str, answers))) == 1, answers


def test_status_table_for_humans(cluster: LocalCluster) -> None:
    manager, term = present(wait_until(cluster.agreed, timeout=10))
    proc = run_clerk(status_args(cluster, node=1))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"manager: {manager}" in out and f"term: {term}" in out
    assert "MEMBER" in out and "ADDRESS" in out and "ALIVE" in out
    for name in cluster.names:
        line = next(ln for ln in out.splitlines() if name in ln and cluster.address(name) in ln)
        assert " yes " in line
        assert line.startswith("*") == (name == manager)
    assert "TASK" in out and "tick" in out


def test_status_tries_each_join_until_one_answers(cluster: LocalCluster) -> None:
    (dead,) = free_ports(1)
    proc = run_clerk(["status", "--join", f"127.0.0.1:{dead}", "--timeout", "0.5",
                      *status_args(cluster, "--json")[1:]])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manager"] in cluster.names


def test_the_console_script_runs_status(cluster: LocalCluster) -> None:
    script = shutil.which("clerk", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the clerk console script is not installed in this environment")
    proc = subprocess.run([script, *status_args(cluster, "--json")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manager"] in cluster.names


def test_status_with_the_wrong_cookie_gets_no_answer(cluster: LocalCluster,
                                                     tmp_path: Path) -> None:
    other = tmp_path / "cookie"
    other.write_text("not-the-cluster-cookie\n")
    other.chmod(0o600)
    proc = run_clerk(["status", "--join", cluster.address(cluster.names[0]),
                      "--cookie-file", str(other), "--timeout", "0.5"])
    assert proc.returncode == 1
    assert "no clerk node answered" in proc.stderr and "cookie" in proc.stderr


def test_status_against_nothing_exits_1_with_a_message(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    proc = run_clerk(["status", "--join", f"127.0.0.1:{port}", "--insecure", "--timeout", "0.5"])
    assert proc.returncode == 1
    assert f"no clerk node answered at 127.0.0.1:{port}" in proc.stderr
    assert proc.stdout == ""


def test_status_with_a_bad_address_exits_2() -> None:
    proc = run_clerk(["status", "--join", "127.0.0.1:99999", "--insecure"])
    assert proc.returncode == 2
    assert "--join" in proc.stderr and "99999" in proc.stderr


# --- configuration errors: exit 2, the message names the file, the key and the value -------


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


_TASK = ('[node]\nname = "a@127.0.0.1"\n[[task]]\n'
         'task = "tests.integration.cluster_tasks:Counter"\n')
CONFIG_ERRORS = {
    "unknown key": ('[node]\nname = "a@127.0.0.1"\nfrobnicate = 3\n',
                    ["frobnicate", "3", "unknown key"]),
    "wrong type": ('[node]\nname = "a@127.0.0.1"\nport = "7400"\n',
                   ["port", "'7400'", "integer"]),
    "name without @": ('[node]\nname = "alpha"\n', ["name", "'alpha'", "name@host"]),
    "bad TOML": ('[node\nname = "a@127.0.0.1"\n', ["not valid TOML"]),
    "missing name": ("[node]\nport = 7401\n", ["name", "required"]),
    "unknown table": ('[node]\nname = "a@127.0.0.1"\n[nodes]\nx = 1\n',
                      ["nodes", "unknown table"]),
    "bad seed": ('[node]\nname = "a@127.0.0.1"\njoin = ["127.0.0.1:http"]\n',
                 ["join[0]", "127.0.0.1:http", "port"]),
    "wrong type of join": ('[node]\nname = "a@127.0.0.1"\njoin = 7401\n',
                           ["join", "7401", "list"]),
    "bad cron": (_TASK + 'name = "nightly"\ncron = "30 25 * * *"\n',
                 ["task 'nightly': cron", "'30 25 * * *'", "Bad hour"]),
    "unknown zone": (_TASK + 'name = "nightly"\ncron = "30 2 * * *"\n'
                     'timezone = "Europe/Berlln"\n',
                     ["task 'nightly': timezone", "'Europe/Berlln'", "not a known time zone"]),
    "interval and cron": (_TASK + 'name = "nightly"\ninterval = 1000\ncron = "@daily"\n',
                          ["task 'nightly': cron", "'@daily'", "exactly one"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors_exit_2_naming_file_key_and_value(case: str, tmp_path: Path) -> None:
    text, expected = CONFIG_ERRORS[case]
    path = tmp_path / "clerk.toml"
    path.write_text(text)
    proc = run_node(["--config", str(path), "--insecure"], timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err, err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_port_in_use_exits_2_naming_the_port(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "clerk.toml"
    path.write_text(f'[node]\nname = "a@127.0.0.1"\nport = {busy_port}\ninsecure = true\n')
    proc = run_node(["--config", str(path)], timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    assert f"port = {busy_port}" in proc.stderr and "in use" in proc.stderr


def test_flag_errors_name_the_command_line() -> None:
    proc = run_node(["--name", "alpha", "--insecure"], timeout=30)
    assert proc.returncode == 2
    assert "command line" in proc.stderr and "'alpha'" in proc.stderr


def test_flags_win_over_the_file(tmp_path: Path, busy_port: int) -> None:
    """The file's busy port is overridden by --port, so the error is about the name flag."""
    path = tmp_path / "clerk.toml"
    path.write_text(f'[node]\nname = "a@127.0.0.1"\nport = {busy_port}\ninsecure = true\n')
    (free,) = free_ports(1)
    proc = run_node(["--config", str(path), "--port", str(free), "--name", "b"], timeout=30)
    assert proc.returncode == 2
    assert "command line" in proc.stderr and "'b'" in proc.stderr


# --- embedding -----------------------------------------------------------------------------


def test_embedded_nodes_start_elect_and_stop(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("embedded-cluster-cookie\n")
    cookie.chmod(0o600)
    pa, pb = free_ports(2)
    log = tmp_path / "tick.log"
    tasks = [clerk.task(Counter, name="tick", interval=200, args={"log": str(log)})]
    a = clerk.Node(name="a@127.0.0.1", port=pa, join=[f"127.0.0.1:{pb}"], tasks=tasks,
                   cookie_file=str(cookie), workers=1)
    b = clerk.Node(name="b@127.0.0.1", port=pb, join=[f"127.0.0.1:{pa}"], tasks=tasks,
                   cookie_file=str(cookie), workers=1)
    try:
        a.start()
        b.start()
        manager = wait_until(lambda: (m := a.manager()) and m == b.manager() and m,
                             timeout=15, message="no agreed manager")
        assert manager in ("a@127.0.0.1", "b@127.0.0.1")
        wait_until(lambda: sorted(a.members()) == sorted(b.members())
                   == ["a@127.0.0.1", "b@127.0.0.1"], timeout=10)
        wait_until(log.exists, timeout=15, message="the task never ran")
        follower = b if manager == "a@127.0.0.1" else a
        leader = a if follower is b else b
        info = leader.stop()
        # The agent left (handing over) and the node's supervisor followed it.
        assert info is not None and info.reason is ShutdownReason.AUTO_SHUTDOWN, info
        wait_until(lambda: follower.manager() == follower.config.name, timeout=10,
                   message="the remaining node did not take over")
        assert follower.members() == [follower.config.name]
    finally:
        a.stop()
        b.stop()
    a.stop()  # stopping twice is harmless
    with pytest.raises(clerk.NotReachableError):
        a.status(timeout=0.3)


def test_embedded_node_as_a_context_manager(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with clerk.Node(name="solo@127.0.0.1", port=port, insecure=True, workers=1) as node:
        assert wait_until(node.manager, timeout=10) == "solo@127.0.0.1"
        assert node.members() == ["solo@127.0.0.1"]
        st = node.status()
        assert st["role"] == "manager" and st["secure"] is False
    with pytest.raises(clerk.NotReachableError):
        node.status(timeout=0.3)


def test_node_spec_runs_a_node_inside_the_users_own_supervisor(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("spec-cluster-cookie\n")
    cookie.chmod(0o600)
    (port,) = free_ports(1)
    marker = tmp_path / "web.pid"
    spec = clerk.node_spec(name="app@127.0.0.1", port=port, cookie_file=str(cookie),
                           workers=1)
    assert isinstance(spec, ChildSpec) and spec.id == "clerk-app@127.0.0.1"
    web = ChildSpec(id="web", command=["sh", "-c", f'echo $$ > "{marker}"; exec sleep 600'],
                    shutdown=1000)
    sup = Supervisor([web, spec], strategy="one_for_one", name="user-app")
    keys = keys_from_cookie(cookie.read_bytes().strip())
    sup.start()
    try:
        st = wait_until(lambda: _try_status(f"127.0.0.1:{port}", keys), timeout=15,
                        message="the node inside the user's tree never answered")
        assert st is not None
        wait_until(lambda: (_try_status(f"127.0.0.1:{port}", keys) or {}).get("manager")
                   == "app@127.0.0.1", timeout=10)
        assert st["node"] == "app@127.0.0.1"
        ids = {c.id for c in sup.which_children()}
        assert ids == {"web", "clerk-app@127.0.0.1"}
        wait_until(marker.exists, timeout=10)
    finally:
        sup.stop()
        info = sup.wait(30)
    assert info.reason is ShutdownReason.STOPPED, info
    assert _try_status(f"127.0.0.1:{port}", keys) is None


def _try_status(address: str, keys: object) -> dict | None:
    try:
        return request_status([address], keys=keys, timeout=0.5)  # type: ignore[arg-type]
    except clerk.NotReachableError:
        return None
