"""The package as a user installs it: a wheel with its LICENSE and typing marker, and a user's
module that passes ``mypy --strict`` against it (issue 12)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = '''\
"""A user's module: tasks, an embedded node, a node in the user's own tree."""

from typing import Any

import clerk
from supervisor import ChildSpec, Supervisor


class Poll(clerk.Task):
    def init(self, args: dict[str, str]) -> dict[str, Any]:
        return {"url": args["url"], "since": 0}

    def execute(self, state: dict[str, Any]) -> dict[str, Any]:
        run: clerk.Run = clerk.current_run()
        return {**state, "since": state["since"] + run.slot}

    def nodes(self, members: list[str]) -> list[str]:
        return members[:1]


class AsyncPoll(clerk.Task):
    async def execute(self, state: int) -> int:
        return state + 1


TASKS: list[clerk.TaskDef] = [clerk.task(Poll, interval=10_000, args={"url": "u"}),
                              clerk.task(AsyncPoll, instant=True)]


def tree() -> Supervisor:
    spec: ChildSpec = clerk.node_spec(name="a@127.0.0.1", tasks=TASKS)
    return Supervisor([spec], strategy="one_for_one")


def embedded() -> clerk.Node:
    return clerk.Node(name="b@127.0.0.1", port=7402, tasks=TASKS)


VERSION: str = clerk.__version__
'''


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=240)


def test_a_users_module_passes_mypy_strict_against_the_installed_wheel(tmp_path: Path) -> None:
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                str(tmp_path / "dist"), str(ROOT), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("clerk_cluster-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "clerk/py.typed" in names and "supervisor/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # A fresh environment holding only the wheel (mypy reads it; nothing is run from it).
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    target = venv / "bin" / "python"
    installed = run(sys.executable, "-m", "pip", "--python", str(target), "install", "-q",
                    "--no-deps", str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    (tmp_path / "usermod.py").write_text(USER_MODULE)

    def mypy(cache: str) -> subprocess.CompletedProcess[str]:
        return run(sys.executable, "-m", "mypy", "--strict", "--python-executable", str(target),
                   "--cache-dir", str(tmp_path / cache), "usermod.py", cwd=tmp_path)

    checked = mypy("cache")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found" in checked.stdout
    # Without the marker the same module fails, as it did before py.typed was shipped.
    (markers,) = [p for p in (venv / "lib").glob("python*/site-packages/clerk/py.typed")]
    markers.unlink()
    unmarked = mypy("cache-unmarked")
    assert unmarked.returncode == 1 and 'Class cannot subclass "Task"' in unmarked.stdout
