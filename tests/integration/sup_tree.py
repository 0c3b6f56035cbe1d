"""Test helper: run ``python -m supervisor tree.toml`` with a control socket in the test's
directory and drive it through the real ``supervisor ctl`` CLI (and ControlClient)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from supervisor import ControlClient, ControlError
from supervisor.testing import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Tree:
    """One tree file and the supervisor process running it (``stop()`` at teardown)."""

    def __init__(self, tmp_path: os.PathLike[str], text: str, **fmt: object) -> None:
        self.dir = os.fspath(tmp_path)
        self.file = os.path.join(self.dir, "tree.toml")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.log = os.path.join(self.dir, "children.log")
        self.out = os.path.join(self.dir, "supervisor.out")
        self.err = os.path.join(self.dir, "supervisor.err")
        self.proc: subprocess.Popen[bytes] | None = None
        self.write(text, **fmt)

    def write(self, text: str, **fmt: object) -> None:
        body = textwrap.dedent(text).format(log=self.log, dir=self.dir, **fmt)
        with open(self.file + ".tmp", "w") as f:
            f.write(body)
        os.replace(self.file + ".tmp", self.file)

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor", self.file, "--control", self.sock, *extra],
                cwd=ROOT, stdout=out, stderr=err,
            )  # fmt: skip
        return self.proc

    def ctl(self, *args: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``supervisor ctl --control <sock> *args`` (as another user with ``user``,
        an argv prefix such as setpriv's)."""
        return subprocess.run(
            [*(user or []), sys.executable, "-m", "supervisor", "ctl", "--control", self.sock,
             *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def client(self) -> ControlClient:
        return ControlClient(self.sock)

    def rows(self) -> dict[str, dict]:
        """``ctl status --json`` through the CLI, by id."""
        done = self.ctl("status", "--json")
        assert done.returncode in (0, 3), done.stderr
        return {row["id"]: row for row in json.loads(done.stdout)}

    def pids(self) -> dict[str, int | None]:
        return {cid: row["pid"] for cid, row in self.client_rows().items()}

    def client_rows(self) -> dict[str, dict]:
        return {row["id"]: row for row in self.client().status()}

    def wait_up(self, ids: set[str], timeout: float = 20) -> dict[str, int]:
        """Wait until the socket answers and every id in ``ids`` runs; return all pids."""

        def check() -> dict[str, int] | None:
            try:
                rows = self.client_rows()
            except ControlError:
                assert self.proc is None or self.proc.poll() is None, self.stderr()
                return None
            if ids <= {cid for cid, r in rows.items() if r["state"] == "running"}:
                return {cid: r["pid"] for cid, r in rows.items()}
            return None

        pids = wait_until(check, timeout, message=lambda: f"{ids} running; {self.stderr()}")
        assert pids is not None
        return pids

    def stderr(self) -> str:
        try:
            with open(self.err, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stdout(self) -> str:
        try:
            with open(self.out, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM the supervisor and return its exit code (kill it if it hangs)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode
