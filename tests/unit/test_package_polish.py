"""Small promises of the package: version, help, cookie length, status text, the supervisord
clash, instant tasks without an interval, where a port clash is reported from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import clerk
from clerk.__main__ import main, render_status
from clerk._errors import ConfigError
from clerk._security import MIN_COOKIE_BYTES, load_cookie

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env.update(extra)
    return env


def test_version_is_the_installed_distributions() -> None:
    assert clerk.__version__ == metadata.version("clerk-cluster")


def test_version_and_help_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"clerk {clerk.__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("node", "status"):
        assert f"\n  {command} " in out
    assert "--version" in out
    assert main([]) == 2  # no command: the usage, on stderr
    assert "usage: clerk" in capsys.readouterr().err


def test_packaging_files_are_there() -> None:
    assert (ROOT / "clerk" / "py.typed").exists() and (ROOT / "supervisor" / "py.typed").exists()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    meta = metadata.metadata("clerk-cluster")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Operating System :: POSIX :: Linux" in (meta.get_all("Classifier") or [])


def test_a_closed_pipe_ends_quietly() -> None:
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written (`| head -n 0`)
    try:
        proc = subprocess.run([sys.executable, "-m", "clerk", "--help"], stdout=w,
                              stderr=subprocess.PIPE, env=_env(), timeout=30)
    finally:
        os.close(w)
    assert proc.returncode == 0
    assert proc.stderr == b""


@pytest.mark.parametrize("cookie", ["short", "x" * (MIN_COOKIE_BYTES - 1)])
def test_a_short_cookie_is_refused(tmp_path: Path, cookie: str) -> None:
    path = tmp_path / "cookie"
    path.write_text(cookie + "\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"under the {MIN_COOKIE_BYTES}-byte minimum"):
        load_cookie(str(path))
    with pytest.raises(ConfigError, match="CLERK_COOKIE"):
        load_cookie(None, env={"CLERK_COOKIE": cookie})
    path.write_text("x" * MIN_COOKIE_BYTES)
    assert load_cookie(str(path)) == b"x" * MIN_COOKIE_BYTES


def _status_with(last: dict[str, object]) -> str:
    return render_status({"node": "a@h", "role": "manager", "manager": "a@h", "members": [],
                          "tasks": [{"name": "t", "interval_ms": 1000, "runs": {},
                                     "last_run": last}]})


def test_status_shows_a_skipped_run_without_a_node() -> None:
    text = _status_with({"node": None, "slot": 7, "outcome": "skipped", "duration_ms": 0.0,
                         "error": "no eligible node"})
    assert "on None" not in text
    assert "slot 7: skipped (no eligible node)" in text


def test_status_cuts_an_error_at_a_word_boundary() -> None:
    error = ("Traceback (most recent call last):\n  ...\nclerk.TaskStateError: task 'x' "
             "returned a state JSON cannot carry: state['t']: tuple, which JSON cannot carry "
             "faithfully as it comes back as a list")
    text = _status_with({"node": "a@h", "slot": 1, "outcome": "error", "duration_ms": 1.0,
                         "error": error})
    shown = text.split("in 1.0 ms (", 1)[1].rsplit(")", 1)[0]
    assert shown.endswith(" ...")
    assert shown[:-4] in error and error[error.index(shown[:-4]) + len(shown) - 4] == " "


def test_instant_task_needs_no_interval() -> None:
    d = clerk.task("clerk.examples:Tally", instant=True)
    assert d.interval is None and d.instant
    with pytest.raises(ConfigError, match="interval"):
        clerk.task("clerk.examples:Tally")


def test_a_port_clash_in_node_names_the_api_not_the_command_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        node = clerk.Node(name="a@127.0.0.1", port=port, insecure=True)
        with pytest.raises(ConfigError) as err:
            node.start()
    assert "command line" not in str(err.value)
    assert str(err.value).startswith("clerk.Node(...): port")
    assert "already in use" in str(err.value)


def test_supervisord_package_in_place_of_ours_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "supervisor"
    fake.mkdir()
    (fake / "__init__.py").write_text("# this is a package\n")  # supervisord's, verbatim
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-c", "import clerk"], capture_output=True,
                          text=True, env=env, timeout=30, cwd=tmp_path)
    assert proc.returncode == 1
    assert "found supervisord's package at" in proc.stderr
    assert "separate virtual environments" in proc.stderr


def test_supervisord_files_mixed_into_ours_are_refused(tmp_path: Path) -> None:
    import shutil

    import supervisor

    mixed = tmp_path / "supervisor"
    shutil.copytree(Path(supervisor.__file__).parent, mixed)
    (mixed / "supervisord.py").write_text("# supervisord's main module\n")
    env = _env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-c", "import clerk"], capture_output=True,
                          text=True, env=env, timeout=30, cwd=tmp_path)
    assert proc.returncode == 1
    assert "same directory as Clerk's" in proc.stderr
    assert "separate virtual environments" in proc.stderr


def test_status_shows_a_stopped_task_and_a_disagreement() -> None:
    text = render_status({"node": "a@h", "role": "manager", "manager": "a@h", "members": [],
                          "tasks": [
                              {"name": "gone", "interval_ms": 1000, "runs": {},
                               "gone_since": 0.0 + 86400, "loaded_here": False},
                              {"name": "t", "interval_ms": 500, "runs": {}, "loaded_here": True,
                               "definitions": [
                                   {"definition": {"interval": 1000, "timeout": 5000},
                                    "nodes": ["a@h", "b@h"], "chosen": False},
                                   {"definition": {"interval": 500, "timeout": 5000},
                                    "nodes": ["c@h"], "chosen": True}]}]})
    assert "stopped: no live member has it loaded since 1970-01-02T00:00:00Z" in text
    assert "members disagree: every 1000 ms, timeout 5000 ms on a@h, b@h (not used)" in text
    assert "members disagree: every 500 ms, timeout 5000 ms on c@h (chosen)" in text
