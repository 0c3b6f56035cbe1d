"""The README's quick start runs as written: its two files on a LocalCluster (issue 12).

The test takes ``myapp/tasks.py`` and ``clerk.toml`` verbatim from the README's code blocks and
the data file from its ``echo`` line. Two things change, and only these: the API's port (a
free one instead of 8000) and the interval (1 s instead of 10 s, so the test is short).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clerk._config import load_config
from clerk.testing import LocalCluster, wait_until
from tests.integration.cluster_helpers import env_for_nodes
from tests.integration.task_helpers import task_row

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start")
    return text[start:text.index("\n## ", start + 1)]


def block(first_line: str) -> str:
    """The fenced code block of the quick start whose first line starts with ``first_line``."""
    for body in re.findall(r"```[a-z]*\n(.*?)```", quick_start(), flags=re.S):
        if body.startswith(first_line):
            return body
    raise AssertionError(f"no code block starting with {first_line!r} in the quick start")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    """The README's data file served like `python -m http.server --directory data`."""
    commands = block("mkdir -p data && echo '[{")
    items = re.search(r"echo '(.*?)' > data/items.json", commands)
    assert items is not None and "python -m http.server 8000" in commands
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.json").write_text(items.group(1) + "\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_readme_quick_start_runs_on_a_local_cluster(
        tmp_path: Path, api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    (app / "myapp").mkdir(parents=True)
    (app / "myapp" / "tasks.py").write_text(block("# myapp/tasks.py"))
    toml = block("# clerk.toml")
    assert "127.0.0.1:8000" in toml
    (app / "clerk.toml").write_text(toml.replace("127.0.0.1:8000", api))
    monkeypatch.syspath_prepend(str(app))  # the nodes import myapp like `cd app` would
    config = load_config(str(app / "clerk.toml"), {"name": "reader@127.0.0.1"})
    (poll,) = config.tasks
    assert poll.interval == 10_000 and poll.name == "myapp.tasks:ApiPoll"
    with LocalCluster(3, tasks=[dataclasses.replace(poll, interval=1000)]) as cluster:
        manager = cluster.wait_for_manager(timeout=20)

        def row() -> dict[str, object]:
            return task_row(cluster.status(manager), poll.name)

        wait_until(lambda: row()["runs"]["ok"] >= 3, timeout=30,  # type: ignore[index]
                   message=lambda: f"{row()}\n{cluster.log(manager)[-3000:]}")
        st = cluster.status(manager)
        assert task_row(st, poll.name)["runs"]["error"] == 0
        logs = "\n".join(cluster.log(n) for n in cluster.names)
        assert logs.count("2 new item(s)") == 1, logs[-3000:]  # the first run only
        assert "0 new item(s)" in logs
        # `clerk status` piped into a reader that stops at once ends quietly.
        proc = subprocess.run(
            f"python -m clerk status --join {cluster.address(manager)} --cookie-file "
            f"{cluster.cookie_file} | head -n 0", shell=True, capture_output=True, text=True,
            env={**env_for_nodes(), "PATH": f"{Path(_python()).parent}:/usr/bin:/bin"},
            timeout=30)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        state = json.loads(subprocess.run(
            [_python(), "-m", "clerk", "status", "--json", "--join", cluster.address(manager),
             "--cookie-file", str(cluster.cookie_file)], capture_output=True, text=True,
            env=env_for_nodes(), timeout=30).stdout)
        assert task_row(state, poll.name)["has_state"]


def _python() -> str:
    import sys

    return sys.executable
